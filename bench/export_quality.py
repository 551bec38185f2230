"""What each GGUF quantization costs the embedded default: file size, bits per weight, perplexity on held-out
Traditional-Chinese law text, ΔPPL against the f16 export, and CPU decode speed on llama.cpp.

The embedded default (SmolLM2-135M-Instruct, shipped as Q4_1) is exported to an HF directory (dequantized,
float32), then to GGUF at each quant with `taide export`. Perplexity is computed as llama.cpp's
`perplexity` tool does it (chunks of --n-ctx tokens, the second half of each chunk scored), on llama.cpp
with flash attention off; the same chunks are scored by transformers on the float32 source, and by the
shipped Q4_1 file, as reference rows. Decode speed: taide's llamacpp engine (its defaults: every core, flash
attention on), greedy, a fixed chat prompt, median of --runs runs taken round-robin over the quants.

    .venv/bin/python -m bench.export_quality [--laws 8] [--chunks 16] [--runs 3]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_section

LAWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tw-laws" / "laws-zh.jsonl.gz"
QUANTS = ["f16", "q8_0", "q5_0", "q4_0", "q4_k_m"]
PROMPT = [{"role": "user", "content": "Write a long, detailed story about a night market in Taipei."}]


def law_sample(n_laws: int, seed: int = 0) -> tuple[str, list[str]]:
    """A fixed sample of laws (medium-length ones), layout line breaks removed as the card's cleaning does."""
    laws = []
    with gzip.open(LAWS, "rt", encoding="utf-8") as f:
        for line in f:
            law = json.loads(line)
            if 3000 <= len(law["text"]) <= 12000:
                laws.append(law)
    picked = random.Random(seed).sample(laws, n_laws)
    text = "\n\n".join(law["text"].replace("\r\n", "") for law in picked)
    return text, [law["title"] for law in picked]


