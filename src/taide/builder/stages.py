"""The build's stages. Each takes the recipe and the earlier stages' results, does its work in its own
directory by calling the component that owns it (data, train, export, eval), and returns counts for its
manifest. Nothing here re-implements those components."""

from __future__ import annotations

import json
from pathlib import Path

from taide.artifacts import atomic_write, write_json
from taide.builder.recipe import PLAN_ONLY, SAMPLES, BuildEvalConfig, Recipe
from taide.decontam.report import REPORT, summary


def evaluation_data(recipe: Recipe) -> list[str]:
    """What the training data is checked against when the recipe does not say (``decontaminate``): everything the
    build's evaluation reads (the bench, the Taiwan prompts, the held-out pairs), so it never trains on its test."""
    settings = recipe.eval_config()
    return [str(settings.bench or SAMPLES["bench"]), str(settings.taiwan_prompts or SAMPLES["taiwan"]),
            str(settings.heldout_pairs or SAMPLES["pairs"])]


def decontaminated_against(recipe: Recipe, stage: str) -> list[str] | None:
    """The evaluation data a stage's training data is checked against: its own ``decontaminate`` key, else the data
    stage's (sft), else :func:`evaluation_data`; null turns the check off."""
    for settings in ([recipe.sft or {}, recipe.data or {}] if stage == "sft" else [recipe.data or {}]):
        if "decontaminate" in settings:
            return recipe.resolve(settings["decontaminate"])
    return evaluation_data(recipe)


