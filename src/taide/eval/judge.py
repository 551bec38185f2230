"""An LLM judge for the office tasks: rubric prompts, score parsing, retries, failure accounting.

The judge is any taide :class:`~taide.engines.Engine`: an OpenAI-compatible endpoint
(:meth:`Judge.from_endpoint`, or ``load_engine(url, served_model=..., api_key=...)``) or a local model.
It sees the question, a reference answer and the model's answer, and ends its reply with a score line
``評分：X`` (1–10). :func:`parse_score` reads that line and the other usual ways judges write a score.

Transient trouble (HTTP 429 or 5xx, connection errors, timeouts) is retried with exponential backoff and
jitter; a 429 also pauses every worker of the judge, so a rate-limited endpoint is not hammered. An
unparsable reply is answered with a request for the score line, a limited number of times. An item
that still has no score is a :class:`Verdict` with ``score=None`` and a ``reason``: callers leave it out
of means and list it — it is never counted as 0.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

from taide.engines import Engine, GenerationParams
from taide.engines.base import Chunk, ChunkStream, Completion
from taide.errors import ContextLengthError, EngineError

SCORE_MIN, SCORE_MAX = 1.0, 10.0
SCORE_LINE = "評分："  # the fixed line every rubric asks for: 評分：<1–10>

# ---------------------------------------------------------------------------------------------- parsing

_NUM = r"(\d+(?:\.\d+)?)"
_LABEL = r"(?:final\s+score|overall\s+score|score|rating|grade|最終評分|總評分|評分|分數|得分|總分)"
# "Score: 8", "評分：7.5" (the full-width colon is NFKC-normalised to ':'), "**Score**: 9", "分數為 8", "Score = 8/10"
_LABELED = re.compile(_LABEL + r"\s*\**\s*(?:[:=]|是|為|为)\s*\**\s*\[*\s*" + _NUM + r"(?:\s*/\s*10(?![\d.]))?",
                      re.IGNORECASE)
_BRACKETED = re.compile(r"\[\[\s*" + _NUM + r"\s*\]\]")  # "[[8]]"
_OUT_OF_TEN = re.compile(r"(?<![\d.])" + _NUM + r"\s*/\s*10(?![\d.])")  # "8/10", "8 / 10"
_BARE_LAST_LINE = re.compile(r"^[\s*#_>`\-]*" + _NUM + r"\s*(?:分|/\s*10|points?)?[\s*_`。.!！]*$", re.IGNORECASE)


def _in_range(value: str) -> float | None:
    score = float(value)
    return score if SCORE_MIN <= score <= SCORE_MAX else None


def parse_score(reply: str | None) -> float | None:
    """The 1–10 score in a judge's reply, or None when there is none (never 0).

    Understood, in this order: the last ``Score: 8`` / ``評分：8`` / ``分數：7.5`` / ``**Score**: 9`` /
    ``[[8]]`` in the reply; else the last ``8/10``; else a last line that is only a number. A score
    outside 1–10 is None (the judge misread the scale; it is not clipped).
    """
    if not reply:
        return None
    text = unicodedata.normalize("NFKC", reply)  # full-width digits, colons and slashes become ASCII
    marked = [(m.start(), m.group(1)) for m in _LABELED.finditer(text)]
    marked += [(m.start(), m.group(1)) for m in _BRACKETED.finditer(text)]
    if marked:
        return _in_range(max(marked)[1])
    ratios = _OUT_OF_TEN.findall(text)
    if ratios:
        return _in_range(ratios[-1])
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and (m := _BARE_LAST_LINE.match(lines[-1])):
        return _in_range(m.group(1))
    return None


# ---------------------------------------------------------------------------------------------- rubrics

@dataclass(frozen=True)
class Rubric:
    """A judge prompt: ``system`` sets the role and criteria; ``user`` holds {question}, {reference}, {answer}."""

    name: str
    system: str
    user: str

    def messages(self, question: str, reference: str, answer: str) -> list[dict]:
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.user.format(question=question, reference=reference, answer=answer)}]

    def digest(self) -> str:
        return hashlib.sha1((self.system + "\x00" + self.user).encode("utf-8")).hexdigest()[:12]


_OUTPUT_RULE = (
    "請先用幾句話說明你的理由，指出優點與具體問題；最後一行只寫「" + SCORE_LINE + "X」，"
    "X 是 1 到 10 的整數（10 分最好），這一行之後不要再寫任何文字。")

_USER = (
    "【題目】\n{question}\n\n"
    "【參考答案】\n{reference}\n\n"
    "【待評答案】\n{answer}\n\n"
    "請依評分標準評估【待評答案】，最後一行寫「" + SCORE_LINE + "X」。")


def _rubric(name: str, intro: str, criteria: list[str]) -> Rubric:
    listed = "\n".join(f"{i}. {c}" for i, c in enumerate(criteria, start=1))
    system = (f"你是一位嚴謹、公正的評審，負責評估 AI 助理在「{intro}」任務上的回答品質。"
              "你會看到題目、一份參考答案和一份待評答案。參考答案示範了合格的水準，"
              "但待評答案不必與它逐字相同，只要同樣正確、完整即可。\n\n"
              f"評分標準：\n{listed}\n\n"
              "請不要因為答案較長就給高分，也不要受答案出現的順序或語氣影響。" + _OUTPUT_RULE)
    return Rubric(name, system, _USER)


RUBRICS: dict[str, Rubric] = {
    "translation_zh": _rubric("translation_zh", "英文翻譯成繁體中文", [
        "忠實：完整傳達原文的意思、語氣與細節，沒有漏譯、誤譯或自行添加的內容。",
        "用語：使用繁體中文與臺灣慣用的詞彙（例如「軟體」、「影片」、「資訊」），標點用全形符號；"
        "出現簡體字或中國大陸用語要扣分。",
        "只有譯文：回答只應包含中文譯文，不應夾雜英文原文、解釋或其他說明。",
        "通順：讀起來像以中文為母語的人寫的，語句自然、沒有生硬的直譯。",
    ]),
    "translation_en": _rubric("translation_en", "中文翻譯成英文", [
        "忠實：完整傳達原文的意思、語氣與細節，沒有漏譯、誤譯或自行添加的內容；專有名詞與數字要正確。",
        "只有譯文：回答只應包含英文譯文，不應夾雜中文、解釋或其他說明。",
        "通順：英文文法正確、用字恰當，讀起來自然，符合原文的文體（正式或口語）。",
    ]),
    "summary": _rubric("summary", "繁體中文摘要", [
        "精簡：摘要要比原文短很多，符合題目要求的長度，不重複、不離題。",
        "完整：保留原文的主要論點，以及重要的數字、日期、人名與機關名稱，且數字必須正確。",
        "不捏造：不加入原文沒有的事實、評論或推測；有任何捏造內容，最高只能給 3 分。",
        "語言：使用繁體中文與臺灣慣用的說法，語句通順。",
    ]),
    "article": _rubric("article", "繁體中文寫作", [
        "有幫助：完成題目要求的寫作任務，符合指定的主題、文體、篇幅與結構。",
        "切題：內容緊扣主題，沒有離題或空泛的段落。",
        "正確：事實、數據與常識正確，沒有明顯錯誤或自相矛盾。",
        "充實：有具體的例子與細節，層次分明，有開頭、內文與結尾。",
        "語言：使用繁體中文與臺灣慣用的詞彙和全形標點；出現簡體字或中國大陸用語要扣分。",
    ]),
    "letter": _rubric("letter", "繁體中文書信", [
        "有幫助：完成題目要求的書信，交代清楚目的、時間、地點、需要對方做的事等關鍵資訊。",
        "切題：內容緊扣需求，沒有多餘或離題的段落。",
        "正確：沒有與題目矛盾的資訊，不自行捏造題目沒有提供的重要細節。",
        "格式：符合臺灣書信慣例，包含稱謂、開頭問候、本文、結尾敬語（如「敬祝 商祺」）、署名與日期，語氣合乎身分。",
        "語言：使用繁體中文與臺灣慣用的詞彙和全形標點；出現簡體字或中國大陸用語要扣分。",
    ]),
}

# Our task names (taide.chat.presets.TASKS) and the public scorer's (essay for article) to rubrics.
TASK_RUBRIC = {"en2zh": "translation_zh", "zh2en": "translation_en", "summary": "summary",
               "article": "article", "essay": "article", "letter": "letter"}

REASK = ("你的回覆最後沒有依規定的格式給分。請不要重寫理由，只回覆一行：「" + SCORE_LINE
         + "X」，X 是 1 到 10 的整數。")


# ---------------------------------------------------------------------------------------------- retries

@dataclass
class RetryPolicy:
    """How often and how patiently to retry. Waits are ``backoff * 2**n`` seconds (at most
    ``max_backoff``), spread by ±``jitter`` of themselves, and never shorter than a server's Retry-After."""

    retries: int = 4  # extra attempts after transient errors (429, 5xx, connection errors, timeouts)
    parse_retries: int = 2  # extra asks after a reply with no score line
    backoff: float = 1.0
    max_backoff: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (0 for the first retry)."""
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        spread = (rng or random).uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(0.0, base * (1 + spread))


def error_status(error: BaseException) -> int | None:
    status = getattr(error, "status", None)
    if status is None:
        status = getattr(error.__cause__, "status_code", None)
    return status if isinstance(status, int) else None


FATAL_STATUSES = {401, 403, 404}  # a wrong key, URL or model name: every item would fail the same way


def is_transient(error: BaseException) -> bool:
    """Worth another try: HTTP 408/409/429/5xx, or a connection error or timeout (no status at all)."""
    if isinstance(error, ContextLengthError):
        return False
    if isinstance(error, (TimeoutError, ConnectionError)):
        return True
    if isinstance(error, EngineError):
        status = error_status(error)
        return status is None or status in (408, 409, 429) or status >= 500
    return False


def retry_after(error: BaseException) -> float | None:
    """A server's Retry-After (seconds) on the HTTP error behind ``error``, if it sent one."""
    response = getattr(error.__cause__, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for key in ("retry-after-ms", "retry-after"):
        value = headers.get(key)
        try:
            if value is not None:
                return float(value) / (1000 if key.endswith("ms") else 1)
        except ValueError:
            pass
    return None


def describe_error(error: BaseException) -> str:
    """A one-line reason for a failure record: what kind of trouble, then the error's own message."""
    status, message = error_status(error), str(error) or type(error).__name__
    if status == 429:
        kind = "rate limited (HTTP 429)"
    elif status is not None:
        kind = f"HTTP {status}"
    elif isinstance(error, TimeoutError) or "timed out" in message.lower() or "timeout" in message.lower():
        kind = "timeout"
    else:
        kind = type(error).__name__
    return f"{kind}: {message}"


class _Gate:
    """Shared pause: after a 429 every worker waits until the cool-down ends."""

    def __init__(self, sleep: Callable[[float], None]):
        self._until = 0.0
        self._lock = threading.Lock()
        self._sleep = sleep

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self) -> None:
        while (left := self._until - time.monotonic()) > 0:
            self._sleep(left)


