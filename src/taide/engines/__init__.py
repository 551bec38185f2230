"""Engines: one interface over transformers, llama.cpp and OpenAI-compatible endpoints.

``load_engine(reference)`` resolves the model and picks the engine: llama.cpp for GGUF files (the
fast CPU path), transformers for Hugging Face directories, the openai engine for URLs. Pass
``engine=`` to override.
"""

from __future__ import annotations

import importlib
import importlib.util

from taide.engines.base import Chunk, ChunkStream, Completion, Engine, LocalEngine

from taide.engines.params import GenerationParams
from taide.errors import EngineError
from taide.models import ModelRef, resolve_model

ENGINES = {
    "transformers": ("taide.engines.transformers_engine", "TransformersEngine"),
    "llamacpp": ("taide.engines.llamacpp_engine", "LlamaCppEngine"),
    "openai": ("taide.engines.openai_engine", "OpenAIEngine"),
}


def pick_engine(model: ModelRef) -> str:
    if model.kind == "endpoint":
        return "openai"
    if model.kind == "gguf" and importlib.util.find_spec("llama_cpp") is not None:
        return "llamacpp"
    return "transformers"


def load_engine(model: str | ModelRef, engine: str = "auto", **options) -> Engine:
    """Load ``model`` (a reference or a resolved :class:`ModelRef`) on ``engine``.

    Options go to the engine: ``chat_format`` ("llama3"/"gemma"/"template"); ``n_ctx``, ``n_parallel`` and
    ``n_threads`` (llamacpp); ``device``, ``dtype`` and ``max_batch`` (transformers); ``api_key`` and
    ``served_model`` (openai). An option that is None is left to the engine's default.
    """
    options = {k: v for k, v in options.items() if v is not None}
    ref = model if isinstance(model, ModelRef) else resolve_model(model)
    name = pick_engine(ref) if engine in (None, "auto") else engine
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of auto, {', '.join(ENGINES)}")
    if name == "openai" and ref.kind != "endpoint":
        raise EngineError(f"the openai engine talks to an endpoint URL; {ref.reference} is a local model")
    module, cls = ENGINES[name]
    return getattr(importlib.import_module(module), cls)(ref, **options)


__all__ = ["ENGINES", "Chunk", "ChunkStream", "Completion", "Engine", "GenerationParams", "LocalEngine", "load_engine", "pick_engine"]
