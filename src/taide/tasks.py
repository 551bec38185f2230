"""The card's office tasks on any engine, the Traditional-Chinese guard on a stream, and `taide demo`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from taide.chat.presets import TASKS, resolve_system_prompt, task_messages
from taide.chat.traditional import TraditionalGuard
from taide.engines import Chunk, Completion, Engine, GenerationParams, load_engine
from taide.errors import InputError, TaideError
from taide.generate import SamplingOptions
from taide.models import default_model


def stream_guarded(engine: Engine, messages: list[dict], params: GenerationParams | None = None,
                   guard: TraditionalGuard | None = None) -> Iterator[Chunk]:
    """``engine.stream`` with the Traditional-Chinese guard applied (when given) to text and result."""
    if guard is None:
        yield from engine.stream(messages, params)
        return
    parts = []
    for chunk in engine.stream(messages, params):
        text = guard.push(chunk.text) if chunk.text else ""
        if chunk.completion is not None:
            text += guard.flush()
        parts.append(text)
        final = replace(chunk.completion, text="".join(parts)) if chunk.completion else None
        if text or final:
            yield Chunk(text, final)


def stream_task(engine: Engine, task: str, text: str, params: GenerationParams | None = None, system: str | None = "auto",
             guard: TraditionalGuard | None = None) -> Iterator[Chunk]:
    """Stream the answer to one office task (article, letter, summary, zh2en, en2zh) for ``text``; ``system`` as
    :func:`~taide.chat.presets.resolve_system_prompt` takes it."""
    system_text = resolve_system_prompt(system, engine.default_system_prompt)
    return stream_guarded(engine, task_messages(task, text, system_text), params, guard)


@dataclass
class TaskConfig(SamplingOptions):
    """``taide task``: one office task on a text, the answer streamed."""
    kind: str  # article, letter, summary, zh2en or en2zh
    input: str = "-"  # a file with the text, or "-" for standard input
    model: str | None = None  # None: models.default_model(), the newest build (else the embedded SmolLM2)
    # the task's own sampling: steadier than chat's
    temperature: float = field(default=0.3, kw_only=True)
    top_p: float = field(default=1.0, kw_only=True)
    top_k: int = field(default=0, kw_only=True)
    repetition_penalty: float = field(default=1.05, kw_only=True)

    def __post_init__(self):
        if self.kind not in TASKS:
            raise TaideError(f"unknown task {self.kind!r}; choose one of {', '.join(TASKS)}")

    def read_input(self) -> str:
        if self.input == "-":
            return sys.stdin.read()
        path = Path(self.input)
        if not path.is_file():
            raise InputError(path, None, "no such file")
        return path.read_text(encoding="utf-8")


@dataclass
class TaskResult:
    completion: Completion  # its text is the whole answer
    traditional_changes: int  # characters the Traditional guard converted (0 without --traditional)


def run_task(config: TaskConfig, on_text: Callable[[str], None] | None = None,
             status: Callable[[str], AbstractContextManager] = nullcontext) -> TaskResult:
    """Read the input, load the model and answer the task; ``on_text`` sees the answer as it streams."""
    text = config.read_input()  # a missing file fails before the model loads
    guard = TraditionalGuard() if config.traditional else None
    completion = None
    with config.load(config.model or default_model(), status) as engine:
        for chunk in stream_task(engine, config.kind, text, config.params(), config.system, guard):
            if on_text and chunk.text:
                on_text(chunk.text)
            completion = chunk.completion or completion
    return TaskResult(completion, guard.changed if guard else 0)


@dataclass
class DemoResult:
    task: str
    prompt: str
    completion: Completion


DEMO_PARAMS = GenerationParams(max_tokens=96, temperature=0.0, repetition_penalty=1.1)


def demo(model: str | None = None, engine: str = "auto", params: GenerationParams | None = None,
         on_chunk: Callable[[str, Chunk], None] | None = None, **engine_options) -> list[DemoResult]:
    """Run every office task once on its sample input (``model`` None: models.default_model()); ``on_chunk(task,
    chunk)`` sees the streamed answer."""
    results = []
    with load_engine(model or default_model(), engine, **engine_options) as eng:
        for name, task in TASKS.items():
            prompt = task.prompt(task.example)
            for chunk in stream_task(eng, name, task.example, params or DEMO_PARAMS):
                if on_chunk:
                    on_chunk(name, chunk)
                if chunk.completion:
                    results.append(DemoResult(name, prompt, chunk.completion))
    return results
