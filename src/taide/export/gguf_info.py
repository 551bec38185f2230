"""GGUF headers for export and verification: the reader lives in :mod:`taide.models.gguf` (resolving a reference
reads headers too); a GGUF's :class:`~taide.models.ModelRef` is the one ``resolve_model`` makes."""

from __future__ import annotations

from pathlib import Path

from taide.models.gguf import GGUFHeader, TensorInfo, read_header

__all__ = ["GGUFHeader", "TensorInfo", "model_ref", "read_header"]


def model_ref(path: str | Path, reference: str | None = None):
    """A :class:`~taide.models.ModelRef` for a GGUF file, as ``resolve_model`` makes it."""
    from taide.models.reference import _from_gguf

    return _from_gguf(Path(path), reference=reference or str(path))
