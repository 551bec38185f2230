"""Render chat messages to text and to token ids.

Three formats:
- :class:`Llama3Format` — Llama 3's template as Llama3-TAIDE uses it, written out in code so the
  token ids are built directly: control tokens by id, message text tokenized with special tokens
  disabled.
- :class:`GemmaFormat` — Gemma 3's template, built from ids the same way.
- :class:`TemplateFormat` — any other model's own Jinja template (SmolLM2's ChatML, Llama 3.1's, Qwen's,
  Mistral's, Phi-3's), rendered in a sandbox. Message text is swapped for placeholders before rendering, so
  control tokens are split out of the template's markup only: text a user types never becomes a control token.

A model's own template is the truth: the two coded formats stand in for it only where they render byte for byte
as it on probe conversations (:func:`detect_chat_format`). SFT trains each assistant message in the context the
model answers it in (:meth:`ChatFormat.training_sequences`).
"""

from __future__ import annotations

import functools
import os
import re
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Protocol

from taide.errors import ChatFormatError

ROLES = ("system", "user", "assistant")

# The template of Meta-Llama-3-8B-Instruct: what a Llama 3 (TAIDE) HF directory written by taide carries,
# so transformers, vLLM and llama.cpp render exactly what Llama3Format renders.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# The chat_template of google/gemma-3-*-it, byte for byte: what a Gemma-format HF directory written by taide carries.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)


class TokenCodec(Protocol):
    """The tokenizer operations a chat format needs; each engine adapts its tokenizer."""

    def encode_text(self, text: str, continuation: bool = False) -> list[int]:
        """Tokenize user text with special tokens disabled: ``<|eot_id|>`` stays plain characters.
        ``continuation``: the text follows a control token inside a prompt, as a chat template's text does; a
        tokenizer that marks only the start of an input with "▁" (SentencePiece's prefix, as transformers loads
        Mistral's and Phi-3's) does not mark it there, exactly as when the whole prompt is tokenized at once."""

    def token_id(self, token: str) -> int | None:
        """The id of a single (control) token, or None if the vocabulary lacks it."""

    def control_tokens(self) -> list[str]:
        """The strings of the vocabulary's control tokens (``<|im_start|>``, ``<|eot_id|>``, ...)."""

    def encode_prompt(self, text: str) -> list[int]:
        """A raw completion prompt as the tokenizer takes it by default: control-token strings parsed,
        BOS added if the model adds one. For `/v1/completions`, where the caller writes the format."""


