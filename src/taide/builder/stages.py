"""The build's stages. Each takes the recipe and the earlier stages' results, does its work in its own
directory by calling the component that owns it (data, train, export, eval), and returns counts for its
manifest. Nothing here re-implements those components."""

from __future__ import annotations

import contextlib
import json
import math
import random
from pathlib import Path

from taide.builder.recipe import PLAN_ONLY, SAMPLES, Recipe


def run_data(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    from taide.data import clean

    settings = recipe.resolve(recipe.data)
    report = clean(settings.get("inputs", ["sample:data"]), directory / "cleaned", config=settings.get("config"),
                   keep_rejected=directory / "rejected", workers=settings.get("workers"),
                   executor=settings.get("executor", "local"), ray_address=settings.get("ray_address"))
    return {"read": report["read"], "kept": report["kept"], "unreadable": report["unreadable"],
            "removed": report["removed"], "stages": report["stages"], "sources": report["sources"],
            "output": str(directory / "cleaned")}


def _train(recipe: Recipe, mode: str, settings: dict, model: str, data, directory: Path, report=None) -> dict:
    from taide.train import TrainConfig, train
    from taide.train.launch import train_in_processes

    settings = {k: v for k, v in recipe.resolve(settings).items() if k not in PLAN_ONLY}  # the plan's, not training's
    settings.setdefault("data", data)
    config = TrainConfig(mode=mode, model=model, out=str(directory), **settings)
    processes = recipe.launch.get("train_processes", 1)
    if processes > 1:
        result = train_in_processes(config, processes)
    else:
        on_step = (lambda step, total, values: report({"step": step, "total": total, **values})) if report else None
        result = train(config, resume="if_any", on_step=on_step)
    heldout_tokens = None
    data_summary = directory / "data.json"
    if data_summary.is_file():
        heldout_tokens = json.loads(data_summary.read_text()).get("heldout_rows")
    return {"model": str(result.out), "steps": result.steps, "tokens": result.tokens,
            "final_loss": result.final_loss, "heldout_loss_before": result.heldout_loss_before,
            "heldout_loss": result.heldout_loss, "heldout_rows": heldout_tokens, "processes": processes,
            "hyperparameters": {k: v for k, v in config.to_dict().items() if k not in ("data", "out", "model")}}


def run_cp(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    return _train(recipe, "cp", recipe.cp, recipe.base_model, [upstream["data"]["output"]], directory, report)


def run_sft(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    model = upstream["cp"]["model"] if "cp" in upstream else recipe.base_model
    return _train(recipe, "sft", recipe.sft, model, ["sample:sft"], directory, report)


def built_model(upstream: dict, recipe: Recipe) -> str:
    for stage in ("sft", "cp"):
        if stage in upstream:
            return upstream[stage]["model"]
    return recipe.base_model


def run_export(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    from taide.export import export_model

    settings = recipe.export
    result = export_model(built_model(upstream, recipe), fmt=settings.get("format", "gguf"),
                          quant=settings.get("quant", "q8_0"), out=directory, verify=settings.get("verify", True),
                          output_type=settings.get("output_type"), overwrite=True)
    report = result.to_dict()
    return {"path": str(result.path), "format": result.format, "quant": result.quant, "size_bytes": result.size_bytes,
            "bits_per_weight": result.bits_per_weight, "modelfile": report.get("modelfile"),
            "verification": report.get("verification")}


# --- evaluation: the built model against the base on what the build never trained on ---------------

def _bootstrap(a: list[float], b: list[float], metric, rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of metric(b) - metric(a) over items resampled with replacement."""
    rng = random.Random(seed)
    n = len(a)
    diffs = []
    for _ in range(rounds):
        pick = [rng.randrange(n) for _ in range(n)]
        diffs.append(metric([b[i] for i in pick]) - metric([a[i] for i in pick]))
    diffs.sort()
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def _heldout_losses(recipe: Recipe, upstream: dict, models: dict[str, str], rows_wanted: int) -> dict:
    """Per-row held-out loss of each model on the first ``rows_wanted`` rows of the CP held-out split
    (the same rows for every model)."""
    import torch

    from taide.train import TrainConfig
    from taide.train.datasets import build_datasets
    from taide.train.model import load_for_training
    from taide.train.parallel import World
    from taide.train.trainer import token_loss_sum

    world = World(0, 1, 0, torch.device("cpu"))
    settings = {k: v for k, v in recipe.resolve(recipe.cp).items() if k not in PLAN_ONLY and k != "max_steps"}
    config = TrainConfig(mode="cp", model=recipe.base_model, data=[upstream["data"]["output"]],
                         out=str(Path(upstream["cp"]["model"]).parent), **settings)
    rows = {}
    for name, reference in models.items():
        model, tokenizer, chat_format = load_for_training(reference, world.device)
        model.eval()
        data = build_datasets(config, tokenizer, chat_format, world)
        losses, counts = [], []
        with torch.no_grad():
            for batch in data.heldout(max(1, rows_wanted // config.micro_batch_size)):
                for i in range(len(batch["input_ids"])):  # one item per row, for the bootstrap
                    loss, n = token_loss_sum(model, {k: v[i:i + 1] for k, v in batch.items()}, contextlib.nullcontext)
                    losses.append(float(loss))
                    counts.append(n)
        rows[name] = (losses, counts)
        del model
    return rows


def run_eval(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    from taide.chat.presets import task_messages
    from taide.eval.metrics import sentence_chrf

    settings = recipe.resolve(recipe.eval)
    max_tokens = settings.get("max_tokens", 128)
    built_gguf = upstream.get("export", {}).get("path") if upstream.get("export", {}).get("format") == "gguf" else None
    models = {"base": recipe.base_model, "built": built_gguf or built_model(upstream, recipe)}
    proof: dict = {}

    # 1. Perplexity on held-out corpus documents: the built model, and the continued-pretraining stage's model
    # when instruction tuning followed (what CP gained on corpus text, and what SFT kept of it).
    if "cp" in upstream and "data" in upstream:
        compared = {"base": recipe.base_model, "built": built_model(upstream, recipe)}
        if compared["built"] != upstream["cp"]["model"]:
            compared["cp"] = upstream["cp"]["model"]
        losses = _heldout_losses(recipe, upstream, compared, settings.get("heldout_rows", 32))
        base_l, counts = losses["base"]
        ppl = lambda ls: math.exp(sum(ls) / sum(counts))  # noqa: E731
        for name, key in (("built", "heldout_perplexity"), ("cp", "heldout_perplexity_cp")):
            if name in losses:
                other = losses[name][0]
                low, high = _bootstrap([l / n for l, n in zip(base_l, counts) if n],
                                       [l / n for l, n in zip(other, counts) if n], lambda xs: sum(xs) / len(xs))
                proof[key] = {"base": ppl(base_l), "built": ppl(other), "rows": len(base_l), "tokens": sum(counts),
                              "loss_diff_95": [low, high], "within_noise": low <= 0 <= high}

    # 2. chrF on held-out translation pairs (both models, greedy); 3. Taiwan prompts and 4. taide-bench (the built
    # model: a pretrained base does not answer instructions, and its rambling would double the stage's time).
    from taide.engines import GenerationParams, load_engine

    pairs_file = Path(settings.get("heldout_pairs") or recipe.resolve("sample:pairs"))
    pairs = [json.loads(line) for line in pairs_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = [task_messages(p["task"], p["source"]) for p in pairs]
    scores, taiwan, bench = {}, {}, {}
    for name, reference in models.items():
        with load_engine(reference) as engine:
            answers = engine.generate_batch(prompts, GenerationParams(max_tokens=max_tokens, temperature=0.0))
            outputs = [a.text for a in answers]
            if name == "built":
                taiwan = _run_taiwan(settings, engine, directory, max_tokens)
                bench = _run_bench(settings, engine, directory / "bench-built", max_tokens)
        scores[name] = [sentence_chrf(o, p["reference"]) for o, p in zip(outputs, pairs)]
        (directory / f"translations-{name}.jsonl").write_text(
            "".join(json.dumps({"id": p["id"], "task": p["task"], "source": p["source"], "reference": p["reference"],
                                "output": o}, ensure_ascii=False) + "\n" for p, o in zip(pairs, outputs)), "utf-8")
    low, high = _bootstrap(scores["base"], scores["built"], lambda xs: sum(xs) / len(xs))
    proof["heldout_chrf"] = {"base": sum(scores["base"]) / len(pairs), "built": sum(scores["built"]) / len(pairs),
                             "pairs": len(pairs), "diff_95": [low, high], "within_noise": low <= 0 <= high}
    result = {"proof": proof, "taiwan": taiwan, "bench": bench, "models": models}
    (directory / "proof.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return result


def _run_taiwan(settings: dict, engine, directory: Path, max_tokens: int) -> dict:
    """The Taiwan prompts, answered with the sampling and system prompt `taide chat` gives by default (seeded, so
    a rerun answers the same); each answer checked for language, script and loops."""
    from taide.engines import GenerationParams
    from taide.eval.fidelity import fidelity_many

    path = Path(settings.get("taiwan_prompts") or SAMPLES["taiwan"])
    prompts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    languages = ["en" if p["expect"] == "en" else "zh-TW" for p in prompts]
    system = engine.default_system_prompt
    conversations = [([{"role": "system", "content": system}] if system else [])
                     + [{"role": "user", "content": p["prompt"]}] for p in prompts]
    answers = engine.generate_batch(conversations, GenerationParams(max_tokens=max_tokens, seed=0))
    checked = fidelity_many([a.text for a in answers], languages)
    (directory / "taiwan-built.jsonl").write_text("".join(
        json.dumps({**p, "answer": a.text, "fidelity": f}, ensure_ascii=False) + "\n"
        for p, a, f in zip(prompts, answers, checked["items"])), encoding="utf-8")
    return {"built": {**checked["summary"], "system_prompt": system, "prompts": path.name}}


def _run_bench(settings: dict, engine, run: Path, max_tokens: int) -> dict:
    """taide-bench as `taide eval bench` runs it (the same files, bench_run.json included), then the report."""
    from taide.engines import GenerationParams
    from taide.eval.bench import run_bench
    from taide.eval.judge import Judge, StubJudgeEngine
    from taide.eval.report import compare, write_report

    judge = None
    if settings.get("judge_endpoint"):
        judge = Judge.from_endpoint(settings["judge_endpoint"], settings.get("judge_model"))
    elif settings.get("judge_model") in ("self", "stub"):
        judge = Judge(engine if settings["judge_model"] == "self" else StubJudgeEngine())
    run_bench(engine, run, settings.get("bench"), judge, settings.get("tasks"),  # bench None: the shipped sample
              GenerationParams(max_tokens=max_tokens, temperature=0.0), settings.get("system_prompt") or "none")
    files = write_report(compare([run]), run.parent / "report")
    return {"report": {k: str(v) for k, v in files.items()}, "runs": [str(run)]}
