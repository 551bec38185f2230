"""Prompt-prefix caching in the llama.cpp engine: time to first token of each turn of a five-turn conversation
(about 1,500 prompt tokens at turn 5) with the cache and without it, and whether the greedy answers are the same.

The embedded SmolLM2-135M-Instruct on the llamacpp engine, greedy, 48-token answers; each turn sends the whole
conversation so far, as a chat client does. A fresh engine per conversation (loading is not timed), so every
conversation starts cold; ``--runs`` conversations per contender, interleaved, each turn's best time reported.

    .venv/bin/python -m bench.prefix_cache [--runs 3] [--no-write]
"""

from __future__ import annotations

import argparse
import sys

from bench.report import publish

TOPICS = ["the history of Taipei", "night markets in Taiwan", "the Taiwan High Speed Rail", "Yushan National Park",
          "bubble tea"]


def conversation(engine, repeat: int) -> tuple[list[float], list[str], int]:
    """(time to first token per turn, the answers, the last prompt's tokens)."""
    from taide.engines import GenerationParams

    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    ttft, answers = [], []
    for topic in TOPICS:
        messages.append({"role": "user", "content": f"Tell me about {topic} in detail, with at least five facts. "
                         * repeat})
        answer = engine.chat(messages, GenerationParams(max_tokens=48, temperature=0))
        ttft.append(answer.time_to_first_token)
        answers.append(answer.text)
        messages.append({"role": "assistant", "content": answer.text})
    return ttft, answers, answer.prompt_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15, help="sentences per user turn (sets the length)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from taide.engines import load_engine

    options = {"cached": {}, "no cache": {"prefix_cache": False}}
    best: dict[str, list[float]] = {}
    answers: dict[str, list[str]] = {}
    reused = 0
    for _ in range(args.runs):
        for name, extra in options.items():  # a fresh engine per run: every conversation starts cold
            with load_engine("smollm2-135m", "llamacpp", n_ctx=4096, **extra) as engine:
                ttft, said, prompt_tokens = conversation(engine, args.repeat)
                reused = max(reused, engine.stats()["prefix_tokens_reused"])
            best[name] = [min(a, b) for a, b in zip(best.get(name, ttft), ttft)]
            answers.setdefault(name, said)

    same = sum(a == b for a, b in zip(answers["cached"], answers["no cache"]))
    lines = ["## Prompt-prefix caching: a five-turn conversation, llamacpp engine, SmolLM2-135M, CPU", "",
             f"Each turn resends the conversation (turn 5: {prompt_tokens:,} prompt tokens); greedy 48-token answers; "
             f"best of {args.runs} runs per turn. Time to first token, seconds:", "",
             "| turn | no cache | cached | speed-up |", "|---:|---:|---:|---:|"]
    for turn, (plain, cached) in enumerate(zip(best["no cache"], best["cached"]), start=1):
        lines.append(f"| {turn} | {plain:.3f} | {cached:.3f} | {plain / cached:.2f}× |")
    lines += ["", f"**Turn 5: {best['no cache'][-1] / best['cached'][-1]:.2f}× faster with the cache** (goal ≥ 3×). "
              f"Greedy answers identical with and without the cache: {same} of {len(TOPICS)} turns. The cache reused "
              f"{reused:,} prompt tokens in a conversation. A turn reuses the cells of the previous turn's prompt; the "
              "previous answer and the new question are decoded.", "",
              "Reproduce: `.venv/bin/python -m bench.prefix_cache`"]
    publish("prefix-cache", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
