"""Render chat messages to text and to token ids.

Two formats:
- :class:`Llama3Format` — Llama 3's template as Llama3-TAIDE uses it, written out in code so the
  token ids are built directly: control tokens by id, message text tokenized with special tokens
  disabled.
- :class:`TemplateFormat` — any other model's own Jinja template (SmolLM2 uses ChatML), rendered in a
  sandbox. Message text is swapped for placeholders before rendering, so control tokens are split out of
  the template's markup only: text a user types never becomes a control token.
"""

from __future__ import annotations

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


class TokenCodec(Protocol):
    """The tokenizer operations a chat format needs; each engine adapts its tokenizer."""

    def encode_text(self, text: str) -> list[int]:
        """Tokenize user text with special tokens disabled: ``<|eot_id|>`` stays plain characters."""

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

    def render_ids_with_mask(self, messages: list[dict], codec: TokenCodec) -> tuple[list[int], list[bool]]:
        """The conversation's ids, exactly ``render_ids(messages, codec, add_generation_prompt=False)``, and a mask
        that is True on the tokens a model learns in SFT: each assistant message's content and the end-of-turn
        token(s) that close it; never headers, system or user text.

        This generic version renders prefixes: the tokens of assistant message ``i`` are those between
        ``messages[:i]`` with the generation prompt and ``messages[:i + 1]``, up to its last stop token (so a
        template's newline after ``<|im_end|>`` is not learned; generation stops before it). Both prefixes must
        be prefixes of the whole conversation's ids; a template that renders earlier turns differently once later
        ones follow cannot be masked this way, and is refused."""
        msgs = validate_messages(messages)
        ids = self.render_ids(msgs, codec, add_generation_prompt=False)
        mask = [False] * len(ids)
        stops = {i for i in (codec.token_id(t) for t in self.stop_tokens) if i is not None}
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            if i == 0:
                raise ChatFormatError(f"messages[0]: the {self.name} chat format can only mask an assistant message "
                                      "that follows another message; start the conversation with a user message")
            head = self.render_ids(msgs[:i], codec, add_generation_prompt=True)
            upto = self.render_ids(msgs[:i + 1], codec, add_generation_prompt=False)
            for prefix, what in ((head, f"messages[:{i}] with the generation prompt"), (upto, f"messages[:{i + 1}]")):
                if ids[:len(prefix)] != prefix:
                    raise ChatFormatError(
                        f"messages[{i}]: the {self.name} chat template is not prefix-consistent: {what} does not "
                        "render to a prefix of the whole conversation, so the assistant's tokens cannot be located")
            if len(upto) <= len(head):
                raise ChatFormatError(f"messages[{i}]: the {self.name} chat template renders no tokens for this "
                                      "assistant message after its generation prompt; it cannot be masked")
            last = max((j for j in range(len(head), len(upto)) if ids[j] in stops), default=len(upto) - 1)
            mask[len(head):last + 1] = [True] * (last + 1 - len(head))
        return ids, mask

    def _require(self, codec: TokenCodec, token: str) -> int:
        token_id = codec.token_id(token)
        if token_id is None:
            raise ChatFormatError(f"the {self.name} chat format needs the token {token} but the tokenizer lacks it")
        return token_id


class Llama3Format(ChatFormat):
    """``<|begin_of_text|>`` then per message ``<|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>``."""

    name = "llama3"
    BOS, START, END, EOT = "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
    stop_tokens = (EOT,)

    def render_text(self, messages, add_generation_prompt=True):
        out = [self.BOS]
        for m in validate_messages(messages):
            out.append(f"{self.START}{m['role']}{self.END}\n\n{m['content'].strip()}{self.EOT}")
        if add_generation_prompt:
            out.append(f"{self.START}assistant{self.END}\n\n")
        return "".join(out)

    def render_ids(self, messages, codec, add_generation_prompt=True):
        return self._render(messages, codec, add_generation_prompt)[0]

    def render_ids_with_mask(self, messages, codec):
        """As :meth:`ChatFormat.render_ids_with_mask`, marking the spans directly while building the ids."""
        return self._render(messages, codec, add_generation_prompt=False)

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
            lead = self._header_newlines(body, m["content"].strip(), codec) if learn else len(body)
            add(body[:lead])
            add(body[lead:], learn)
            add([eot], learn)
        if add_generation_prompt:
            add([start, *codec.encode_text("assistant"), end, *codec.encode_text("\n\n")])
        return ids, mask

    @staticmethod
    def _header_newlines(body: list[int], content: str, codec) -> int:
        """How many leading tokens of ``encode_text("\\n\\n" + content)`` are the header's "\\n\\n" (not learned):
        the content's own tokens are a suffix when the tokenizer splits at the newlines (Llama 3 does), else the
        newline tokens a prefix; if neither, the tokens are merged and all of them are learned."""
        own, newline = codec.encode_text(content), codec.encode_text("\n\n")
        if len(own) <= len(body) and body[len(body) - len(own):] == own:
            return len(body) - len(own)
        return len(newline) if body[:len(newline)] == newline else 0


