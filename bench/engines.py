"""Decode speed and time to first token of the embedded default on each CPU engine.

Anchors, measured in the same run: llama-cpp-python's own generate loop and transformers'
``model.generate`` on the same weights and prompt ids, so the ratios show what taide's engine layer
costs or saves, and how much faster llama.cpp is than transformers on this CPU.

    .venv/bin/python -m bench.engines [--runs 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import statistics
import time
from pathlib import Path

from bench.report import write_section
from taide.engines import GenerationParams, load_engine

PROMPT = [{"role": "user", "content": "Write a long, detailed story about a night market in Taipei."}]


def run_taide(engine, params):
    c = engine.chat(PROMPT, params)
    return c.time_to_first_token, c.tokens_per_second, c.completion_tokens


def run_raw_llamacpp(llm, prompt_ids, max_tokens):
    llm.reset()  # forget the cached prompt, so time to first token includes the prefill, as for taide
    started, first, n = time.perf_counter(), None, 0
    for _token in llm.generate(prompt_ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, reset=True):
        n += 1
        first = first or time.perf_counter()
        if n >= max_tokens:
            break
    end = time.perf_counter()
    return first - started, (n - 1) / (end - first), n


def run_raw_transformers(model, prompt_ids, max_tokens):
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    ids = torch.tensor([prompt_ids])
    clock = Clock()
    started = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False,
                         streamer=clock, eos_token_id=None)
    n = out.shape[1] - ids.shape[1]
    first = clock.times[1]  # times[0] is the prompt itself being "put"
    return first - started, (n - 1) / (clock.times[-1] - first), n


def interleaved(runs, **contenders):
    """Alternate the contenders run by run, so drift in machine speed hits them alike."""
    rows = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            rows[name].append(fn())
    return rows


def llamacpp_worker(contender: str, max_tokens: int) -> None:
    """One llama.cpp measurement in a process of its own: two llama.cpp contexts in one process slow each
    other down (their compute threads contend), which would spoil both figures."""
    params = GenerationParams(max_tokens=max_tokens, temperature=0, stop=["\x00"])
    engine = load_engine("smollm2-135m", "llamacpp", n_ctx=2048)
    engine.chat(PROMPT, GenerationParams(max_tokens=8, temperature=0))  # warm-up
    if contender == "taide":
        row = run_taide(engine, params)
    else:
        from taide.engines.llamacpp_engine import open_llama

        prompt_ids, path = engine.prompt_ids(PROMPT), str(engine.model.path)
        engine.close()
        raw = open_llama(path, n_ctx=2048, n_threads=os.cpu_count(), flash_attn=True,
                    verbose=False)  # the engine's settings
        run_raw_llamacpp(raw, prompt_ids, 8)  # warm-up
        row = run_raw_llamacpp(raw, prompt_ids, max_tokens)
    print(json.dumps(row))


def llamacpp_in_subprocess(contender: str, max_tokens: int):
    out = subprocess.run([sys.executable, "-m", "bench.engines", "--worker", contender, "--max-tokens", str(max_tokens)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def summarize(rows):
    ttft = statistics.median(r[0] for r in rows)
    tps = statistics.median(r[1] for r in rows)
    return ttft, tps, statistics.median(r[2] for r in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--worker", choices=["taide", "anchor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return llamacpp_worker(args.worker, args.max_tokens)
    params = GenerationParams(max_tokens=args.max_tokens, temperature=0, stop=["\x00"])  # greedy

    results = {}
    rows = interleaved(args.runs, taide=lambda: llamacpp_in_subprocess("taide", args.max_tokens),
                       anchor=lambda: llamacpp_in_subprocess("anchor", args.max_tokens))
    results["taide llamacpp"] = summarize(rows["taide"])
    results["llama-cpp-python generate (anchor)"] = summarize(rows["anchor"])

    ref = load_engine("smollm2-135m", "transformers")
    prompt_ids = ref.prompt_ids(PROMPT)
    ref.chat(PROMPT, GenerationParams(max_tokens=8, temperature=0))  # warm-up
    rows = interleaved(args.runs, taide=lambda: run_taide(ref, params),
                       anchor=lambda: run_raw_transformers(ref.lm, prompt_ids, args.max_tokens))
    results["taide transformers"] = summarize(rows["taide"])
    results["transformers generate (anchor)"] = summarize(rows["anchor"])
    ref.close()

    anchor_llama = results["llama-cpp-python generate (anchor)"]
    anchor_hf = results["transformers generate (anchor)"]
    lines = ["| engine | tokens (median) | decode tok/s | time to first token | decode vs anchor | decode vs transformers generate |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, (ttft, tps, n) in results.items():
        anchor = anchor_llama if "llama" in name else anchor_hf
        lines.append(f"| {name} | {n:.0f} | {tps:.1f} | {ttft * 1000:.0f} ms | {tps / anchor[1]:.2f}× | "
                     f"{tps / anchor_hf[1]:.2f}× |")
    table = "\n".join(lines)
    print(table)
    body = (f"## Engines: embedded default (SmolLM2-135M-Instruct Q4_1), CPU\n\n"
            f"Greedy, {args.max_tokens} new tokens, {len(prompt_ids)} prompt tokens, median of {args.runs} runs "
            f"interleaved with the anchor's, after a warm-up; time to first token includes the prompt's prefill. "
            f"taide's llamacpp engine decodes through its own batched slot loop (llama_decode), the anchor through "
            f"llama-cpp-python's one-sequence generate with the same settings (every core, flash attention on); each "
            f"llama.cpp run is a process of its own, since two llama.cpp contexts in one process slow each other. "
            f"transformers runs the GGUF dequantized to float32, both contenders in this process.\n\n{table}\n\n"
            f"Reproduce: `.venv/bin/python -m bench.engines --runs {args.runs} --max-tokens {args.max_tokens}`\n")
    if not args.no_write:
        write_section("engines", body)


if __name__ == "__main__":
    main()
