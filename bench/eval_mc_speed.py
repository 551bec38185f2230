"""Speed of ``taide eval mc`` against lm-evaluation-harness's ``hf`` backend on the same exam items, the same
model and the same prompts, with the accuracy of both (they must agree).

Items: the first ``--per-subject`` questions of ``--subjects`` TMMLU subjects from ../shared (0-shot). Model: the
embedded SmolLM2-135M-Instruct, as transformers loads it (taide's dequantized float32 copy of the GGUF). Prompt:
the chat messages ``taide eval mc`` sends (instruction, question, options, 答案：, no system prompt), rendered once
by taide's chat format into the text both tools score; the choices are the option letters, scored by their
log-likelihood after the prompt.

Contenders, each timed from the call to its return (model load included), in one process one after the other:

- taide, the transformers engine, questions queued together (``run_mc``, which uses ``loglikelihood_many``);
- taide, the llama.cpp engine on the GGUF (Q4_1 weights: a different computation, so its accuracy may differ);
- lm-evaluation-harness ``simple_evaluate(model="hf", batch_size=8)`` on a task written for these items.

    bash scripts/install.sh --bench && .venv/bin/python -m bench.eval_mc_speed [--subjects 3 --per-subject 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.report import publish

ROOT = Path(__file__).resolve().parents[1]
TMMLU = ROOT.parent / "shared" / "data" / "tmmlu" / "subjects"


def _items(subjects: int, per_subject: int):
    from taide.eval.mc import MCData, load_mc

    data = load_mc(TMMLU)
    picked = MCData()
    for name in sorted(data.subjects)[:subjects]:
        picked.subjects[name] = data.subjects[name][:per_subject]
    return picked


def _lm_eval(model_dir: Path, rows: list[dict], work: Path) -> tuple[float, list[int]]:
    """lm-evaluation-harness on ``rows`` ({context, gold}): (seconds, predicted choice per row)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    (work / "items.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    (work / "taide_mc.yaml").write_text(
        "task: taide_mc\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {work / 'items.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{context}}'\n"
        "doc_to_choice: ['A', 'B', 'C', 'D']\ndoc_to_target: '{{gold}}'\ntarget_delimiter: ''\n"
        "metric_list:\n  - metric: acc\n", encoding="utf-8")
    started = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir},dtype=float32", tasks=["taide_mc"],
                                  task_manager=TaskManager(include_path=str(work)), batch_size=8, device="cpu",
                                  log_samples=True)
    seconds = time.perf_counter() - started
    samples = sorted(out["samples"]["taide_mc"], key=lambda s: s["doc_id"])
    predicted = [max(range(4), key=lambda k: s["resps"][k][0][0]) for s in samples]
    return seconds, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--per-subject", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not TMMLU.is_dir():
        print(f"skipped: {TMMLU} is absent (../shared ships only with the project checkout)")
        return

    from taide.engines import load_engine
    from taide.eval.mc import mc_messages, run_mc
    from taide.models.loading import hf_directory

    data = _items(args.subjects, args.per_subject)
    n = data.n_items
    _, model_dir = hf_directory("smollm2-135m")
    results = {}
    for name, reference, kind in (("taide, transformers engine", str(model_dir), "transformers"),
                                  ("taide, llama.cpp engine (GGUF)", "smollm2-135m", "llamacpp")):
        started = time.perf_counter()
        with load_engine(reference, kind) as engine:
            result = run_mc(engine, data, system="")
            if kind == "transformers":
                rows = [{"context": engine.chat_format.render_text(mc_messages(item, system=""),
                                                                    add_generation_prompt=True),
                         "gold": "ABCD".index(item.answer)} for s in data.subjects.values() for item in s]
        seconds = time.perf_counter() - started
        results[name] = (seconds, [r["predicted"] for r in result["records"]], result["overall"]["micro_accuracy"])
        print(f"{name}: {seconds:.1f} s, {n / seconds:.2f} questions/s, accuracy {results[name][2]:.1%}", flush=True)

    with tempfile.TemporaryDirectory() as work:
        seconds, predicted = _lm_eval(model_dir, rows, Path(work))
    letters = ["ABCD"[k] for k in predicted]
    accuracy = sum(p == "ABCD"[r["gold"]] for p, r in zip(letters, rows)) / n
    results["lm-evaluation-harness, hf backend (batch 8)"] = (seconds, letters, accuracy)
    print(f"lm-eval hf: {seconds:.1f} s, {n / seconds:.2f} questions/s, accuracy {accuracy:.1%}", flush=True)

    anchor = results["lm-evaluation-harness, hf backend (batch 8)"]
    same = sum(a == b for a, b in zip(results["taide, transformers engine"][1], anchor[1]))
    lines = ["## Exam speed: `taide eval mc` vs lm-evaluation-harness (hf backend), SmolLM2-135M, CPU", "",
             f"{n} TMMLU questions ({args.subjects} subjects × {args.per_subject}, 0-shot, from ../shared), the same "
             "prompt text (taide's chat format rendering of the instruction, the question, its options and 答案：) and "
             "the letters A–D scored by log-likelihood; model load included in each time.", "",
             "| contender | seconds | questions/s | vs lm-eval | accuracy |", "|---|---:|---:|---:|---:|"]
    for name, (seconds, _, accuracy) in results.items():
        lines.append(f"| {name} | {seconds:.1f} | {n / seconds:.2f} | {anchor[0] / seconds:.2f}× | {accuracy:.1%} |")
    engines = results["taide, transformers engine"][0], results["taide, llama.cpp engine (GGUF)"][0]
    lines += ["", f"Same predicted letter, taide's transformers engine against lm-eval: {same} of {n} questions.", "",
              "For exams, whose work is reading long prompts, the transformers engine was "
              f"{engines[1] / engines[0]:.1f}× faster than llama.cpp here, so `taide eval mc` scores a local model "
              "(a GGUF through its dequantized copy) on transformers unless `--engine` says otherwise.", "",
              "Reproduce: `bash scripts/install.sh --bench && .venv/bin/python -m bench.eval_mc_speed`"]
    publish("eval-mc-speed", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
