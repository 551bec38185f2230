"""Structured output at the speed of free decoding: decode tokens/s of JSON answers (``response_format``
json_object, and a JSON schema) against free text, same engine, model and prompt, in the same run, on the built
Gemma 3 (the newest `taide build` when there is one, else the embedded gemma3-270m it starts from; a vocabulary of
262,144 tokens). Every finished JSON answer is validated with jsonschema.

Both local engines mask with llguidance. The reference rows are llama.cpp's own grammar sampler (what the llamacpp
engine used before), through llama-cpp-python's ``create_completion`` with its JSON grammar, against the same call
without a grammar, in this process while no engine runs.

Greedy answers; decode tok/s = (tokens − 1) / (time after the first token); medians of ``--runs`` runs, the
contenders interleaved in each run.

    bash scripts/install.sh --bench   # jsonschema
    .venv/bin/python -m bench.structured_output [--runs 5] [--engines llamacpp,transformers] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench.models import built_gemma
from bench.report import publish

PROMPT = [{"role": "user", "content": (
    "Describe Taipei as JSON with the keys city, country, founded (a year) and facts (a list of five facts, each one "
    'sentence). For example: {"city": "Tainan", "country": "Taiwan", "founded": 1624, "facts": ["Tainan is the '
    'oldest city in Taiwan.", "..."]}')}]
SCHEMA = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40},
    "founded": {"type": "integer", "minimum": 0, "maximum": 2100},
    "facts": {"type": "array", "items": {"type": "string", "maxLength": 120}, "minItems": 3, "maxItems": 5}},
    "required": ["city", "country", "founded", "facts"], "additionalProperties": False}
MODES = {"free text": None, "json_object": True, "json_schema": SCHEMA}
MAX_TOKENS = 256


def valid(schema, text: str) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), {"type": "object"} if schema is True else schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def measure_engine(model: str, engine_name: str, runs: int) -> dict:
    """Per mode: decode rates, token counts, finished and valid answers; and the vocabulary's first read."""
    from taide.engines import GenerationParams, load_engine

    with load_engine(model, engine_name) as engine:
        vocab = engine.vocab_size
        started = time.perf_counter()
        engine.grammars.tokenizer  # noqa: B018 - llguidance reads the vocabulary once, on the first JSON request
        vocabulary_read = time.perf_counter() - started
        results = {mode: {"rates": [], "tokens": [], "finished": 0, "valid": 0} for mode in MODES}
        for run in range(runs + 1):  # the first run warms up and is not counted
            length = MAX_TOKENS
            for mode, schema in reversed(MODES.items()):  # free text last, as long as the schema's answer
                answer = engine.chat(PROMPT, GenerationParams(max_tokens=length, temperature=0, json_schema=schema))
                if schema is SCHEMA:
                    length = max(answer.completion_tokens, 2)
                if run == 0:
                    continue
                r = results[mode]
                r["rates"].append(answer.tokens_per_second)
                r["tokens"].append(answer.completion_tokens)
                if schema is not None and answer.finish_reason == "stop":
                    r["finished"] += 1
                    r["valid"] += valid(schema, answer.text)
            if run:
                print(f"   {engine_name} run {run}: " + ", ".join(
                    f"{mode} {results[mode]['rates'][-1]:.1f} tok/s ({results[mode]['tokens'][-1]} tokens)"
                    for mode in MODES))
    return {"modes": results, "vocabulary_read": vocabulary_read, "vocab": vocab}