def call_with_retries(fn: Callable[[], object], policy: RetryPolicy, gate: _Gate | None = None,
                      sleep: Callable[[float], None] = time.sleep, on_retry: Callable[[BaseException], None] | None = None):
    """``fn()``, retried on transient errors as ``policy`` says; the last error is raised. Returns
    (result, attempts)."""
    attempt = 0
    while True:
        if gate:
            gate.wait()
        try:
            return fn(), attempt + 1
        except Exception as e:  # noqa: BLE001 - sorted out by is_transient
            if not is_transient(e) or attempt >= policy.retries:
                e.attempts = attempt + 1  # type: ignore[attr-defined]
                raise
            wait_s = policy.delay(attempt)
            hinted = retry_after(e)
            if hinted is not None:
                wait_s = min(policy.max_backoff, max(wait_s, hinted))
            if on_retry:
                on_retry(e)
            if gate and error_status(e) == 429:
                gate.pause(wait_s)
            else:
                sleep(wait_s)
            attempt += 1


# ---------------------------------------------------------------------------------------------- the judge

def load_endpoint(url: str, served_model: str | None = None, api_key: str | None = None, timeout: float = 120.0,
                  max_concurrency: int = 8) -> Engine:
    """An OpenAI-compatible endpoint as an engine whose HTTP client does not retry by itself, so that a
    :class:`RetryPolicy` here is the only one (the client's default would multiply the attempts and hide
    them from the failure records). Use it for a judge and for a model under test."""
    from taide.engines import load_engine

    return load_engine(url, served_model=served_model, api_key=api_key, timeout=timeout,
                       max_concurrency=max_concurrency, max_retries=0)


