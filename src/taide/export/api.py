"""`export_model`: one call from a model reference to a GGUF (+ Modelfile, + verification) or an HF directory."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from taide.artifacts import write_manifest
from taide.export.common import SUPPORTED_ARCHITECTURES, ExportError, check_architecture
from taide.export.hf import export_hf, is_adapter_dir


@dataclass
class ExportResult:
    path: Path  # the .gguf file, or the HF directory
    format: str  # "gguf" | "hf"
    quant: str | None
    size_bytes: int
    parameters: int | None = None
    bits_per_weight: float | None = None
    tensor_types: dict = field(default_factory=dict)
    modelfile: Path | None = None
    verification: object = None  # a VerifyReport when verify=True
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "verification"}
        d["verification"] = self.verification.to_dict() if self.verification is not None else None
        return d


@dataclass
class ExportConfig:
    """``taide export``: a model to GGUF (quantized or not) or to a merged Hugging Face directory."""
    model: str | None = None  # required to export; a build recipe's export leaves it to the build (the built model)
    format: str = "gguf"  # gguf or hf
    quant: str = "f16"
    out: Path | None = None  # a .gguf path or a directory; None: beside the current directory, named after the model
    verify: bool = False  # compare the GGUF with its source and fail when it does not match
    output_type: str | None = None  # the output projection's type (f16 keeps a large vocabulary's logits exact)
    overwrite: bool = False

    def __post_init__(self):
        if self.format not in ("gguf", "hf"):
            raise ExportError(f"format: {self.format!r} is not one of gguf, hf")
        if self.format == "gguf":
            from taide.export.quantize import QUANTS

            if self.quant.strip().lower().replace("-", "_") not in QUANTS:
                raise ExportError(f"quant: {self.quant!r} is not a quantization; known: {', '.join(QUANTS)}")


def run_export(config: ExportConfig, progress=None) -> ExportResult:
    """Export as :func:`export_model` does, writing the file (or directory), its Modelfile and its manifest."""
    if config.model is None:
        raise ExportError("model: not given: the model to export")
    return export_model(config.model, config.format, config.quant, config.out, verify=config.verify,
                        output_type=config.output_type, overwrite=config.overwrite, progress=progress)


def _default_out(reference: str, fmt: str, quant: str) -> Path:
    name = Path(str(reference).rstrip("/")).name or "model"
    if name.lower().endswith(".gguf"):
        name = name[:-5]
    return Path(f"{name}-{quant}.gguf") if fmt == "gguf" else Path(f"{name}-hf")


def _gguf_target(out: Path | None, reference: str, quant: str) -> Path:
    if out is None:
        return _default_out(reference, "gguf", quant)
    out = Path(out)
    if out.suffix.lower() == ".gguf":
        return out
    return out / _default_out(reference, "gguf", quant).name  # a directory: the file goes inside


def export_model(model, fmt: str = "gguf", quant: str = "f16", out: str | Path | None = None, *,
                 verify: bool = False, modelfile: bool = True, system: str | None = "auto",
                 dtype: str | None = None, base: str | None = None, overwrite: bool = False,
                 eval_text: str | None = None, output_type: str | None = None, progress=None) -> ExportResult:
    """Export ``model`` (an HF directory, a GGUF file, the embedded default, or a LoRA adapter directory).

    ``fmt="gguf"``: a GGUF (Llama 2/3.x, Mistral, Qwen 2/2.5/3, Phi-3, Gemma 3) at ``quant`` (see :data:`taide.export.quantize.QUANTS`)
    written to ``out`` (a ``.gguf`` path or a directory), with an Ollama Modelfile beside it. ``fmt="hf"``: a
    merged safetensors directory at ``out``. ``verify=True`` (GGUF) compares the result with the source on llama.cpp vs
    transformers and raises :class:`ExportError` when a float export does not match (or a quantized one is
    outside its tolerance); ``progress(done, total, what)`` is called per tensor.
    """
    from taide.models import resolve_model

    started = time.time()
    reference = str(model)
    if fmt == "hf":
        target = Path(out) if out else _default_out(reference, "hf", "hf")
        export_hf(reference, target, dtype=dtype, base=base, overwrite=overwrite)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
        return ExportResult(target, "hf", None, size, parameters=manifest["counts"].get("parameters"),
                            seconds=time.time() - started)
    if fmt != "gguf":
        raise ExportError(f"unknown export format {fmt!r}; choose gguf or hf")

    from taide.export.quantize import get_quant, output_ggml_type

    q = get_quant(quant)
    output_ggml_type(output_type)  # a bad --output-type fails now, not after the model is loaded and written
    target = _gguf_target(Path(out) if out else None, reference, q.name)
    if target.exists() and not overwrite:
        raise ExportError(f"{target}: exists; pass overwrite=True (--overwrite) or another path")
    source = Path(reference).expanduser()
    adapter = is_adapter_dir(source)
    ref = None
    if not adapter:
        ref = resolve_model(reference)
        if ref.kind == "endpoint":
            raise ExportError(f"{reference} is an endpoint; export needs the weights (an HF directory or GGUF file)")
        if ref.kind == "hf":
            check_architecture(ref.metadata["config"], ref.path)
        elif ref.architecture not in SUPPORTED_ARCHITECTURES:
            raise ExportError(f"{ref.path}: architecture {ref.architecture!r} cannot be exported by taide; supported: "
                              f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # export/ reads HF directories: anything else (GGUF, LoRA adapter) becomes one first, in a scratch directory.
    with tempfile.TemporaryDirectory(prefix=".taide-export-", dir=target.parent) as scratch:
        if adapter or ref.kind != "hf" or dtype is not None:
            hf_dir = export_hf(ref or reference, Path(scratch) / "hf", dtype=dtype, base=base)
            hf_ref = resolve_model(hf_dir)
        else:
            hf_dir, hf_ref = ref.path, ref
        _write(hf_dir, target, q, Path(scratch), progress, hf_ref, output_type)
        result = _result(target, q, started)
        if modelfile:
            from taide.export.modelfile import write_modelfile

            result.modelfile = write_modelfile(target, hf_ref.chat_format, hf_ref.chat_template, system,
                                               hf_ref.context_length, path=_modelfile_path(target))
        if verify:
            from taide.export.verify import verify_gguf

            report = verify_gguf(target, hf_dir, eval_text=eval_text)
            if hf_dir != getattr(ref, "path", None):
                report.against = f"{reference} (as exported to HF)"
            result.verification = report
            if not report.ok:
                raise ExportError(f"{target} does not match its source model (the file is kept for inspection):\n"
                                  f"{report.summary()}")
    _write_manifest(target, reference, q, result)
    result.seconds = time.time() - started
    return result


def _modelfile_path(target: Path) -> Path:
    """``Modelfile`` beside the GGUF, unless one there belongs to another GGUF: then ``NAME.Modelfile``."""
    plain = target.parent / "Modelfile"
    if plain.is_file() and f"FROM ./{target.name}\n" not in plain.read_text(encoding="utf-8"):
        return target.with_name(target.stem + ".Modelfile")
    return plain


def _write(hf_dir: Path, target: Path, q, scratch: Path, progress, ref, output_type: str | None = None) -> None:
    from taide.export.gguf_writer import write_gguf
    from taide.export.quantize import QUANTS, llamacpp_quantize, source_float_type, tensor_type_policy

    if not q.via_llamacpp:
        write_gguf(hf_dir, target, tensor_type_policy(q, output_type), q.file_type, progress, ref)
        return
    inter = QUANTS[source_float_type(hf_dir)]
    intermediate = scratch / f"intermediate-{inter.name}.gguf"
    write_gguf(hf_dir, intermediate, tensor_type_policy(inter), inter.file_type, progress, ref)
    llamacpp_quantize(intermediate, target, q, output_type=output_type)
    intermediate.unlink(missing_ok=True)


def _result(target: Path, q, started: float) -> ExportResult:
    from taide.export.verify import gguf_stats

    stats = gguf_stats(target)
    return ExportResult(target, "gguf", q.name, stats["size_bytes"], stats["parameters"], stats["bits_per_weight"],
                        stats["tensor_types"], seconds=time.time() - started)


def _write_manifest(target: Path, reference: str, q, result: ExportResult) -> None:
    """Artifacts say what produced them: ``NAME.gguf.json`` beside the file."""
    write_manifest(target.with_name(target.name + ".json"), "taide export --format gguf",
                   {"source": reference, "quant": q.name},
                   counts={"size_bytes": result.size_bytes, "parameters": result.parameters},
                   bits_per_weight=result.bits_per_weight, tensor_types=result.tensor_types,
                   modelfile=result.modelfile.name if result.modelfile else None,
                   verified=result.verification.ok if result.verification is not None else None)