def measure_grammar_sampler(model: str, prompt_ids: list[int], runs: int) -> dict[str, list[float]]:
    """llama.cpp's grammar sampler (llama-cpp-python, JSON grammar) and the same call without it: decode tok/s."""
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import JSON_GBNF

    from taide.engines.llamacpp_engine import open_llama
    from taide.models import resolve_model

    llm = open_llama(resolve_model(model).path, n_ctx=2048, n_threads=os.cpu_count(), flash_attn=True, verbose=False)
    grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    rates: dict[str, list[float]] = {"free text": [], "json_object": []}

    def rate(with_grammar: bool, max_tokens: int) -> tuple[float, int]:
        llm.reset()
        times = []
        for _ in llm.create_completion(prompt_ids, max_tokens=max_tokens, temperature=0.0, top_k=0, top_p=1.0,
                                       min_p=0.0, stream=True, grammar=grammar if with_grammar else None):
            times.append(time.perf_counter())
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan"), len(times)

    try:
        rate(True, MAX_TOKENS)  # warm-up
        for run in range(runs):
            constrained, length = rate(True, MAX_TOKENS)
            rates["json_object"].append(constrained)
            rates["free text"].append(rate(False, max(length, 2))[0])  # as long as the JSON answer
            print(f"   llama.cpp grammar sampler run {run + 1}: free text {rates['free text'][-1]:.1f} tok/s, "
                  f"json_object {rates['json_object'][-1]:.1f} tok/s")
    finally:
        llm.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engines", default="llamacpp,transformers", help="comma-separated: llamacpp, transformers")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    from taide.engines import load_engine

    model, why = built_gemma()
    print(f"model: {why}")
    measured = {}
    for name in engines:
        print(f"{name}: {args.runs} runs")
        measured[name] = measure_engine(model, name, args.runs)
    with load_engine(model, "llamacpp") as engine:
        prompt_ids = engine.prompt_ids(PROMPT)
    print("llama.cpp's grammar sampler (reference)")
    reference = measure_grammar_sampler(model, prompt_ids, args.runs)

    med = statistics.median
    rows = ["| engine | answer | decode tok/s | × free text | tokens (median) | finished JSON that validates | "
            "goal ≥ 0.8× |", "|---|---|---:|---:|---:|---:|:---:|"]
    verdicts = []
    for name, m in measured.items():
        free = med(m["modes"]["free text"]["rates"])
        for mode, r in m["modes"].items():
            rate, tokens = med(r["rates"]), med(r["tokens"])
            if mode == "free text":
                rows.append(f"| {name} | free text (anchor) | {rate:.1f} | 1.00× | {tokens:.0f} | | |")
                continue
            ratio = rate / free
            met = ratio >= 0.8 and r["valid"] == r["finished"] == args.runs
            verdicts.append(met)
            rows.append(f"| {name} | {mode} | {rate:.1f} | {ratio:.2f}× | {tokens:.0f} | {r['valid']} of {args.runs} "
                        f"| {'yes' if met else '**no**'} |")
    free, grammar = med(reference["free text"]), med(reference["json_object"])
    rows.append(f"| llama-cpp-python, no grammar (reference anchor) | free text | {free:.1f} | 1.00× | | | |")
    rows.append(f"| llama-cpp-python, llama.cpp's grammar sampler (before) | json_object | {grammar:.1f} | "
                f"{grammar / free:.2f}× | | | |")
    reads = "; ".join(f"{name} {m['vocabulary_read']:.1f} s" for name, m in measured.items())
    vocab = next(iter(measured.values()))["vocab"] if measured else None
    command = (f"bash scripts/install.sh --bench && .venv/bin/python -m bench.structured_output --runs {args.runs} "
               f"--engines {','.join(engines)}")
    body = "\n".join([
        "## Structured output: JSON at the speed of free text, built Gemma 3, CPU", "",
        f"Model: {why} (a vocabulary of {vocab:,} tokens). One prompt asking for a JSON description of Taipei, "
        f"greedy, max_tokens {MAX_TOKENS}: `response_format` json_object, a JSON schema (city, country, founded "
        "year, three to five facts), and free text as long as the schema's answer (as long as the JSON answer, in "
        "the reference rows). Decode tok/s = (tokens − 1) / (time after the first token), "
        f"medians of {args.runs} runs, the answers interleaved in each run; every finished JSON answer is "
        "validated with jsonschema. Both engines mask each step's logits with llguidance's token masks; the last "
        "two rows are llama.cpp's own grammar sampler, which the llamacpp engine used before, against the same "
        "llama-cpp-python call without a grammar.", "",
        *rows, "",
        f"**Constrained decoding ≥ 0.8× free decoding, every JSON answer valid: {'yes' if all(verdicts) else 'no'}.** "
        f"The first JSON request on a model reads its vocabulary into llguidance once ({reads}).", "",
        f"Reproduce: `{command}`"])
    publish("structured-output", body, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