class StubJudgeEngine(Engine):
    """Stands in for a judge endpoint that does not answer, in `taide build --smoke` only: it answers every rubric
    with a score line whose number (1–10) comes from a hash of the prompt, so that judging, score parsing and the
    report run end to end without a network. Its scores mean nothing; reports name it ``smoke-stub-judge``."""

    name = "stub"

    def __init__(self):
        from taide.models import ModelRef

        self.model = ModelRef(reference="smoke-stub-judge", name="smoke-stub-judge", kind="stub")

    def _reply(self, text: str) -> Completion:
        score = 1 + int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 10
        reply = f"（smoke 測試的替身評審，分數沒有意義）\n{SCORE_LINE}{score}"
        return Completion(reply, "stop", 0, 0, 0.0, 0.0)

    def open_stream(self, messages: list[dict], params: GenerationParams | None = None) -> ChunkStream:
        completion = self._reply(json.dumps(messages, ensure_ascii=False))
        return ChunkStream(iter([Chunk(completion.text, completion)]), lambda: None)

    def open_completion(self, prompt: str, params: GenerationParams | None = None) -> ChunkStream:
        completion = self._reply(prompt)
        return ChunkStream(iter([Chunk(completion.text, completion)]), lambda: None)


class JudgeAborted(EngineError):
    """The judge endpoint refuses every request (HTTP 401/403/404): a wrong key, URL or model name."""


