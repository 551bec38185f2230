"""`taide build` wall time per stage: the default recipe (pretrained Gemma 3 270M) beside the previous default
(SmolLM2-135M-Instruct, `recipes/build/smollm2-demo.yaml`), one after the other on the same machine, each in a
fresh output directory. Also reports what the default build's model answers on the Taiwan prompts it never saw.

The first Gemma build on a machine also dequantizes the embedded GGUF once into taide's cache (~50 s); with
``--cold`` the cache is emptied first so the figure is what a fresh clone pays.

    .venv/bin/python -m bench.build_times [--cold] [--only default|smollm2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import write_section

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"default": None, "smollm2": ROOT / "recipes" / "build" / "smollm2-demo.yaml"}
STAGES = ("data", "cp", "sft", "export", "eval", "card")


def run_build(recipe: Path | None, out: Path) -> dict:
    command = [sys.executable, "-m", "taide.cli", "build", "-o", str(out)] + ([str(recipe)] if recipe else [])
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    seconds = {}
    for stage in STAGES:
        manifest = out / stage / "manifest.json"
        if manifest.is_file():
            seconds[stage] = json.loads(manifest.read_text())["seconds"]
    evaluation = json.loads((out / "eval" / "manifest.json").read_text())["result"]
    return {"wall": wall, "stages": seconds, "taiwan": evaluation.get("taiwan", {}), "proof": evaluation.get("proof", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="empty taide's dequantization cache first")
    parser.add_argument("--only", choices=list(RECIPES), help="run one recipe only")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    from taide.models.reference import cache_root

    if args.cold:
        shutil.rmtree(cache_root() / "dequantized", ignore_errors=True)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="taide-build-bench-") as tmp:
        for name, recipe in RECIPES.items():
            if args.only and name != args.only:
                continue
            print(f"building {name} …", flush=True)
            runs[name] = run_build(recipe, Path(tmp) / name)
            print(json.dumps(runs[name], ensure_ascii=False, indent=1), flush=True)

    header = "| stage | " + " | ".join(runs) + " |"
    lines = [header, "|---|" + "---:|" * len(runs)]
    for stage in STAGES:
        lines.append(f"| {stage} | " + " | ".join(f"{r['stages'].get(stage, 0):.0f} s" for r in runs.values()) + " |")
    lines.append("| **wall, whole command** | " + " | ".join(f"**{r['wall']:.0f} s**" for r in runs.values()) + " |")
    if len(runs) == 2:
        (a, ra), (b, rb) = runs.items()
        lines += ["", f"{a} / {b} wall time: {ra['wall'] / rb['wall']:.2f}× (same run, same machine)."]
    lines += ["", "Taiwan prompts the build never saw, answered by the built GGUF with the default sampling:", "",
              "| build | answers in the asked language | Simplified-only characters | looping answers |", "|---|---:|---:|---:|"]
    for name, r in runs.items():
        s = r["taiwan"].get("built") or {}
        if s.get("n"):
            lines.append(f"| {name} | {s['language_ok_rate']:.0%} of {s['n']} | {s['simplified_share_overall']:.2%} | "
                         f"{s['degenerate_rate']:.0%} |")
    cold = "cold (dequantization cache emptied first)" if args.cold else "warm dequantization cache"
    body = ("## Build: `taide build` stage times, Gemma 3 270M (default) beside SmolLM2-135M (previous default)\n\n"
            f"One run each, back to back, {cold}; stage seconds from each stage's manifest.\n\n"
            + "\n".join(lines) + "\n\nReproduce: `.venv/bin/python -m bench.build_times"
            + (" --cold" if args.cold else "") + "`\n")
    print(body)
    if not args.no_write:
        write_section("build", body)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
