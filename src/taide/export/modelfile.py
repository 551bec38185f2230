"""An Ollama ``Modelfile`` beside the GGUF, so ``ollama create NAME -f Modelfile`` gives a model that chats in
the right format and stops at the end of a turn.

The TEMPLATE is Go template text over Ollama's ``.System`` and ``.Messages``, written to render exactly what
taide's own chat format renders (BOS is left to the tokenizer, as ``add_bos_token`` says): the Llama 3
headers and ``<|eot_id|>`` for Llama 3-format models; Gemma 3's turns (``<start_of_turn>user``/``model``,
``<end_of_turn>``, the system prompt opening the first user turn, since Gemma has no system role) for
Gemma-format models; both with the format's default system prompt (TAIDE's) as SYSTEM; ChatML for
SmolLM2-style templates, with the template's own default system prompt. A final assistant message is left
open (no end-of-turn), so Ollama continues it, as its own templates do.
"""

from __future__ import annotations

import re
from pathlib import Path

LLAMA3_GO_TEMPLATE = """\
{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>

{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}
{{- end }}
{{- end }}"""

CHATML_GO_TEMPLATE = """\
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ if $last }}<|im_start|>assistant
{{ end }}
{{- else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- end }}"""

# Ollama hands a system message both as .System and inside .Messages (first); it is rendered once, before the
# first user message's text, at index 0 or 1 (after the system message).
GEMMA_GO_TEMPLATE = """\
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<start_of_turn>user
{{ if and $.System (or (eq $i 0) (eq $i 1)) }}{{ $.System }}

{{ end }}{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""

LLAMA3_STOPS = ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>")
CHATML_STOPS = ("<|im_end|>", "<|im_start|>")
GEMMA_STOPS = ("<end_of_turn>",)


def _quote(text: str) -> str:
    if '"""' in text:
        raise ValueError('text with """ cannot be written into a Modelfile')
    return f'"""{text}"""'


def chatml_default_system(template: str) -> str | None:
    """The system prompt a ChatML template inserts when a conversation has none (SmolLM2's "You are a helpful AI
    assistant named SmolLM, ..."), read by rendering a conversation without one."""
    from taide.chat.formats import TemplateFormat

    text = TemplateFormat(template).render_text([{"role": "user", "content": "x"}], add_generation_prompt=False)
    m = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", text, re.S)
    return m.group(1) if m else None


def modelfile_text(gguf_file: str, chat_format: str | None, chat_template: str | None = None,
                   system: str | None = "auto", context_length: int | None = None) -> str:
    """The Modelfile for ``gguf_file`` (written as given, e.g. ``./model.gguf``). ``system="auto"``: the format's
    default prompt for Llama 3- and Gemma-format models (TAIDE's), a ChatML template's own default otherwise;
    None: no SYSTEM line."""
    from taide.chat.presets import default_system_prompt

    lines = ["# Made by `taide export`. Create the Ollama model with: ollama create NAME -f THIS_FILE", "",
             f"FROM {gguf_file}", ""]
    if chat_format in ("llama3", "gemma"):
        template, stops = {"llama3": (LLAMA3_GO_TEMPLATE, LLAMA3_STOPS),
                           "gemma": (GEMMA_GO_TEMPLATE, GEMMA_STOPS)}[chat_format]
        default = default_system_prompt(chat_format)
    elif chat_template and "<|im_start|>" in chat_template:
        template, stops = CHATML_GO_TEMPLATE, CHATML_STOPS
        default = chatml_default_system(chat_template)
    else:
        template, stops, default = None, (), None
        lines += ["# No TEMPLATE: the chat format is not Llama 3, Gemma or ChatML; Ollama reads the GGUF's template.",
                  ""]
    if template:
        lines += [f"TEMPLATE {_quote(template)}", ""]
    system_text = default if system == "auto" else system
    if system_text:
        lines += [f"SYSTEM {_quote(system_text)}", ""]
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    if context_length:
        lines.append(f"PARAMETER num_ctx {min(context_length, 8192)}")
    return "\n".join(lines).rstrip() + "\n"


def write_modelfile(gguf_path: str | Path, chat_format: str | None, chat_template: str | None = None,
                    system: str | None = "auto", context_length: int | None = None,
                    path: str | Path | None = None) -> Path:
    """Write ``Modelfile`` beside ``gguf_path`` (or at ``path``), referring to the GGUF by a relative path."""
    gguf_path = Path(gguf_path)
    target = Path(path) if path else gguf_path.parent / "Modelfile"
    try:
        rel = Path(gguf_path.resolve()).relative_to(target.parent.resolve())
        ref = f"./{rel.as_posix()}"
    except ValueError:
        ref = str(gguf_path.resolve())
    target.write_text(modelfile_text(ref, chat_format, chat_template, system, context_length), encoding="utf-8")
    return target