# Content placeholders: private-use characters no tokenizer gives meaning to and no template alters.
_PH_OPEN, _PH_CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(f"{_PH_OPEN}(\\d+)([lrt]?){_PH_CLOSE}")
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


class _Placeholder(str):
    """Stands for message ``index``'s content inside the template; remembers a ``| trim``."""

    def __new__(cls, index: int, mode: str = ""):
        obj = super().__new__(cls, f"{_PH_OPEN}{index}{mode}{_PH_CLOSE}")
        obj.index = index
        return obj

    def strip(self, chars=None):
        return _Placeholder(self.index, "t")

    def lstrip(self, chars=None):
        return _Placeholder(self.index, "l")

    def rstrip(self, chars=None):
        return _Placeholder(self.index, "r")


def _apply_mode(text: str, mode: str) -> str:
    return {"t": text.strip, "l": text.lstrip, "r": text.rstrip}.get(mode, lambda: text)()


class TemplateFormat(ChatFormat):
    """A model's own Jinja chat template, rendered in an immutable sandbox."""

    name = "template"

    def __init__(self, template: str, bos_token: str | None = None, eos_token: str | None = None):
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ChatFormatError(f"the model's chat template refused the messages: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
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

    def _render_with_placeholders(self, messages, add_generation_prompt) -> tuple[str, list[str]]:
        from jinja2 import TemplateError

        msgs = validate_messages(messages)
        contents = [m["content"] for m in msgs]
        staged = [{"role": m["role"], "content": _Placeholder(i)} for i, m in enumerate(msgs)]
        try:
            rendered = self._template.render(messages=staged, add_generation_prompt=add_generation_prompt,
                                             bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateError as e:
            raise ChatFormatError(f"the model's chat template failed to render: {e}") from e
        return rendered, contents

    def render_text(self, messages, add_generation_prompt=True):
        rendered, contents = self._render_with_placeholders(messages, add_generation_prompt)
        return _PLACEHOLDER.sub(lambda m: _apply_mode(contents[int(m.group(1))], m.group(2)), rendered)

    def render_ids(self, messages, codec, add_generation_prompt=True):
        """Split the rendered prompt at the template's control tokens, as tokenizers do, and tokenize each
        stretch between them (template text and message text together) as plain text. Control-token
        strings inside message text are thus never split out: they stay characters."""
        rendered, contents = self._render_with_placeholders(messages, add_generation_prompt)
        controls = sorted(set(codec.control_tokens()), key=len, reverse=True)
        control_re = re.compile("|".join(map(re.escape, controls))) if controls else None
        ids: list[int] = []
        stretch: list[str] = []

        def template_text(text: str):
            pos = 0
            for m in control_re.finditer(text) if control_re else ():
                stretch.append(text[pos:m.start()])
                if "".join(stretch):
                    ids.extend(codec.encode_text("".join(stretch)))
                stretch.clear()
                ids.append(codec.token_id(m.group()))
                pos = m.end()
            stretch.append(text[pos:])

        pos = 0
        for m in _PLACEHOLDER.finditer(rendered):
            template_text(rendered[pos:m.start()])
            stretch.append(_apply_mode(contents[int(m.group(1))], m.group(2)))
            pos = m.end()
        template_text(rendered[pos:])
        if "".join(stretch):
            ids.extend(codec.encode_text("".join(stretch)))
        return ids


def chat_format_for(name: str | None, template: str | None = None, bos_token: str | None = None,
                    eos_token: str | None = None) -> ChatFormat:
    """The format called ``name`` ("llama3" or "template"); ``None`` means the model has none."""
    if name == "llama3":
        return Llama3Format()
    if name == "template":
        if not template:
            raise ChatFormatError("chat format 'template' was asked for but the model has no chat template")
        return TemplateFormat(template, bos_token, eos_token)
    if name is None:
        raise ChatFormatError("the model has no chat template and no Llama 3 control tokens; "
                              "pass --chat-format llama3 if it was trained on the Llama 3 format")
    raise ChatFormatError(f"unknown chat format {name!r}; choose llama3 or template")
