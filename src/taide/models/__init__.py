"""Model references: turn what a user types (a directory, a .gguf file, a URL or an embedded name)
into files plus the metadata every other package needs (architecture, context length, chat format)."""

from taide.models.reference import (EMBEDDED_MODELS, ModelRef, default_model, embedded_gguf_path, latest_build,
                                   remember_build, resolve_model)

__all__ = ["EMBEDDED_MODELS", "ModelRef", "default_model", "embedded_gguf_path", "latest_build", "remember_build",
           "resolve_model"]
