"""The card's office tasks on any engine, the Traditional-Chinese guard on a stream, and `taide demo`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from taide.chat.presets import TASKS, resolve_system_prompt, task_messages
from taide.chat.traditional import TraditionalGuard
from taide.engines import Chunk, Completion, Engine, GenerationParams, load_engine


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


def run_task(engine: Engine, task: str, text: str, params: GenerationParams | None = None, system: str | None = "auto",
             guard: TraditionalGuard | None = None) -> Iterator[Chunk]:
    """Stream the answer to one office task (article, letter, summary, zh2en, en2zh) for ``text``; ``system`` as
    :func:`~taide.chat.presets.resolve_system_prompt` takes it."""
    system_text = resolve_system_prompt(system, engine.default_system_prompt)
    return stream_guarded(engine, task_messages(task, text, system_text), params, guard)


@dataclass
class DemoResult:
    task: str
    prompt: str
    completion: Completion


DEMO_PARAMS = GenerationParams(max_tokens=96, temperature=0.0, repetition_penalty=1.1)


def demo(model: str = "smollm2-135m", engine: str = "auto", params: GenerationParams | None = None,
         on_chunk: Callable[[str, Chunk], None] | None = None, **engine_options) -> list[DemoResult]:
    """Run every office task once on its sample input; ``on_chunk(task, chunk)`` sees the streamed answer."""
    results = []
    with load_engine(model, engine, **engine_options) as eng:
        for name, task in TASKS.items():
            prompt = task.prompt(task.example)
            for chunk in run_task(eng, name, task.example, params or DEMO_PARAMS):
                if on_chunk:
                    on_chunk(name, chunk)
                if chunk.completion:
                    results.append(DemoResult(name, prompt, chunk.completion))
    return results
