"""Check a GGUF against the model it was exported from: llama.cpp on the GGUF (taide's llamacpp engine,
flash attention off so its sums are ordered like transformers') versus transformers on the source.

- tokenizer: the ids of a Chinese/English/emoji/special-character set must be identical, as text
  (control-token strings stay characters) and as raw prompts (control tokens parsed, BOS as configured);
- metadata: the chat template, BOS, the end-of-turn id, which llama.cpp must treat as end of generation,
  and llama.cpp's own rendering of a conversation with that template;
- greedy continuations of Traditional-Chinese and English prompts, token by token;
- per-token log-probabilities of a fixed text: max/mean |Δ| and top-1 agreement over every position;
- optionally perplexity on held-out text, computed as llama.cpp's ``perplexity`` tool does (chunks of
  ``n_ctx`` tokens, the second half of each chunk scored).

Float exports (f32/f16/bf16) must match: identical tokenizer, metadata and greedy tokens, small logprob
differences. Quantized exports are held to the looser bounds in :data:`TOLERANCES`.
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from taide.export.common import ExportError

TOKENIZER_TEXTS = [
    "台灣最高的山是玉山，海拔 3,952 公尺。",
    "中華民國憲法第一條：「中華民國基於三民主義，為民有、民治、民享之民主共和國。」",
    "The Legislative Yuan (立法院) passed the amendment on Tuesday.",
    "emoji 🙂🇹🇼👍🏽 and symbols <>|{}[]()@#$%^&*~`\\ ©®™ ½ ∑ ≈",
    "ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ１２３，全形標點！？；：",
    "control strings stay text: <|eot_id|> <|im_end|> <|start_header_id|>",
    "  leading and trailing  \n\n\ttabs\r\nCRLF   ",
    "數字 1234567890 與 3.14159、100%、NT$1,200",
    "",
]
RAW_PROMPTS = ["<|im_start|>user\n你好<|im_end|>\n", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
               "臺北市是中華民國的首都。"]
PROMPTS: list = [
    [{"role": "user", "content": "請用一句話介紹台灣的夜市文化。"}],
    [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
    "中華民國憲法第一條規定，",
    "The Legislative Yuan is",
]
SCORE_TEXT = ("行政院今天通過「公共運輸發展計畫」，預計在未來四年投入新臺幣一千二百億元，改善偏鄉公車路網、推動電動公車，"
              "並補助地方政府建置轉乘資訊平台。The Ministry of Transportation said the plan aims to raise public "
              "transport use from 18% to 25% while cutting emissions. 交通部表示，計畫目標是讓全國公共運輸使用率提高。")
TEMPLATE_PROBE = [{"role": "system", "content": "你是一個來自台灣的AI助理。"}, {"role": "user", "content": "你好"},
                  {"role": "assistant", "content": "你好！有什麼可以幫忙的嗎？"}, {"role": "user", "content": "Thanks"}]


@dataclass(frozen=True)
class Tolerance:
    greedy_identical: bool  # every prompt's greedy tokens identical (up to a near-tie, see greedy_tie)
    min_top1: float  # top-1 agreement over the scored text's positions
    max_mean_logprob_diff: float | None
    # Where greedy decoding parts, how much likelier (log-prob) the reference finds its own token than the GGUF's
    # and still calls it a tie: two tokens 1e-4 apart swap under float16 rounding (google/gemma-3-270m at f16 does
    # on one prompt) without anything being wrong; a wrong conversion moves the log-probs far more than this.
    greedy_tie: float = 0.01


# Measured on the embedded SmolLM2-135M (30 layers, weights that were Q4_1 before export; f16: 0.003 mean |Δ|,
# 99.5% top-1; q8_0: 0.096, 92%; q4_k_m: 0.36, 76%; q4_0: 0.80, 56%). llama.cpp multiplies quantized weights
# with 8-bit-quantized activations, so even the shipped Q4_1 GGUF differs from its own dequantized weights run
# on transformers by 0.076 mean |Δ|: q8_0's bound is set by that, not by its weights. Small models move more
# under quantization than 8B ones.
TOLERANCES: dict[str, Tolerance] = {
    "float": Tolerance(True, 0.95, 0.02),
    "q8_0": Tolerance(False, 0.85, 0.15),
    "default": Tolerance(False, 0.45, None),
}


@dataclass
class GreedyResult:
    prompt: str
    reference: list[int]
    gguf: list[int]
    margin: float | None = None  # where they part: log P_ref(reference's token) - log P_ref(gguf's token)

    @property
    def agreeing(self) -> int:
        n = 0
        for a, b in zip(self.reference, self.gguf):
            if a != b:
                break
            n += 1
        return n

    @property
    def identical(self) -> bool:
        return self.reference == self.gguf


@dataclass
class VerifyReport:
    gguf: str
    against: str
    quant: str
    tokenizer_mismatches: list[dict] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    greedy: list[GreedyResult] = field(default_factory=list)
    logprob_max_diff: float = math.nan
    logprob_mean_diff: float = math.nan
    top1_agreement: float = math.nan
    scored_tokens: int = 0
    ppl_reference: float | None = None
    ppl_gguf: float | None = None
    tolerance: Tolerance | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a user should know that is not a failure of the export

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def greedy_agreement(self) -> float:
        total = sum(max(len(g.reference), len(g.gguf)) for g in self.greedy)
        return sum(g.agreeing for g in self.greedy) / total if total else math.nan

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ok=self.ok, greedy_agreement=self.greedy_agreement)
        return d

    def summary(self) -> str:
        lines = [f"verify {self.gguf} ({self.quant}) against {self.against}: {'OK' if self.ok else 'FAILED'}",
                 f"  tokenizer: {'identical' if not self.tokenizer_mismatches else f'{len(self.tokenizer_mismatches)} mismatches'}"
                 f" on {len(TOKENIZER_TEXTS) + len(RAW_PROMPTS)} texts",
                 "  metadata: " + ", ".join(f"{k}={v}" for k, v in self.metadata.items()),
                 f"  greedy: {sum(g.identical for g in self.greedy)}/{len(self.greedy)} prompts identical"
                 + "".join(f", {g.prompt[:12]!r} parts at a {g.margin:.5f} margin" for g in self.greedy
                           if not g.identical and g.margin is not None)
                 + f", token agreement {self.greedy_agreement:.1%}",
                 f"  logprobs over {self.scored_tokens} tokens: max |Δ| {self.logprob_max_diff:.4f}, mean |Δ| "
                 f"{self.logprob_mean_diff:.4f}, top-1 agreement {self.top1_agreement:.1%}"]
        if self.ppl_gguf is not None:
            lines.append(f"  perplexity: reference {self.ppl_reference:.3f}, gguf {self.ppl_gguf:.3f}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  FAIL: {f}" for f in self.failures]
        return "\n".join(lines)


# --- scoring --------------------------------------------------------------------------------------

def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class LlamaCppScorer:
    """All-position logits from llama.cpp (flash attention off)."""

    def __init__(self, gguf_path: str | Path, n_ctx: int = 512, n_threads: int | None = None):
        from taide.engines.llamacpp_engine import open_llama

        self.llm = open_llama(gguf_path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True, flash_attn=False,
                         n_threads=n_threads or os.cpu_count(), n_threads_batch=n_threads or os.cpu_count(),
                         verbose=False)
        self.n_ctx = n_ctx

    def logprobs(self, ids: list[int]) -> np.ndarray:
        """(len(ids), vocab) log-probabilities of the next token at every position."""
        self.llm.reset()
        self.llm.eval(ids)
        return _log_softmax(np.array(self.llm.scores[:len(ids)], dtype=np.float32))

    def close(self):
        self.llm.close()


class TransformersScorer:
    def __init__(self, lm, device: str = "cpu"):
        self.lm, self.device = lm, device

    def logprobs(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.lm(input_ids=torch.tensor([ids], device=self.device)).logits[0].float()
            return torch.log_softmax(logits, -1).cpu().numpy()

    def close(self):
        pass


def token_logprobs(scorer, ids: list[int]) -> np.ndarray:
    """log P(ids[i+1] | ids[:i+1]) for every i."""
    lp = scorer.logprobs(ids)
    return lp[np.arange(len(ids) - 1), np.asarray(ids[1:])]


def perplexity(scorer, ids: list[int], n_ctx: int, bos_id: int | None, max_chunks: int | None = None) -> tuple[float, int]:
    """llama.cpp's ``perplexity`` method: chunks of ``n_ctx`` tokens (the first replaced by BOS when the model adds
    one), each scoring its second half. Returns (perplexity, tokens scored)."""
    n_chunks = len(ids) // n_ctx
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    if n_chunks == 0:
        raise ExportError(f"perplexity needs at least {n_ctx} tokens of text; got {len(ids)}")
    nll, first = [], n_ctx // 2
    for c in range(n_chunks):
        chunk = list(ids[c * n_ctx:(c + 1) * n_ctx])
        if bos_id is not None:
            chunk[0] = bos_id
        nll.append(-token_logprobs(scorer, chunk)[first:].astype(np.float64))
    nll = np.concatenate(nll)
    return float(np.exp(nll.mean())), int(nll.size)


def gguf_stats(path: str | Path) -> dict:
    """File size, parameters, bits per weight (all tensor bytes × 8 / parameters, as llama.cpp reports) and the
    tensor types."""
    from taide.export.gguf_info import read_header

    header = read_header(path)
    types: dict[str, int] = {}
    for t in header.tensors:
        types[t.type_name] = types.get(t.type_name, 0) + 1
    n_params = header.parameters
    return {"size_bytes": Path(path).stat().st_size, "parameters": n_params, "tensor_bytes": header.tensor_bytes,
            "bits_per_weight": header.tensor_bytes * 8 / n_params if n_params else math.nan, "tensor_types": types}


def quant_name(metadata: dict) -> str:
    from taide.export.quantize import QUANTS

    ft = metadata.get("general.file_type")
    return next((q.name for q in QUANTS.values() if q.file_type == ft), f"file_type {ft}")


def tolerance_for(quant: str) -> Tolerance:
    if quant in ("f32", "f16", "bf16"):
        return TOLERANCES["float"]
    return TOLERANCES.get(quant, TOLERANCES["default"])


# --- llama.cpp's view of the chat template ---------------------------------------------------------

def llamacpp_render(llm, messages: list[dict], add_assistant: bool = True) -> str | None:
    """The conversation as llama.cpp's built-in template handler renders it with the GGUF's own template (what
    llama-server does without --jinja); None when llama.cpp does not recognise the template."""
    import ctypes

    import llama_cpp

    template = llama_cpp.llama_model_chat_template(llm._model.model, None)
    if not template:
        return None
    chat = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages])
    size = 8192
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_chat_apply_template(template, chat, len(messages), add_assistant, buf, size)
    if n < 0:
        return None
    return buf.raw[:n].decode("utf-8", errors="replace")


# --- the check ------------------------------------------------------------------------------------

_REFERENCE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _greedy(engine, ids: list[int], n: int, cache: bool = False) -> list[int]:
    from taide.engines import GenerationParams

    memo = _REFERENCE_CACHE.setdefault(engine, {}) if cache else {}
    key = (tuple(ids), n)
    if key not in memo:
        memo[key] = engine.complete(ids, GenerationParams(max_tokens=n, temperature=0)).token_ids
    return list(memo[key])


@dataclass
class VerifyConfig:
    """``taide verify``: a GGUF against its source model."""
    gguf: Path
    against: str  # the source model (HF directory, .gguf or an embedded name), run on transformers


def run_verify(config: VerifyConfig) -> VerifyReport:
    return verify_gguf(config.gguf, config.against)


def verify_gguf(gguf_path: str | Path, against, *, prompts: list | None = None, n_predict: int = 16,
                score_text: str = SCORE_TEXT, eval_text: str | None = None, n_ctx: int = 512,
                max_chunks: int | None = None, reference_engine=None) -> VerifyReport:
    """Compare ``gguf_path`` (llama.cpp) with ``against`` (any local model reference, run on transformers).

    ``prompts``: chat conversations (lists of messages) and raw text prompts for greedy decoding;
    ``eval_text``: held-out text for perplexity (both sides); ``reference_engine``: an already loaded
    transformers engine of ``against`` (reused across several GGUFs)."""
    from taide.engines import load_engine
    from taide.export.gguf_info import model_ref

    gguf_path = Path(gguf_path)
    gguf_ref = model_ref(gguf_path)
    meta = gguf_ref.metadata
    quant = quant_name(meta)
    ref = reference_engine or load_engine(against, "transformers")
    own_ref = reference_engine is None
    trained = gguf_ref.context_length or n_ctx
    n_ctx = min(n_ctx, trained)
    gg = load_engine(gguf_ref, "llamacpp", n_ctx=min(max(n_ctx, 1024), trained), n_parallel=1, flash_attn=False)
    scorer = LlamaCppScorer(gguf_path, n_ctx=n_ctx)
    report = VerifyReport(gguf=str(gguf_path), against=str(getattr(ref.model, "reference", against)), quant=quant,
                          tolerance=tolerance_for(quant))
    try:
        _check_tokenizer(report, ref, gg)
        _check_metadata(report, meta, ref, gg)
        for prompt in prompts if prompts is not None else PROMPTS:
            if isinstance(prompt, str):
                ids_ref, ids_gg, label = ref.codec.encode_prompt(prompt), gg.codec.encode_prompt(prompt), prompt
            else:
                ids_ref, ids_gg, label = ref.prompt_ids(prompt), gg.prompt_ids(prompt), prompt[-1]["content"]
            if ids_ref != ids_gg:
                report.failures.append(f"prompt {label[:30]!r}: rendered to different ids")
            result = GreedyResult(label, _greedy(ref, ids_ref, n_predict, cache=True), _greedy(gg, ids_ref, n_predict))
            if report.tolerance.greedy_identical:  # only then does a parting need weighing
                result.margin = _parting_margin(ref, ids_ref, result)
            report.greedy.append(result)
        ids = ref.codec.encode_prompt(score_text)
        ids = ids[:n_ctx]
        a = TransformersScorer(ref.lm, ref.device).logprobs(ids)
        b = scorer.logprobs(ids)
        idx, tgt = np.arange(len(ids) - 1), np.asarray(ids[1:])
        diff = np.abs(a[idx, tgt] - b[idx, tgt])
        report.logprob_max_diff, report.logprob_mean_diff = float(diff.max()), float(diff.mean())
        report.top1_agreement = float((a.argmax(-1) == b.argmax(-1)).mean())
        report.scored_tokens = len(ids) - 1
        if eval_text:
            eval_ids = ref.codec.encode_text(eval_text)
            bos = meta.get("tokenizer.ggml.bos_token_id") if meta.get("tokenizer.ggml.add_bos_token") else None
            report.ppl_reference, _ = perplexity(TransformersScorer(ref.lm, ref.device), eval_ids, n_ctx, bos, max_chunks)
            report.ppl_gguf, _ = perplexity(scorer, eval_ids, n_ctx, bos, max_chunks)
    finally:
        scorer.close()
        gg.close()
        if own_ref:
            ref.close()
    _judge(report)
    return report


def _check_tokenizer(report: VerifyReport, ref, gg) -> None:
    for text in TOKENIZER_TEXTS:
        a, b = ref.codec.encode_text(text), gg.codec.encode_text(text)
        if a != b:
            report.tokenizer_mismatches.append({"text": text, "mode": "text", "reference": a, "gguf": b})
    for text in RAW_PROMPTS + TOKENIZER_TEXTS[:2]:
        a, b = ref.codec.encode_prompt(text), gg.codec.encode_prompt(text)
        if a != b:
            report.tokenizer_mismatches.append({"text": text, "mode": "prompt", "reference": a, "gguf": b})
    if report.tokenizer_mismatches:
        first = report.tokenizer_mismatches[0]
        report.failures.append(f"tokenizer: {len(report.tokenizer_mismatches)} texts tokenize differently, e.g. "
                               f"{first['text'][:30]!r} ({first['mode']}): {first['reference'][:8]} vs {first['gguf'][:8]}")


def _check_metadata(report: VerifyReport, meta: dict, ref, gg) -> None:
    import llama_cpp

    fmt = ref.chat_format
    vocab = ref.tokenizer.get_vocab()
    eot = next((vocab[t] for t in fmt.stop_tokens if t in vocab), None)
    template = ref.tokenizer.chat_template if isinstance(ref.tokenizer.chat_template, str) else ref.model.chat_template
    checks = {
        "chat_format": gg.chat_format.name == fmt.name,
        "chat_template": meta.get("tokenizer.chat_template") == template,
        "bos": meta.get("tokenizer.ggml.bos_token_id") == ref.tokenizer.bos_token_id,
        "end_of_turn": eot is not None and meta.get("tokenizer.ggml.eot_token_id") == eot,
        "end_of_turn_stops": eot is not None and bool(llama_cpp.llama_vocab_is_eog(gg.llm._model.vocab, eot)),
    }
    rendered = llamacpp_render(gg.llm, TEMPLATE_PROBE)
    if rendered is not None:
        ours = fmt.render_text(TEMPLATE_PROBE)
        bos = ref.tokenizer.bos_token
        if bos and ours.startswith(bos) and not rendered.startswith(bos):
            ours = ours[len(bos):]  # llama.cpp's built-in templates (llama3, gemma) leave BOS to the tokenizer
        if fmt.name != "template" or rendered == ours:
            checks["llamacpp_template_render"] = rendered == ours
        else:  # the GGUF carries the model's template; llama.cpp's built-in guess at it is llama.cpp's own matter
            report.notes.append("llama.cpp's built-in chat templates render this model's conversations differently "
                                "from its own template (e.g. Llama 3.1's dated system header): run llama-server with "
                                "--jinja, as taide's engine renders the template itself")
    report.metadata = checks
    for name, good in checks.items():
        if not good:
            report.failures.append(f"metadata: {name} differs from the source model")


def _parting_margin(ref, prompt_ids: list[int], g: GreedyResult) -> float | None:
    """Where the two greedy continuations part, how much likelier the reference finds its token than the GGUF's
    (None when they do not part, or one stopped: no two tokens to compare)."""
    k = g.agreeing
    if g.identical or k >= min(len(g.reference), len(g.gguf)):
        return None
    lp = TransformersScorer(ref.lm, ref.device).logprobs(prompt_ids + g.reference[:k])[-1]
    return float(lp[g.reference[k]] - lp[g.gguf[k]])


def _judge(report: VerifyReport) -> None:
    tol = report.tolerance
    if tol.greedy_identical:
        for g in report.greedy:
            if not g.identical and not (g.margin is not None and g.margin <= tol.greedy_tie):
                report.failures.append(f"greedy: {g.prompt[:30]!r} parts after {g.agreeing} tokens: "
                                       f"{g.reference[:g.agreeing + 3]} vs {g.gguf[:g.agreeing + 3]}")
    if report.top1_agreement < tol.min_top1:
        report.failures.append(f"top-1 agreement {report.top1_agreement:.1%} < {tol.min_top1:.0%}")
    if tol.max_mean_logprob_diff is not None and not report.logprob_mean_diff <= tol.max_mean_logprob_diff:
        report.failures.append(f"mean |Δlogprob| {report.logprob_mean_diff:.4f} > {tol.max_mean_logprob_diff}")