def run_data(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    from taide.data import CleanConfig, run_clean

    settings = {**recipe.resolve(recipe.data), "inputs": recipe.data_inputs()}  # the recipe's keys are CleanConfig's
    settings["decontaminate"] = decontaminated_against(recipe, "data")
    result = run_clean(CleanConfig(out_dir=directory / "cleaned", keep_rejected=directory / "rejected", **settings))
    return {"read": result.read, "kept": result.kept, "unreadable": result.unreadable, "removed": result.removed,
            "stages": result.report["stages"], "sources": result.report["sources"], "output": str(result.output),
            "decontamination": result.decontamination}


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
    decontamination = None
    if (directory / REPORT).is_file():
        decontamination = summary(json.loads((directory / REPORT).read_text(encoding="utf-8")))
    return {"model": str(result.out), "steps": result.steps, "tokens": result.tokens,
            "final_loss": result.final_loss, "heldout_loss_before": result.heldout_loss_before,
            "heldout_loss": result.heldout_loss, "heldout_rows": result.data.get("heldout_rows"), "processes": processes,
            "conversations": result.data.get("conversations"), "decontamination": decontamination,
            "heldout": str(result.heldout) if result.heldout else None,
            "hyperparameters": {k: v for k, v in config.to_dict().items() if k not in ("data", "out", "model")}}


def run_cp(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    return _train(recipe, "cp", recipe.cp, recipe.base_model, [upstream["data"]["output"]], directory, report)


def run_sft(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    model = upstream["cp"]["model"] if "cp" in upstream else recipe.base_model
    settings = {**recipe.sft, "decontaminate": decontaminated_against(recipe, "sft")}
    return _train(recipe, "sft", settings, model, ["sample:sft"], directory, report)


def built_model(upstream: dict, recipe: Recipe) -> str:
    for stage in ("sft", "cp"):
        if stage in upstream:
            return upstream[stage]["model"]
    return recipe.base_model


def run_export(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    from taide.export import ExportConfig, run_export

    settings = {"quant": "q8_0", "verify": True, **recipe.export}  # the recipe's keys are ExportConfig's
    result = run_export(ExportConfig(built_model(upstream, recipe), out=directory, overwrite=True, **settings))
    report = result.to_dict()
    return {"path": str(result.path), "format": result.format, "quant": result.quant, "size_bytes": result.size_bytes,
            "bits_per_weight": result.bits_per_weight, "modelfile": report.get("modelfile"),
            "verification": report.get("verification")}


# --- evaluation: the built model against the base on what the build never trained on ---------------

def run_eval(recipe: Recipe, directory: Path, upstream: dict, report=None) -> dict:
    from taide.engines import load_engine
    from taide.eval import heldout

    settings = recipe.eval_config()
    max_tokens = settings.max_tokens
    say = (lambda text: report({"note": text})) if report else (lambda text: None)
    built_gguf = upstream.get("export", {}).get("path") if upstream.get("export", {}).get("format") == "gguf" else None
    models = {"base": recipe.base_model, "built": built_gguf or built_model(upstream, recipe)}
    proof: dict = {}

    # 1. Perplexity on held-out corpus documents: the built model, and the continued-pretraining stage's model
    # when instruction tuning followed (what CP gained on corpus text, and what SFT kept of it).
    if (upstream.get("cp") or {}).get("heldout"):
        compared = {"base": recipe.base_model, "built": built_model(upstream, recipe)}
        if compared["built"] != upstream["cp"]["model"]:
            compared["cp"] = upstream["cp"]["model"]
        say(f"held-out perplexity of {', '.join(compared)}")
        losses = heldout.heldout_losses(upstream["cp"]["heldout"], compared, settings.heldout_rows)
        for name, key in (("built", "heldout_perplexity"), ("cp", "heldout_perplexity_cp")):
            if name in losses:
                proof[key] = heldout.perplexity_change(losses["base"], losses[name])

    # 2. chrF on held-out translation pairs (both models, greedy); 3. Taiwan prompts and 4. taide-bench (the built
    # model: a pretrained base does not answer instructions, and its rambling would double the stage's time).
    pairs = heldout.read_pairs(settings.heldout_pairs or SAMPLES["pairs"])
    scores, taiwan, bench = {}, {}, {}
    for name, reference in models.items():
        with load_engine(reference) as engine:
            say(f"{name}: {len(pairs)} held-out translations")
            outputs, scores[name] = heldout.translation_chrf(engine, pairs, max_tokens)
            if name == "built":
                say("built: the Taiwan prompts")
                taiwan = _run_taiwan(settings, engine, directory, max_tokens)
                say("built: taide-bench")
                bench = _run_bench(settings, engine, directory / "bench-built", max_tokens)
        atomic_write(directory / f"translations-{name}.jsonl", "".join(
            json.dumps({"id": p["id"], "task": p["task"], "source": p["source"], "reference": p["reference"],
                        "output": o}, ensure_ascii=False) + "\n" for p, o in zip(pairs, outputs)))
    proof["heldout_chrf"] = heldout.score_change(scores["base"], scores["built"])
    result = {"proof": proof, "taiwan": taiwan, "bench": bench, "models": models}
    write_json(directory / "proof.json", result)
    return result


def _run_taiwan(settings: BuildEvalConfig, engine, directory: Path, max_tokens: int) -> dict:
    """The Taiwan prompts, answered with the sampling and system prompt `taide chat` gives by default (seeded, so
    a rerun answers the same); each answer checked for language, script and loops."""
    from taide.chat.presets import messages_with_system
    from taide.engines import GenerationParams
    from taide.eval.fidelity import fidelity_many

    path = Path(settings.taiwan_prompts or SAMPLES["taiwan"])
    prompts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    languages = ["en" if p["expect"] == "en" else "zh-TW" for p in prompts]
    system = engine.default_system_prompt
    conversations = [messages_with_system([{"role": "user", "content": p["prompt"]}], system) for p in prompts]
    answers = engine.generate_batch(conversations, GenerationParams(max_tokens=max_tokens, seed=0))
    checked = fidelity_many([a.text for a in answers], languages)
    atomic_write(directory / "taiwan-built.jsonl", "".join(
        json.dumps({**p, "answer": a.text, "fidelity": f}, ensure_ascii=False) + "\n"
        for p, a, f in zip(prompts, answers, checked["items"])))
    return {"built": {**checked["summary"], "system_prompt": system, "prompts": path.name}}


def _run_bench(settings: BuildEvalConfig, engine, run: Path, max_tokens: int) -> dict:
    """taide-bench through `taide eval bench`'s own function: the same files, bench_run.json and report included."""
    from taide.eval.commands import EvalBenchConfig, run_eval_bench
    from taide.eval.judge import Judge, StubJudgeEngine

    judge = None
    if settings.judge_model in ("self", "stub") and not settings.judge_endpoint:
        judge = Judge(engine if settings.judge_model == "self" else StubJudgeEngine())
    config = EvalBenchConfig(run, model=engine.describe()["model"], data=settings.bench,  # None: the sample
                             judge_endpoint=settings.judge_endpoint, judge_model=settings.judge_model,
                             system=settings.system_prompt or "auto", tasks=settings.tasks,
                             generate_only=not (judge or settings.judge_endpoint), max_tokens=max_tokens)
    result = run_eval_bench(config, engine=engine, judge=judge)
    return {"report": {k: str(v) for k, v in result.files.items()}, "runs": [str(run)]}
