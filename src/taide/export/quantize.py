"""The quantization types taide writes, and how each is made.

- float and "legacy" block types (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1) are written directly,
  quantized in numpy by gguf-py (``gguf.quants.quantize``, bit-exact with ggml's reference quantizers);
- K-quants and IQ4 (q4_k_m, q5_k_m, q6_k, ...) need llama.cpp's own quantizer: an f16 (bf16 when the
  source weights are bf16) GGUF is written first and ``llama_model_quantize`` (through llama-cpp-python)
  makes the final file with llama.cpp's per-tensor mix (e.g. Q4_K_M keeps half of the attn_v/ffn_down
  tensors and the output at Q6_K).

Per tensor, as llama.cpp does: 1-D tensors (norms, rope factors) stay float32; in the 4- and 5-bit types
the output projection (``output.weight``, or ``token_embd`` when embeddings are tied) is kept at Q8_0,
since every logit goes through it (llama.cpp's quantizer keeps it at Q6_K, which gguf-py cannot write);
rows whose length is not a multiple of the block size fall back to f16.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from taide.artifacts import atomic_write
from taide.export.common import ExportError


@dataclass(frozen=True)
class Quant:
    name: str
    file_type: int  # llama.cpp's llama_ftype (= gguf.LlamaFileType)
    ggml: str | None  # the GGML type written directly (numpy path); None: llama.cpp's quantizer
    about: str

    @property
    def via_llamacpp(self) -> bool:
        return self.ggml is None

    @property
    def exact(self) -> bool:
        """Float types: an export that must reproduce the source model."""
        return self.ggml in ("F32", "F16", "BF16")


def _quants() -> dict[str, Quant]:
    from gguf import LlamaFileType as F

    rows = [
        ("f32", F.ALL_F32, "F32", "float32, lossless"),
        ("f16", F.MOSTLY_F16, "F16", "float16, the usual reference"),
        ("bf16", F.MOSTLY_BF16, "BF16", "bfloat16, lossless for bf16 checkpoints"),
        ("q8_0", F.MOSTLY_Q8_0, "Q8_0", "8-bit blocks of 32, near lossless"),
        ("q5_1", F.MOSTLY_Q5_1, "Q5_1", "5-bit blocks with offset"),
        ("q5_0", F.MOSTLY_Q5_0, "Q5_0", "5-bit blocks"),
        ("q4_1", F.MOSTLY_Q4_1, "Q4_1", "4-bit blocks with offset"),
        ("q4_0", F.MOSTLY_Q4_0, "Q4_0", "4-bit blocks"),
        ("q6_k", F.MOSTLY_Q6_K, None, "6-bit K-quant"),
        ("q5_k_m", F.MOSTLY_Q5_K_M, None, "5-bit K-quant mix"),
        ("q5_k_s", F.MOSTLY_Q5_K_S, None, "5-bit K-quant"),
        ("q4_k_m", F.MOSTLY_Q4_K_M, None, "4-bit K-quant mix: what TAIDE users run in llama.cpp/Ollama"),
        ("q4_k_s", F.MOSTLY_Q4_K_S, None, "4-bit K-quant"),
        ("iq4_xs", F.MOSTLY_IQ4_XS, None, "4.25-bit non-linear"),
        ("iq4_nl", F.MOSTLY_IQ4_NL, None, "4.5-bit non-linear"),
        ("q3_k_l", F.MOSTLY_Q3_K_L, None, "3-bit K-quant mix, large"),
        ("q3_k_m", F.MOSTLY_Q3_K_M, None, "3-bit K-quant mix"),
        ("q3_k_s", F.MOSTLY_Q3_K_S, None, "3-bit K-quant"),
        ("q2_k", F.MOSTLY_Q2_K, None, "2-bit K-quant mix"),
    ]
    return {name: Quant(name, int(ft), ggml, about) for name, ft, ggml, about in rows}


QUANTS: dict[str, Quant] = _quants()


def get_quant(name: str) -> Quant:
    key = name.strip().lower().replace("-", "_")
    if key not in QUANTS:
        raise ExportError(f"unknown quantization {name!r}; choose one of {', '.join(QUANTS)}")
    return QUANTS[key]


def output_ggml_type(output_type: str | None):
    """The GGMLQuantizationType that ``--output-type`` names (f16, q8_0, ...), or None."""
    import gguf

    if output_type is None:
        return None
    name = output_type.strip().upper()
    if name not in ("F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_0", "Q4_0"):
        raise ExportError(f"output type {output_type!r}: choose f32, f16, bf16, q8_0, q6_k, q5_0 or q4_0")
    return gguf.GGMLQuantizationType[name]


def tensor_type_policy(quant: Quant, output_type: str | None = None):
    """``plan -> GGMLQuantizationType`` for the numpy path (see the module docstring); ``output_type`` overrides the
    output projection's type (a tied embedding's too), as llama.cpp's ``--output-tensor-type`` does: a 262K-token
    head at Q8_0 moves Gemma 3 270M's log-probabilities several times more than Q8_0 does to all its blocks."""
    import gguf

    T = gguf.GGMLQuantizationType
    target = T[quant.ggml]
    low_bit = target in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1)
    output = output_ggml_type(output_type)

    def pick(plan) -> object:
        if len(plan.shape) == 1:
            return T.F32
        qtype = (output if output is not None and plan.is_output else
                 T.Q8_0 if (low_bit and plan.is_output) else target)
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if plan.shape[-1] % block:
            return T.F32 if target == T.F32 else T.F16
        return qtype

    return pick


