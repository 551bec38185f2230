"""Export: HF directory → GGUF (llama.cpp, Ollama) with quantization, LoRA merge, Modelfile and verification
against the source; or → a merged HF directory (transformers, vLLM).

    from taide.export import export_model, verify_gguf
    result = export_model("smollm2-135m", "gguf", "q4_k_m", "out/", verify=True)
    report = verify_gguf("out/smollm2-135m-q4_k_m.gguf", against="out/hf")
"""

from taide.export.api import ExportConfig, ExportResult, export_model, run_export
from taide.export.common import ExportError
from taide.export.hf import export_hf
from taide.export.modelfile import modelfile_text, write_modelfile
from taide.export.quantize import QUANTS, get_quant
from taide.export.verify import VerifyConfig, VerifyReport, gguf_stats, perplexity, run_verify, verify_gguf

__all__ = ["QUANTS", "ExportConfig", "ExportError", "ExportResult", "VerifyConfig", "VerifyReport", "export_hf",
           "export_model", "get_quant", "gguf_stats", "modelfile_text", "perplexity", "run_export", "run_verify",
           "verify_gguf", "write_modelfile"]