def decode_speed(path: Path, max_tokens: int) -> tuple[float, int]:
    from taide.engines import GenerationParams, load_engine

    engine = load_engine(str(path), "llamacpp", n_parallel=1, n_ctx=1024)
    try:
        engine.chat(PROMPT, GenerationParams(max_tokens=8, temperature=0))  # warm-up
        c = engine.chat(PROMPT, GenerationParams(max_tokens=max_tokens, temperature=0))
        return c.tokens_per_second, c.completion_tokens
    finally:
        engine.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--laws", type=int, default=8, help="laws in the held-out sample")
    parser.add_argument("--chunks", type=int, default=16, help="perplexity chunks of --n-ctx tokens, evenly spaced")
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3, help="decode-speed runs per quant")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--quants", default=",".join(QUANTS))
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if not LAWS.is_file():
        print(f"skipped: {LAWS} is absent (../shared ships only with the project checkout)")
        return 0

    from taide.engines import load_engine
    from taide.export import export_model, gguf_stats, perplexity
    from taide.export.verify import LlamaCppScorer, TransformersScorer
    from taide.models import embedded_gguf_path

    quants = args.quants.split(",")
    load = {"start": os.getloadavg()[0]}
    text, titles = law_sample(args.laws)
    with tempfile.TemporaryDirectory(prefix="taide-export-bench-") as tmp:
        tmp = Path(tmp)
        started = time.time()
        hf = export_model("smollm2-135m", "hf", out=tmp / "hf").path
        print(f"HF directory in {time.time() - started:.0f} s")
        paths, export_s = {}, {}
        for q in quants:
            started = time.time()
            paths[q] = export_model(hf, "gguf", q, tmp, modelfile=False).path
            export_s[q] = time.time() - started
            print(f"{q}: exported in {export_s[q]:.1f} s")
        reference = load_engine(str(hf), "transformers")
        all_ids = reference.codec.encode_text(text)
        # llama.cpp scores the first chunks; to cover every sampled law, take chunks evenly spaced over the text
        available = len(all_ids) // args.n_ctx
        n_chunks = min(args.chunks, available)
        picks = [round(i * available / n_chunks) for i in range(n_chunks)]
        ids = [t for c in picks for t in all_ids[c * args.n_ctx:(c + 1) * args.n_ctx]]
        print(f"{len(text)} characters of {len(titles)} laws -> {len(all_ids)} tokens; {n_chunks} chunks of {args.n_ctx}")
        ppl = {}
        started = time.time()
        ppl["source"], scored = perplexity(TransformersScorer(reference.lm), ids, args.n_ctx, None, n_chunks)
        print(f"transformers float32 source: PPL {ppl['source']:.3f} ({scored} tokens, {time.time() - started:.0f} s)")
        reference.close()
        rows = {q: gguf_stats(p) for q, p in paths.items()}
        rows["shipped"] = gguf_stats(embedded_gguf_path("smollm2-135m"))
        for q, path in [*paths.items(), ("shipped", embedded_gguf_path("smollm2-135m"))]:
            started = time.time()
            scorer = LlamaCppScorer(path, n_ctx=args.n_ctx)
            try:
                ppl[q], _ = perplexity(scorer, ids, args.n_ctx, None, n_chunks)
            finally:
                scorer.close()
            print(f"{q}: PPL {ppl[q]:.3f} ({time.time() - started:.0f} s)")
        load["speed runs"] = os.getloadavg()[0]
        speeds: dict[str, list] = {q: [] for q in [*quants, "shipped"]}
        targets = [*paths.items(), ("shipped", embedded_gguf_path("smollm2-135m"))]
        for run in range(args.runs):
            for q, path in targets:
                speeds[q].append(decode_speed(path, args.max_tokens))
            print(f"speed run {run + 1}: " + ", ".join(f"{q} {speeds[q][-1][0]:.0f}" for q in speeds))

    load["end"] = os.getloadavg()[0]
    base = ppl.get("f16")
    speed = {q: statistics.median(s for s, _ in v) for q, v in speeds.items()}
    tokens = {q: statistics.median(n for _, n in v) for q, v in speeds.items()}
    lines = [
        "## Export: GGUF quantizations of the embedded default (SmolLM2-135M-Instruct), CPU",
        "",
        f"`taide export` of the embedded default at each quant: the model is first written as an HF directory "
        f"(its shipped Q4_1 weights dequantized to float32), then as GGUF. **Perplexity** on held-out Traditional "
        f"Chinese: {len(titles)} laws sampled with a fixed seed from `shared/data/tw-laws/laws-zh.jsonl.gz` "
        f"(3,000–12,000 characters each, layout line breaks removed; {len(text):,} characters, {len(all_ids):,} "
        f"tokens), scored as llama.cpp's `perplexity` tool does: {n_chunks} chunks of {args.n_ctx} tokens (evenly "
        f"spaced over the sample), the second half of each scored ({n_chunks * (args.n_ctx - args.n_ctx // 2 - 1):,} tokens), on llama.cpp with flash attention "
        f"off. **Size** is the file; bits/weight = tensor bytes × 8 / parameters, as llama.cpp reports it. **Decode** "
        f"is taide's llamacpp engine (every core, flash attention on), greedy, up to {args.max_tokens} tokens of a "
        f"story prompt, median of {args.runs} runs taken round-robin over the files.",
        "",
        "| quant | file size | bits/weight | PPL | ΔPPL vs f16 | decode tok/s | decode vs f16 | tensor types |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for q in [*quants, "shipped"]:
        r = rows[q]
        delta = f"{(ppl[q] / base - 1) * 100:+.1f}%" if base else "n/a"
        ratio = f"{speed[q] / speed['f16']:.2f}×" if "f16" in speed else "n/a"
        types = ", ".join(f"{k} {v}" for k, v in sorted(r["tensor_types"].items(), key=lambda kv: -kv[1]))
        name = "Q4_1 as shipped (the source)" if q == "shipped" else q
        lines.append(f"| {name} | {r['size_bytes'] / 2**20:.1f} MiB | {r['bits_per_weight']:.2f} | {ppl[q]:.3f} | "
                     f"{delta} | {speed[q]:.0f} | {ratio} | {types} |")
    lines.append(f"| transformers, float32 source (reference) | — | 32 | {ppl['source']:.3f} | "
                 f"{(ppl['source'] / base - 1) * 100:+.1f}% | — | — | — |" if base else "")
    lines += [
        "",
        f"Decode tokens per run (median): {', '.join(f'{q} {tokens[q]:.0f}' for q in tokens)}. Export times: "
        + ", ".join(f"{q} {export_s[q]:.1f} s" for q in quants) + ". The machine is shared: 1-minute load average "
        + ", ".join(f"{k} {v:.1f}" for k, v in load.items()) + " (on 2 cores; sizes and PPL do not depend on it, "
        "decode speeds do).",
        "",
        "Reading it:",
        "- **Anchor:** llama.cpp's own measurements put Q4_K_M at about +2.9% ΔPPL for Llama 3 8B (the size of "
        "Llama3-TAIDE). A 135M model degrades much more at the same bits: each weight carries more of the model, and "
        "its 576-wide rows are not a multiple of the K-quants' 256-element super-blocks, so llama.cpp's Q4_K_M falls "
        "back to Q5_0 for most tensors here (see the tensor types) and to Q8_0 for the tied embedding/output.",
        "- **The source is already 4-bit.** The shipped file is Q4_1, so f16 is that Q4_1 model dequantized (its "
        "PPL equals the shipped row's up to llama.cpp's 8-bit activation rounding), and every quant here "
        "re-quantizes 4-bit values onto another grid: Q4_0's error is on top of Q4_1's. Expect smaller ΔPPL "
        "from a real bf16 TAIDE checkpoint.",
        "- f16 against the float32 source on transformers is the export's own fidelity (token ids, Q/K "
        "permutation, tied embeddings): it should be ~0%.",
        "",
        f"Reproduce: `.venv/bin/python -m bench.export_quality --laws {args.laws} --chunks {args.chunks} "
        f"--runs {args.runs}`",
    ]
    body = "\n".join(line for line in lines if line is not None)
    print(body)
    if not args.no_write:
        write_section("export-quality", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