def source_float_type(directory: Path) -> str:
    """"bf16" when the checkpoint's matrices are bfloat16, else "f16": the lossless-enough intermediate."""
    from safetensors import safe_open

    from taide.export.gguf_writer import safetensors_files

    with safe_open(str(safetensors_files(directory)[0]), "pt") as st:
        for key in st.keys():
            sl = st.get_slice(key)
            if len(sl.get_shape()) == 2:
                return "bf16" if sl.get_dtype() == "BF16" else "f16"
    return "f16"


@contextlib.contextmanager
def _captured_output():
    """llama.cpp's quantizer logs through llama-cpp-python's log callback (Python's sys.stderr) and may write to fds 1
    and 2 directly; keep all of it off the terminal (and out of --json output) and hand back the text, for error
    messages."""
    import io
    import sys

    captured = {"text": ""}
    sys.stdout.flush()
    sys.stderr.flush()
    python_log = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink, contextlib.redirect_stderr(python_log):
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            try:
                import ctypes.util

                libc = ctypes.CDLL(ctypes.util.find_library("c"))
                libc.fflush(None)  # C stdio buffers, before the descriptors are put back
            except OSError:
                pass
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured["text"] = python_log.getvalue() + sink.read().decode("utf-8", errors="replace")


def llamacpp_quantize(source: Path, out: Path, quant: Quant, threads: int | None = None,
                      output_type: str | None = None) -> Path:
    """``source`` (an f16/bf16/f32 GGUF) → ``out`` at ``quant`` with llama.cpp's quantizer; ``output_type`` sets the
    output projection's and the token embedding's type (they are one tensor when tied)."""
    try:
        import llama_cpp
    except ImportError as e:
        raise ExportError(f"{quant.name} needs llama.cpp's quantizer: pip install llama-cpp-python") from e
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = quant.file_type
    params.nthread = threads or os.cpu_count() or 1
    output = output_ggml_type(output_type)
    if output is not None:
        params.output_tensor_type = int(output)
        params.token_embedding_type = int(output)

    def write(tmp: Path) -> None:  # the file appears under its name only when llama.cpp finished it
        with _captured_output() as log:
            status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0 or not tmp.is_file():
            tail = "\n".join(log["text"].strip().splitlines()[-5:])
            raise ExportError(f"llama.cpp could not quantize {source} to {quant.name} (status {status}):\n{tail}")

    return atomic_write(out, write)