@dataclass
class JudgeItem:
    """One answer to grade. ``task`` is ours or the public scorer's name (en2zh, zh2en, summary,
    article/essay, letter)."""

    qid: str
    task: str
    question: str
    reference: str
    answer: str


@dataclass
class Verdict:
    qid: str
    score: float | None  # None: no score after the retries; see ``reason``. Never counted as 0.
    reply: str | None  # the judge's last reply (its reasoning and score line)
    attempts: int  # requests made for this item
    reason: str | None = None  # why there is no score
    elapsed: float = 0.0
    fingerprint: str = ""  # what was judged (task, texts, judge model, rubric): a rerun reuses matching verdicts
    judge_model: str = ""

    @property
    def ok(self) -> bool:
        return self.score is not None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Judge:
    """Grades answers with ``engine`` (greedy), ``concurrency`` requests at a time.

    ``max_answer_chars`` cuts very long answers (and references) before they reach the judge.
    ``rubrics`` overrides :data:`RUBRICS` by rubric name (translation_zh, translation_en, summary,
    article, letter).
    """

    engine: Engine
    concurrency: int | None = None  # default: the engine's parallelism, at most 8
    max_tokens: int = 512
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_answer_chars: int = 4000
    rubrics: dict[str, Rubric] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self):
        if self.concurrency is None:
            self.concurrency = max(1, min(8, getattr(self.engine, "parallelism", 1) or 1))
        if self.concurrency < 1:
            raise EngineError(f"judge concurrency={self.concurrency} must be at least 1")
        self.params = GenerationParams(max_tokens=self.max_tokens, temperature=0.0)
        self.rubrics = {**RUBRICS, **self.rubrics}
        self._gate = _Gate(self.sleep)

    @classmethod
    def from_endpoint(cls, url: str, served_model: str | None = None, api_key: str | None = None,
                      timeout: float = 120.0, **options) -> Judge:
        """A judge on an OpenAI-compatible endpoint (see :func:`load_endpoint`); ``timeout`` is per
        request, ``options`` are this class's fields (concurrency, policy, max_tokens, ...)."""
        engine = load_endpoint(url, served_model, api_key, timeout, max_concurrency=options.get("concurrency") or 8)
        return cls(engine, **options)

    # -- prompts

    def rubric_for(self, task: str) -> Rubric:
        if task not in TASK_RUBRIC:
            raise EngineError(f"no judge rubric for task {task!r}; tasks are {', '.join(TASK_RUBRIC)}")
        return self.rubrics[TASK_RUBRIC[task]]

    def _cut(self, text: str) -> str:
        text = (text or "").replace("\u200b", "").strip()
        return text if len(text) <= self.max_answer_chars else text[:self.max_answer_chars] + "……（以下省略）"

    def messages(self, item: JudgeItem) -> list[dict]:
        answer = self._cut(item.answer) or "（空白，沒有回答）"
        return self.rubric_for(item.task).messages(item.question.strip(), self._cut(item.reference), answer)

    @property
    def model_name(self) -> str:
        return self.engine.describe().get("model") or self.engine.name

    def fingerprint(self, item: JudgeItem) -> str:
        """Identifies a verdict's inputs; a stored verdict is reused only when this matches."""
        task = TASK_RUBRIC.get(item.task, item.task)
        blob = json.dumps([task, item.question, item.reference, item.answer, self.model_name,
                           self.rubric_for(item.task).digest()], ensure_ascii=False)
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()

    def describe(self) -> dict:
        return {**self.engine.describe(), "concurrency": self.concurrency, "max_tokens": self.max_tokens,
                "retries": self.policy.retries, "parse_retries": self.policy.parse_retries,
                "rubrics": {name: r.digest() for name, r in self.rubrics.items()}}

    # -- grading

    def score(self, item: JudgeItem) -> Verdict:
        """Grade one answer. Transient errors and unparsable replies are retried; what is left is a
        Verdict with ``score=None`` and a reason. HTTP 401/403/404 raise :class:`JudgeAborted`."""
        started = time.perf_counter()
        verdict = Verdict(item.qid, None, None, 0, fingerprint=self.fingerprint(item), judge_model=self.model_name)
        messages = self.messages(item)
        for ask in range(self.policy.parse_retries + 1):
            try:
                completion, attempts = call_with_retries(lambda m=messages: self.engine.chat(m, self.params),
                                                         self.policy, self._gate, self.sleep)
                verdict.attempts += attempts
            except Exception as e:  # noqa: BLE001 - recorded, not raised
                verdict.attempts += getattr(e, "attempts", 1)
                if error_status(e) in FATAL_STATUSES:
                    raise JudgeAborted(f"the judge refused the request ({describe_error(e)}); "
                                       "check its URL, API key and model name") from e
                if not isinstance(e, (EngineError, OSError)):
                    raise
                verdict.reason = describe_error(e)
                break
            verdict.reply = completion.text
            verdict.score = parse_score(completion.text)
            if verdict.score is not None:
                verdict.reason = None
                break
            verdict.reason = f"unparsable judge reply (no 1–10 score after {ask + 1} asks)"
            # Ask for the score line, keeping the judge's reasoning in the conversation.
            messages = self.messages(item) + [{"role": "assistant", "content": completion.text or "（空白）"},
                                              {"role": "user", "content": REASK}]
        verdict.elapsed = time.perf_counter() - started
        return verdict

    def score_many(self, items: Iterable[JudgeItem], on_result: Callable[[Verdict], None] | None = None) -> list[Verdict]:
        """Grade ``items`` with ``concurrency`` workers; ``on_result`` (called in this thread, in completion
        order) sees each verdict as it is ready. Returns verdicts in the order of ``items``. If
        ``on_result`` raises, waiting items are dropped and the error propagates."""
        items = list(items)
        verdicts: dict[int, Verdict] = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="taide-judge")
        try:
            pending: dict[Future, int] = {pool.submit(self.score, it): i for i, it in enumerate(items)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    verdicts[index] = future.result()
                    if on_result:
                        on_result(verdicts[index])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [verdicts[i] for i in range(len(items))]


__all__ = ["FATAL_STATUSES", "RUBRICS", "SCORE_LINE", "TASK_RUBRIC", "Judge", "JudgeAborted", "JudgeItem",
           "RetryPolicy", "Rubric", "StubJudgeEngine", "Verdict", "call_with_retries", "describe_error", "is_transient", "load_endpoint", "parse_score"]