def _content_text(content, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": "..."}]
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ChatFormatError(f"messages[{index}].content[{j}]: only text parts are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise ChatFormatError(f"messages[{index}].content: expected a string, got {type(content).__name__}")


def validate_messages(messages) -> list[dict]:
    """Check roles and content; return plain ``{"role", "content"}`` dicts with string content."""
    if not isinstance(messages, list) or not messages:
        raise ChatFormatError("messages: expected a non-empty list of {role, content} objects")
    clean = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ChatFormatError(f"messages[{i}]: expected an object with 'role' and 'content'")
        role = msg.get("role")
        if role not in ROLES:
            raise ChatFormatError(f"messages[{i}].role: {role!r} is not one of {', '.join(ROLES)}")
        if role == "system" and i != 0:
            raise ChatFormatError(f"messages[{i}]: a system message may only come first")
        if "content" not in msg:
            raise ChatFormatError(f"messages[{i}].content: missing")
        clean.append({"role": role, "content": _content_text(msg["content"], i)})
    return clean


class ChatFormat(ABC):
    name: str
    stop_tokens: tuple[str, ...]  # control tokens that end an assistant turn

    @abstractmethod
    def render_text(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt as a string (for logs and for endpoints that take raw prompts)."""

    @abstractmethod
    def render_ids(self, messages: list[dict], codec: TokenCodec, add_generation_prompt: bool = True) -> list[int]:
        """The prompt as token ids, with message text unable to inject control tokens."""

    @property
    @abstractmethod
    def hf_template(self) -> str:
        """The Jinja chat template a Hugging Face directory written by taide carries, so that transformers, vLLM
        and llama.cpp render what this format renders."""

    @abstractmethod
    def training_sequences(self, messages: list[dict], codec: TokenCodec) -> list[tuple[list[int], list[bool]]]:
        """The token sequences SFT trains this conversation on, each ``(ids, mask)`` with the mask True on the tokens
        the model learns: what it generates for each assistant message after the generation prompt, through the
        end-of-turn token that closes it; never headers, system or user text. Each assistant message is trained in
        the context the model answers it in (the messages before it, rendered with the generation prompt)."""

    def _require(self, codec: TokenCodec, token: str) -> int:
        token_id = codec.token_id(token)
        if token_id is None:
            raise ChatFormatError(f"the {self.name} chat format needs the token {token} but the tokenizer lacks it")
        return token_id


class _CodedFormat(ChatFormat):
    """A format written out in code: ``_render`` builds the ids and the SFT mask in one pass."""

    @abstractmethod
    def _render(self, messages, codec, add_generation_prompt) -> tuple[list[int], list[bool]]:
        """(ids, mask) of the conversation, the mask as :meth:`ChatFormat.training_sequences` defines it."""

    def render_ids(self, messages, codec, add_generation_prompt=True):
        return self._render(messages, codec, add_generation_prompt)[0]

    def training_sequences(self, messages, codec):
        """As :meth:`ChatFormat.training_sequences`: these formats render every turn the same whatever follows, so a
        conversation is one sequence, its spans marked while the ids are built."""
        return [self._render(messages, codec, add_generation_prompt=False)]


class Llama3Format(_CodedFormat):
    """``<|begin_of_text|>`` then per message ``<|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>``."""

    name = "llama3"
    BOS, START, END, EOT = "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
    stop_tokens = (EOT,)
    hf_template = LLAMA3_TEMPLATE

    def render_text(self, messages, add_generation_prompt=True):
        out = [self.BOS]
        for m in validate_messages(messages):
            out.append(f"{self.START}{m['role']}{self.END}\n\n{m['content'].strip()}{self.EOT}")
        if add_generation_prompt:
            out.append(f"{self.START}assistant{self.END}\n\n")
        return "".join(out)

    def _render(self, messages, codec, add_generation_prompt):
        bos, start, end, eot = (self._require(codec, t) for t in (self.BOS, self.START, self.END, self.EOT))
        ids, mask = [bos], [False]

        def add(tokens, learn=False):
            ids.extend(tokens)
            mask.extend([learn] * len(tokens))

        for m in validate_messages(messages):
            # The reference template trims content; "\n\n" + content is one text span, as in the rendered string.
            add([start, *codec.encode_text(m["role"]), end])
            body = codec.encode_text("\n\n" + m["content"].strip())
            learn = m["role"] == "assistant"
            lead = _header_length(body, "\n\n", m["content"].strip(), codec) if learn else len(body)
            add(body[:lead])
            add(body[lead:], learn)
            add([eot], learn)
        if add_generation_prompt:
            add([start, *codec.encode_text("assistant"), end, *codec.encode_text("\n\n")])
        return ids, mask


def _header_length(body: list[int], header: str, content: str, codec) -> int:
    """How many leading tokens of ``encode_text(header + content)`` are the header's (not learned). The content's
    own tokens are a suffix when the tokenizer splits where the header ends (Llama 3 and Gemma 3 do). If it merges
    the header's last characters into the content's first token, the header's longest prefix that encodes to a
    prefix of ``body`` gives the tokens wholly inside the header; the merged token holds content and is learned."""
    own = codec.encode_text(content)
    if len(own) <= len(body) and body[len(body) - len(own):] == own:
        return len(body) - len(own)
    for end in range(len(header), 0, -1):
        lead = codec.encode_text(header[:end])
        if body[:len(lead)] == lead:
            return len(lead)
    return 0


class GemmaFormat(_CodedFormat):
    """Gemma 3's template: ``<bos>``, then per turn ``<start_of_turn>{user|model}\\n{content}<end_of_turn>\\n``.
    A system message is no turn of its own: its text and "\\n\\n" open the first user turn (Gemma has no system
    role). As in HF, the text between two control tokens is one span: ``model\\n`` + content is tokenized together,
    and the ``\\n`` after ``<end_of_turn>`` on its own; SFT learns an answer's content and its ``<end_of_turn>``,
    not that ``\\n`` (generation stops first)."""

    name = "gemma"
    BOS, START, END, EOS = "<bos>", "<start_of_turn>", "<end_of_turn>", "<eos>"
    stop_tokens = (END, EOS)  # Gemma's generation_config stops on both
    hf_template = GEMMA3_TEMPLATE

    @staticmethod
    def _turns(messages) -> list[tuple[str, str, str]]:
        """(role, text before the content, trimmed content) per turn, refusing what the template refuses. A lone
        system message renders to nothing, as in the template."""
        msgs = validate_messages(messages)
        skip = int(msgs[0]["role"] == "system")
        system = msgs[0]["content"] + "\n\n" if skip else ""  # untrimmed, as in the template
        turns = []
        for k, m in enumerate(msgs[skip:]):
            if (m["role"] == "user") != (k % 2 == 0):
                raise ChatFormatError(f"messages[{k + skip}]: the gemma chat format needs roles to alternate "
                                      "user/assistant/user/..., starting with user (after an optional system message)")
            role = "model" if m["role"] == "assistant" else "user"
            turns.append((role, system if k == 0 else "", m["content"].strip()))
        return turns

    def render_text(self, messages, add_generation_prompt=True):
        out = [self.BOS]
        for role, prefix, content in self._turns(messages):
            out.append(f"{self.START}{role}\n{prefix}{content}{self.END}\n")
        if add_generation_prompt:
            out.append(f"{self.START}model\n")
        return "".join(out)

    def _render(self, messages, codec, add_generation_prompt):
        bos, start, end = (self._require(codec, t) for t in (self.BOS, self.START, self.END))
        ids, mask = [bos], [False]

        def add(tokens, learn=False):
            ids.extend(tokens)
            mask.extend([learn] * len(tokens))

        newline = codec.encode_text("\n")
        for role, prefix, content in self._turns(messages):
            body = codec.encode_text(f"{role}\n{prefix}{content}")
            learn = role == "model"
            lead = _header_length(body, "model\n", content, codec) if learn else len(body)
            add([start, *body[:lead]])
            add(body[lead:], learn)
            add([end], learn)
            add(newline)
        if add_generation_prompt:
            add([start, *codec.encode_text("model\n")])
        return ids, mask


# Content placeholders: private-use characters no tokenizer gives meaning to and no template alters.
_PH_OPEN, _PH_CLOSE = "\ue000", "\ue001"
# The placeholder of message N, with the strips the template applied to it: "(l0a)" is .lstrip("\n"), "(t)" a trim.
_PLACEHOLDER = re.compile(f"{_PH_OPEN}(\\d+)((?:\\([lrt][0-9a-f]*\\))*){_PH_CLOSE}")
_STRIP_OP = re.compile(r"\(([lrt])([0-9a-f]*)\)")
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


class _Placeholder(str):
    """Stands for message ``index``'s content inside the template; remembers the strips (``| trim``,
    ``.lstrip('\\n')``) applied to it, in order, with their characters."""

    def __new__(cls, index: int, ops: str = ""):
        obj = super().__new__(cls, f"{_PH_OPEN}{index}{ops}{_PH_CLOSE}")
        obj.index, obj.ops = index, ops
        return obj

    def _strip(self, op: str, chars) -> _Placeholder:
        return _Placeholder(self.index, f"{self.ops}({op}{(chars or '').encode('utf-8').hex()})")

    def strip(self, chars=None):
        return self._strip("t", chars)

    def lstrip(self, chars=None):
        return self._strip("l", chars)

    def rstrip(self, chars=None):
        return self._strip("r", chars)


def _apply_mode(text: str, ops: str) -> str:
    for op, chars in _STRIP_OP.findall(ops):
        chars = bytes.fromhex(chars).decode("utf-8") or None
        text = {"t": text.strip, "l": text.lstrip, "r": text.rstrip}[op](chars)
    return text


class TemplateFormat(ChatFormat):
    """A model's own Jinja chat template, rendered in an immutable sandbox."""

    name = "template"

    def __init__(self, template: str, bos_token: str | None = None, eos_token: str | None = None,
                 date: str | None = None):
        """``date`` (YYYY-MM-DD; default ``$TAIDE_CHAT_DATE``, else today) is the day a template that prints one
        (Llama 3.1+'s "Today Date") shows: pin it for renders that do not change from day to day."""
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ChatFormatError(f"the model's chat template refused the messages: {message}")

        self.date = chat_date(date)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: (self.date or datetime.now()).strftime(fmt)
        try:
            self._template = env.from_string(template)
        except TemplateError as e:
            raise ChatFormatError(f"the model's chat template does not parse: {e}") from e
        self.source = template
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""
        stops = [t for t in _END_OF_TURN_TOKENS if t in template]
        if eos_token and eos_token not in stops:
            stops.append(eos_token)
        self.stop_tokens = tuple(stops)

    @property
    def hf_template(self) -> str:
        return self.source

    def _render_with_placeholders(self, messages, add_generation_prompt) -> tuple[str, list[str]]:
        from jinja2 import TemplateError

        msgs = validate_messages(messages)
        contents = [m["content"] for m in msgs]
        staged = [{"role": m["role"], "content": _Placeholder(i)} for i, m in enumerate(msgs)]
        try:
            pinned = {"date_string": self.date.strftime("%d %b %Y")} if self.date else {}
            rendered = self._template.render(messages=staged, add_generation_prompt=add_generation_prompt,
                                             bos_token=self.bos_token, eos_token=self.eos_token, **pinned)
        except TemplateError as e:
            raise ChatFormatError(f"the model's chat template failed to render: {e}") from e
        return rendered, contents

    def render_text(self, messages, add_generation_prompt=True):
        rendered, contents = self._render_with_placeholders(messages, add_generation_prompt)
        return _fill(rendered, contents)

    def render_ids(self, messages, codec, add_generation_prompt=True):
        rendered, contents = self._render_with_placeholders(messages, add_generation_prompt)
        return self._ids(rendered, contents, codec)

    def _ids(self, rendered: str, contents: list[str], codec, continuation: bool = False) -> list[int]:
        """Split the rendered prompt at the template's control tokens, as tokenizers do, and tokenize each
        stretch between them (template text and message text together) as plain text. Control-token
        strings inside message text are thus never split out: they stay characters. A stretch after a control
        token (or after ``continuation``: more of a prompt) is tokenized as the middle of a prompt."""
        controls = sorted(set(codec.control_tokens()), key=len, reverse=True)
        control_re = re.compile("|".join(map(re.escape, controls))) if controls else None
        ids: list[int] = []
        stretch: list[str] = []

        def flush():
            if "".join(stretch):
                ids.extend(codec.encode_text("".join(stretch), continuation=continuation or bool(ids)))
            stretch.clear()

        def template_text(text: str):
            pos = 0
            for m in control_re.finditer(text) if control_re else ():
                stretch.append(text[pos:m.start()])
                flush()
                ids.append(codec.token_id(m.group()))
                pos = m.end()
            stretch.append(text[pos:])

        pos = 0
        for m in _PLACEHOLDER.finditer(rendered):
            template_text(rendered[pos:m.start()])
            stretch.append(_apply_mode(contents[int(m.group(1))], m.group(2)))
            pos = m.end()
        template_text(rendered[pos:])
        flush()
        return ids

    def _answer(self, msgs: list[dict], i: int) -> str:
        """What the model writes for assistant message ``i`` after its generation prompt, as rendered text with the
        content's placeholder: the template's text between the generation prompt and the content (Qwen 3's empty
        think block, Mistral's space), the content, and the template's text after it through the first stop token.
        Found where ``messages[:i + 1]`` renders the message: after the text that, in ``messages[:i]`` rendered with
        the generation prompt, follows the last message shown."""
        head, _ = self._render_with_placeholders(msgs[:i], True)
        plain, _ = self._render_with_placeholders(msgs[:i], False)
        upto, _ = self._render_with_placeholders(msgs[:i + 1], False)
        own = [m for m in _PLACEHOLDER.finditer(upto) if int(m.group(1)) == i]
        if len(own) != 1:
            raise ChatFormatError(f"messages[{i}]: the model's chat template shows this assistant message's text "
                                  f"{len(own)} times, not once; taide cannot tell which part to train")
        before = [m for m in _PLACEHOLDER.finditer(upto[:own[0].start()]) if int(m.group(1)) < i]
        between = upto[before[-1].end() if before else 0:own[0].start()]
        prompt = head[len(plain):] if head.startswith(plain) else ""  # the generation prompt's own text
        shown = list(_PLACEHOLDER.finditer(head))
        tail = head[shown[-1].end():] if shown else head  # what follows the last message shown, prompt included
        if prompt and prompt in between:
            preamble = between[between.rindex(prompt) + len(prompt):]
        elif between.startswith(tail):  # a template with no generation prompt of its own (Mistral)
            preamble = between[len(tail):]
        else:
            raise ChatFormatError(f"messages[{i}]: the model's chat template renders the text before this assistant "
                                  "message differently from its generation prompt; taide cannot tell where the "
                                  "answer starts")
        after = upto[own[0].end():]
        ends = [after.find(t) + len(t) for t in self.stop_tokens if t in after]
        return preamble + own[0].group() + (after[:min(ends)] if ends else after)

    def training_sequences(self, messages, codec):
        """As :meth:`ChatFormat.training_sequences`. Where the whole conversation's rendering holds a message's
        context and answer, the message is marked there, so a template that renders every turn the same whatever
        follows (Llama 3.x, ChatML, Phi-3) trains a conversation as one sequence. A template that renders earlier
        turns differently once later ones follow (Qwen 3 drops answered turns' think blocks, Mistral shows the system
        text only with the last question) gives each message it cannot mark there a sequence of its own: its
        context as the model sees it, then its answer."""
        msgs = validate_messages(messages)
        rendered, contents = self._render_with_placeholders(msgs, False)
        whole_text = _fill(rendered, contents)
        whole = self._ids(rendered, contents, codec)
        mask = [False] * len(whole)
        apart: list[tuple[list[int], list[bool]]] = []
        stops = {i for i in (codec.token_id(t) for t in self.stop_tokens) if i is not None}
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            if i == 0:
                raise ChatFormatError("messages[0]: an assistant message can only be trained after another message; "
                                      "start the conversation with a user message")
            answer = self._answer(msgs, i)
            head = self.render_ids(msgs[:i], codec, add_generation_prompt=True)
            if whole_text.startswith(self.render_text(msgs[:i], True) + _fill(answer, contents)):
                # The answer's tokens start after the prompt's, or earlier where the tokenizer merged the prompt's
                # last characters into the answer's first token (that token holds answer text and is learned).
                start = next((k for k, (a, b) in enumerate(zip(head, whole)) if a != b), min(len(head), len(whole)))
                end = next((k for k in range(start, len(whole)) if whole[k] in stops), len(whole) - 1)
                mask[start:end + 1] = [True] * (end + 1 - start)
            else:
                tokens = self._ids(answer, contents, codec, continuation=bool(head))
                apart.append((head + tokens, [False] * len(head) + [True] * len(tokens)))
        return ([(whole, mask)] if any(mask) else []) + apart


def _fill(rendered: str, contents: list[str]) -> str:
    """Rendered text with each placeholder replaced by its message's content (trimmed as the template asked)."""
    return _PLACEHOLDER.sub(lambda m: _apply_mode(contents[int(m.group(1))], m.group(2)), rendered)


def chat_date(value: str | None = None) -> datetime | None:
    """The pinned date of template renders: ``value`` or ``$TAIDE_CHAT_DATE`` (YYYY-MM-DD), else None (today)."""
    source = "date" if value else "TAIDE_CHAT_DATE"
    value = value or os.environ.get("TAIDE_CHAT_DATE")
    if not value:
        return None
    try:
        return datetime.strptime(str(value).strip(), "%Y-%m-%d")
    except ValueError:
        raise ChatFormatError(f"{source}: {value!r} is not a date written YYYY-MM-DD (e.g. 2026-12-06)") from None


# Conversations on which a format written in code must render exactly as a model's own template before it stands in
# for it: a system message, several turns, whitespace a template trims or keeps, Chinese text, and both ends.
PROBES = (
    [{"role": "system", "content": "你是一個來自台灣的AI助理。"}, {"role": "user", "content": "  台灣最高的山是？\n"},
     {"role": "assistant", "content": "玉山，\n海拔 3,952 公尺。 "}, {"role": "user", "content": "Thanks!\t"}],
    [{"role": "user", "content": "請把「早安」翻成英文。"}, {"role": "assistant", "content": " Good morning."}],
    [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "hi"}],
)


@functools.lru_cache(maxsize=64)
def coded_format_for_template(template: str, bos_token: str | None, eos_token: str | None) -> str | None:
    """"llama3" or "gemma" when that format, written in code, renders byte for byte as ``template`` on every probe
    conversation (with and without the generation prompt); else None: the template itself is the truth."""
    try:
        own = TemplateFormat(template, bos_token, eos_token, date="2024-07-26")
    except ChatFormatError:
        return None
    for coded in (Llama3Format(), GemmaFormat()):
        try:
            if all(coded.render_text(p, g) == own.render_text(p, g) for p in PROBES for g in (True, False)):
                return coded.name
        except ChatFormatError:
            continue
    return None


def detect_chat_format(template: str | None, vocabulary_has_llama3_tokens: bool = False,
                       vocabulary_has_gemma_tokens: bool = False, bos_token: str | None = None,
                       eos_token: str | None = None) -> str | None:
    """The model's own template ("template"), or the Llama 3 / Gemma format written in code where it renders exactly
    as that template; without a template (pretrained bases, such as Gemma 3's GGUF), the vocabulary's control tokens
    decide; None when neither says."""
    if template:
        return coded_format_for_template(template, bos_token, eos_token) or "template"
    if vocabulary_has_llama3_tokens:
        return "llama3"
    if vocabulary_has_gemma_tokens:
        return "gemma"
    return None


def chat_format_for(name: str | None, template: str | None = None, bos_token: str | None = None,
                    eos_token: str | None = None, date: str | None = None) -> ChatFormat:
    """The format called ``name`` ("llama3", "gemma" or "template"); ``None`` means the model has none. ``date``:
    see :class:`TemplateFormat`."""
    if name == "llama3":
        return Llama3Format()
    if name == "gemma":
        return GemmaFormat()
    if name == "template":
        if not template:
            raise ChatFormatError("chat format 'template' was asked for but the model has no chat template")
        return TemplateFormat(template, bos_token, eos_token, date)
    if name is None:
        raise ChatFormatError("the model has no chat template and no Llama 3 or Gemma control tokens; pass "
                              "--chat-format llama3 (or gemma) if it was trained on the Llama 3 (or Gemma 3) format")
    raise ChatFormatError(f"unknown chat format {name!r}; choose llama3, gemma or template")
