"""`taide generate`: answer every conversation of a JSONL file, in batches, resumably.

Input lines are ``{"id", "messages": [...]}`` or ``{"id", "prompt": "..."}``; other fields are carried
through. Each output line is the input record plus ``answer``, ``finish_reason`` and ``usage``. The
output is appended to batch by batch, so a rerun after a crash skips the ids already written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from taide.artifacts import iter_jsonl, read_resumable
from taide.chat.formats import validate_messages
from taide.chat.presets import messages_with_system, resolve_system_prompt
from taide.chat.traditional import TraditionalGuard
from taide.engines import Engine, GenerationParams
from taide.errors import ChatFormatError, InputError


@dataclass(kw_only=True)
class SamplingOptions:
    """The sampling flags `taide generate`, `taide task` and `taide chat` share, and the model to load."""
    engine: str = "auto"
    system: str = "auto"  # "auto", "none", a preset name or the text (resolve_system_prompt)
    max_tokens: int = 512
    temperature: float = GenerationParams.temperature
    top_p: float = GenerationParams.top_p
    top_k: int = GenerationParams.top_k
    repetition_penalty: float = GenerationParams.repetition_penalty
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    traditional: bool = False  # convert Simplified characters in the answers to Taiwan Traditional
    chat_format: str | None = None
    n_ctx: int | None = None
    api_key: str | None = None

    def params(self) -> GenerationParams:
        return GenerationParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                                top_k=self.top_k, repetition_penalty=self.repetition_penalty, seed=self.seed,
                                stop=list(self.stop or []))

    def load(self, model: str, status: Callable[[str], AbstractContextManager] = nullcontext) -> Engine:
        from taide.engines import load_engine

        with status(f"Loading {model} …"):
            return load_engine(model, self.engine, chat_format=self.chat_format, n_ctx=self.n_ctx, api_key=self.api_key)


@dataclass
class GenerateConfig(SamplingOptions):
    """``taide generate``: answer every conversation of a JSONL file into another, resumably."""
    model: str
    input: Path  # JSONL: {id, messages} or {id, prompt} per line
    output: Path  # JSONL the answers are appended to; ids already there are skipped
    batch_size: int = 8

    def __post_init__(self):
        self.input, self.output = Path(self.input), Path(self.output)


@dataclass
class GenerateReport:
    total: int  # records in the input
    already_done: int  # skipped because the output had them
    generated: int
    completion_tokens: int
    traditional_changes: int
    elapsed: float
    output: Path


def read_conversations(path: Path) -> list[tuple[str, dict, list[dict]]]:
    """(id, record, messages) for every line; any bad line is an InputError naming file, line and field."""
    items, seen = [], {}
    try:
        for lineno, record, problem in iter_jsonl(path):
            if problem:
                raise InputError(path, lineno, problem)
            rid = str(record["id"]) if "id" in record else f"line-{lineno}"
            if rid in seen:
                raise InputError(path, lineno, f"field 'id': {rid!r} repeats line {seen[rid]}")
            seen[rid] = lineno
            if "messages" in record:
                try:
                    messages = validate_messages(record["messages"])
                except ChatFormatError as e:
                    raise InputError(path, lineno, f"field {e}") from e
            elif isinstance(record.get("prompt"), str) and record["prompt"].strip():
                messages = [{"role": "user", "content": record["prompt"]}]
            else:
                raise InputError(path, lineno, "needs a 'messages' list or a non-empty 'prompt' string")
            if messages[-1]["role"] == "assistant":
                raise InputError(path, lineno, "field 'messages': the last message is the assistant's; nothing to answer")
            items.append((rid, record, messages))
    except UnicodeDecodeError as e:
        raise InputError(path, None, f"not UTF-8 at byte {e.start}") from e
    return items


def _done_ids(path: Path) -> set[str]:
    """Ids already in the output (a torn last line is cut off and redone; a bad line before it is an error)."""
    return {str(row["id"]) for _, row in read_resumable(path) if "id" in row}


def generate_file(engine: Engine, input_path: str | Path, output_path: str | Path,
                  params: GenerationParams | None = None, batch_size: int = 8, system: str | None = "auto",
                  traditional: bool = False, on_progress: Callable[[int, int], None] | None = None) -> GenerateReport:
    """Answer each conversation in ``input_path`` into ``output_path``; ids already there are skipped.

    ``system`` (:func:`~taide.chat.presets.resolve_system_prompt`: "auto", "none", a preset or text) is added to
    conversations without a system message; "auto" is the TAIDE prompt for TAIDE-format models. ``on_progress(done, total)`` is called after every batch.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InputError(input_path, None, "no such file")
    params = params or GenerationParams()
    items = read_conversations(input_path)
    done = _done_ids(output_path)
    todo = [it for it in items if it[0] not in done]
    system = resolve_system_prompt(system, engine.default_system_prompt)
    guard = TraditionalGuard() if traditional else None
    output_path.parent.mkdir(parents=True, exist_ok=True)
    started, tokens, finished = time.perf_counter(), 0, len(items) - len(todo)
    if on_progress:
        on_progress(finished, len(items))
    with output_path.open("a", encoding="utf-8") as out:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            conversations = [messages_with_system(m, system) for _, _, m in batch]
            for (rid, record, _), result in zip(batch, engine.generate_batch(conversations, params)):
                answer = guard.convert(result.text) if guard else result.text
                out.write(json.dumps({**record, "id": record.get("id", rid), "answer": answer,
                                      "finish_reason": result.finish_reason, "usage": result.usage()},
                                     ensure_ascii=False) + "\n")
                tokens += result.completion_tokens
            out.flush()
            finished += len(batch)
            if on_progress:
                on_progress(finished, len(items))
    return GenerateReport(total=len(items), already_done=len(items) - len(todo), generated=len(todo),
                          completion_tokens=tokens, traditional_changes=guard.changed if guard else 0,
                          elapsed=time.perf_counter() - started, output=output_path)


def run_generate(config: GenerateConfig, on_progress: Callable[[int, int], None] | None = None,
                 status: Callable[[str], AbstractContextManager] = nullcontext) -> GenerateReport:
    """Load ``config.model`` and :func:`generate_file` ``input`` into ``output``."""
    if not config.input.is_file():  # before the model loads
        raise InputError(config.input, None, "no such file")
    with config.load(config.model, status) as engine:
        return generate_file(engine, config.input, config.output, config.params(), config.batch_size, config.system,
                             config.traditional, on_progress)
