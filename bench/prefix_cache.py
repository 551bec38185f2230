"""Prompt-prefix caching in the llama.cpp engine: time to first token of each turn of a five-turn conversation
(about 1,500 prompt tokens at turn 5) with the cache and without it, and whether the greedy answers are the same,
token for token.

Two models: the built Gemma 3 (the newest `taide build` when there is one, else the embedded gemma3-270m it starts
from; five of every six layers attend to a sliding window of 512 tokens) and the embedded SmolLM2-135M-Instruct
(every layer attends to every position). Greedy, 48-token answers; each turn sends the whole conversation so far,
as a chat client does. A fresh engine per conversation (loading is not timed), so every conversation starts cold;
``--runs`` conversations per contender, interleaved, each turn's best time reported.

    .venv/bin/python -m bench.prefix_cache [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import sys

from bench.models import built_gemma
from bench.report import publish

TOPICS = ["the history of Taipei", "night markets in Taiwan", "the Taiwan High Speed Rail", "Yushan National Park",
          "bubble tea"]


def conversation(engine, repeat: int) -> tuple[list[float], list[list[int]], int]:
    """(time to first token per turn, the answers' token ids, the last prompt's tokens)."""
    from taide.engines import GenerationParams

    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    ttft, answers = [], []
    for topic in TOPICS:
        messages.append({"role": "user", "content": f"Tell me about {topic} in detail, with at least five facts. "
                         * repeat})
        answer = engine.chat(messages, GenerationParams(max_tokens=48, temperature=0))
        ttft.append(answer.time_to_first_token)
        answers.append(answer.token_ids)
        messages.append({"role": "assistant", "content": answer.text})
    return ttft, answers, answer.prompt_tokens


def measure(model: str, runs: int, repeat: int) -> dict:
    from taide.engines import load_engine

    options = {"cached": {}, "no cache": {"prefix_cache": False}}
    best: dict[str, list[float]] = {}
    answers: dict[str, list[list[int]]] = {}
    reused, prompt_tokens = 0, 0
    for _ in range(runs):
        for name, extra in options.items():  # a fresh engine per run: every conversation starts cold
            with load_engine(model, "llamacpp", n_ctx=4096, **extra) as engine:
                ttft, said, prompt_tokens = conversation(engine, repeat)
                reused = max(reused, engine.stats()["prefix_tokens_reused"])
            best[name] = [min(a, b) for a, b in zip(best.get(name, ttft), ttft)]
            if answers.setdefault(name, said) != said:
                print(f"note: {model}, {name}: greedy answers differ between runs")
    same = sum(a == b for a, b in zip(answers["cached"], answers["no cache"]))
    return {"best": best, "same": same, "reused": reused, "prompt_tokens": prompt_tokens}


def table(model: str, about: str, m: dict, runs: int) -> list[str]:
    best = m["best"]
    speedup = best["no cache"][-1] / best["cached"][-1]
    lines = [f"### {model}", "", about, "",
             f"Turn 5: {m['prompt_tokens']:,} prompt tokens; best of {runs} runs per turn. Time to first token, "
             "seconds:", "", "| turn | no cache | cached | speed-up |", "|---:|---:|---:|---:|"]
    for turn, (plain, cached) in enumerate(zip(best["no cache"], best["cached"]), start=1):
        lines.append(f"| {turn} | {plain:.3f} | {cached:.3f} | {plain / cached:.2f}× |")
    lines += ["", f"**Turn 5: {speedup:.2f}× faster with the cache** (goal ≥ 3×). Greedy answers identical with and "
              f"without the cache, token for token: {m['same']} of {len(TOPICS)} turns. The cache reused "
              f"{m['reused']:,} prompt tokens in a conversation.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15, help="sentences per user turn (sets the length)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    gemma, why = built_gemma()
    print(f"Gemma 3 model: {why}")
    models = [(gemma, f"Gemma 3, sliding-window attention: {why}."),
              ("smollm2-135m", "SmolLM2-135M-Instruct (embedded), every layer attending to every position.")]
    lines = ["## Prompt-prefix caching: a five-turn conversation, llamacpp engine, CPU", "",
             "Each turn resends the conversation; greedy 48-token answers. A turn reuses the cells of the previous "
             "turn's prompt and decodes the previous answer and the new question (at least 64 tokens: llama.cpp's "
             "CPU kernels round a shorter batch differently, so the cache reads what a fresh decode reads in "
             "batches as large).", ""]
    for model, about in models:
        lines += table(model, about, measure(model, args.runs, args.repeat), args.runs)
    lines += ["Reproduce: `.venv/bin/python -m bench.prefix_cache`"]
    publish("prefix-cache", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
