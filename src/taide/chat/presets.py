"""The TAIDE system prompt and the card's office tasks (article, letter, summary, zh→en, en→zh).

The instructions are written for this project in Traditional Chinese with Taiwan wording and
full-width punctuation; ``{text}`` is where the user's input goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from taide.errors import ChatFormatError

# The card's default system prompt, verbatim.
TAIDE_SYSTEM_PROMPT = "你是一個來自台灣的AI助理，你的名字是 TAIDE，樂於以台灣人的立場幫助使用者，會用繁體中文回答問題。"

SYSTEM_PRESETS: dict[str, str] = {"taide": TAIDE_SYSTEM_PROMPT}


# Formats TAIDE models are built on: the TAIDE prompt is their default. A model with its own template keeps its own.
TAIDE_FORMATS = ("llama3", "gemma")


def default_system_prompt(chat_format: str | None) -> str | None:
    """TAIDE-format (Llama 3 or Gemma 3) models get the TAIDE prompt; other models keep their template's default."""
    return TAIDE_SYSTEM_PROMPT if chat_format in TAIDE_FORMATS else None


# The one way taide says which system prompt a conversation without one gets, in every command and function:
# "auto" (or None): the model's default (default_system_prompt); "none" (or ""): no system message (the chat template
# may still add its own); a preset name ("taide"); anything else is the prompt's text.
AUTO, NONE = "auto", "none"


def messages_with_system(messages: list[dict], system: str | None) -> list[dict]:
    """``messages`` opened by a system message with ``system`` (resolved text, see :func:`resolve_system_prompt`),
    unless there is none to add or the conversation has its own."""
    if not system or (messages and messages[0].get("role") == "system"):
        return list(messages)
    return [{"role": "system", "content": system}, *messages]


def resolve_system_prompt(spec: str | None, default: str | None) -> str | None:
    """The text ``spec`` stands for, or None for no system message; ``default`` is what "auto" means for the model at
    hand (``Engine.default_system_prompt``)."""
    if spec is None or spec.strip().lower() == AUTO:
        return default
    if not spec.strip() or spec.strip().lower() == NONE:
        return None
    return SYSTEM_PRESETS.get(spec.strip(), spec)


@dataclass(frozen=True)
class Task:
    name: str
    title: str  # shown in listings and the demo
    instruction: str  # contains "{text}"
    output_language: str  # "zh-TW" or "en": what the answer should be written in
    example: str  # a sample input, used by `taide demo`

    def prompt(self, text: str) -> str:
        text = text.strip()
        if not text:
            raise ChatFormatError(f"task {self.name}: the input text is empty")
        return self.instruction.format(text=text)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("article", "寫文章",
         "請以下面的主題寫一篇文章。使用繁體中文與台灣常用的說法，要有標題、開頭、二到三段內文和結尾。\n\n主題：{text}",
         "zh-TW", "夜市小吃如何成為台灣的文化名片"),
    Task("letter", "寫信",
         "請依照下面的需求寫一封正式信件。使用繁體中文與台灣公文書信的慣例，包含稱謂、本文、結尾敬語與署名。\n\n需求：{text}",
         "zh-TW", "以公司業務部名義，邀請合作廠商參加下個月十五日在臺中舉辦的新產品說明會，並請於月底前回覆是否出席。"),
    Task("summary", "摘要",
         "請用繁體中文為下面這段文字寫摘要，約三句話，保留主要論點和重要數字，不要加入原文沒有的內容。\n\n{text}",
         "zh-TW",
         "行政院今天通過「公共運輸發展計畫」，預計在未來四年投入新臺幣一千二百億元，改善偏鄉公車路網、"
         "推動電動公車，並補助地方政府建置轉乘資訊平台。交通部表示，計畫目標是讓全國公共運輸使用率"
         "從目前的百分之十八提高到百分之二十五，同時減少交通部門的碳排放。"),
    Task("zh2en", "中翻英",
         "請把下面的中文翻譯成通順、正式的英文，只輸出英文譯文，不要解釋。\n\n{text}",
         "en", "本法所稱個人資料，指自然人之姓名、出生年月日、身分證統一編號及其他得以直接或間接方式識別該個人之資料。"),
    Task("en2zh", "英翻中",
         "請把下面的英文翻譯成繁體中文，使用台灣慣用的詞彙與全形標點，只輸出譯文，不要解釋。\n\n{text}",
         "zh-TW", "The museum will extend its opening hours on weekends and offer free guided tours in English and Taiwanese."),
)}


def task_messages(task: str, text: str, system: str | None = None) -> list[dict]:
    """The conversation for one office task: optional system prompt, then the instruction."""
    if task not in TASKS:
        raise ChatFormatError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return messages_with_system([{"role": "user", "content": TASKS[task].prompt(text)}], system)
