"""The build's stages. Each takes the recipe and the earlier stages' results, does its work in its own
directory by calling the component that owns it (data, train, export, eval) with its section of the recipe, and
returns its typed result, which its manifest records and the next stages read (the cleaned corpus → the trained
model → the exported file). Nothing here re-implements those components."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from taide.artifacts import atomic_write, write_json
from taide.builder.recipe import BuildEvalConfig, Recipe
from taide.train.config import TrainConfig


@dataclass
class DataStageResult:
    """What the data stage's `taide data clean` did: every input record accounted for."""
    output: str  # the cleaned shards' folder, which cp trains on
    read: int
    kept: int
    unreadable: int
    removed: dict  # "stage:reason" -> documents
    stages: dict  # each cleaning stage's counters
    sources: dict  # per source: read, kept, removed
    decontamination: dict | None  # what the check against evaluation data found; None: no check


@dataclass
class TrainStageResult:
    """What a cp or sft stage's training did."""
    model: str  # the trained HF directory, which the next stage starts from
    steps: int
    tokens: int
    final_loss: float | None
    heldout_loss_before: float | None
    heldout_loss: float | None
    heldout_rows: int | None
    processes: int
    conversations: dict | None  # sft: the files' layouts and what was left out
    decontamination: dict | None  # sft: what the check against evaluation data found
    heldout: str | None  # the held-out rows (.npz), which the eval stage scores the models on
    hyperparameters: dict  # the TrainConfig trained with, but its data, out and model


@dataclass
class ExportStageResult:
    path: str  # the GGUF file or HF directory
    format: str
    quant: str | None
    size_bytes: int
    bits_per_weight: float | None
    modelfile: str | None
    verification: dict | None  # the GGUF against its source, when the recipe verifies


def run_data(recipe: Recipe, directory: Path, upstream: dict, report=None) -> DataStageResult:
    from taide.data import run_clean

    result = run_clean(replace(recipe.data, out_dir=directory / "cleaned", keep_rejected=directory / "rejected"))
    return DataStageResult(str(result.output), result.read, result.kept, result.unreadable, result.removed,
                           result.report["stages"], result.report["sources"], result.decontamination)


def _train(recipe: Recipe, config: TrainConfig, report=None) -> TrainStageResult:
    from taide.train import run_train
    from taide.train.launch import train_in_processes

    processes = recipe.launch.train_processes
    if processes > 1:
        result = train_in_processes(config, processes)
    else:
        on_step = (lambda step, total, values: report({"step": step, "total": total, **values})) if report else None
        result = run_train(config, resume="if_any", on_step=on_step)
    return TrainStageResult(
        str(result.out), result.steps, result.tokens, result.final_loss, result.heldout_loss_before,
        result.heldout_loss, result.data.get("heldout_rows"), processes, result.data.get("conversations"),
        result.decontamination, str(result.heldout) if result.heldout else None,
        {k: v for k, v in config.to_dict().items() if k not in ("data", "out", "model")})


def run_cp(recipe: Recipe, directory: Path, upstream: dict, report=None) -> TrainStageResult:
    corpus = [upstream["data"].output]
    return _train(recipe, replace(recipe.cp, model=recipe.base_model, data=corpus, out=str(directory)), report)


def run_sft(recipe: Recipe, directory: Path, upstream: dict, report=None) -> TrainStageResult:
    model = upstream["cp"].model if "cp" in upstream else recipe.base_model
    return _train(recipe, replace(recipe.sft, model=model, out=str(directory)), report)


def built_model(upstream: dict, recipe: Recipe) -> str:
    """The build's trained model: sft's, else cp's, else the base."""
    for stage in ("sft", "cp"):
        if stage in upstream:
            return upstream[stage].model
    return recipe.base_model


def run_export(recipe: Recipe, directory: Path, upstream: dict, report=None) -> ExportStageResult:
    from taide.export import run_export

    result = run_export(replace(recipe.export, model=built_model(upstream, recipe), out=directory, overwrite=True))
    return ExportStageResult(str(result.path), result.format, result.quant, result.size_bytes, result.bits_per_weight,
                             str(result.modelfile) if result.modelfile else None,
                             result.verification.to_dict() if result.verification is not None else None)


# --- evaluation: the built model against the base on what the build never trained on ---------------

@dataclass
class EvalStageResult:
    proof: dict  # held-out perplexity and chrF, base against built
    taiwan: dict  # the Taiwan prompts: language, script, loops
    bench: dict  # taide-bench: the report's files
    models: dict  # base and built: what was evaluated


def run_eval(recipe: Recipe, directory: Path, upstream: dict, report=None) -> EvalStageResult:
    from taide.engines import load_engine
    from taide.eval import heldout

    settings = recipe.eval
    max_tokens = settings.max_tokens
    say = (lambda text: report({"note": text})) if report else (lambda text: None)
    export = upstream.get("export")
    built_gguf = export.path if export is not None and export.format == "gguf" else None
    models = {"base": recipe.base_model, "built": built_gguf or built_model(upstream, recipe)}
    proof: dict = {}

    # 1. Perplexity on held-out corpus documents: the built model, and the continued-pretraining stage's model
    # when instruction tuning followed (what CP gained on corpus text, and what SFT kept of it).
    cp = upstream.get("cp")
    if cp is not None and cp.heldout:
        compared = {"base": recipe.base_model, "built": built_model(upstream, recipe)}
        if compared["built"] != cp.model:
            compared["cp"] = cp.model
        say(f"held-out perplexity of {', '.join(compared)}")
        losses = heldout.heldout_losses(cp.heldout, compared, settings.heldout_rows)
        for name, key in (("built", "heldout_perplexity"), ("cp", "heldout_perplexity_cp")):
            if name in losses:
                proof[key] = heldout.perplexity_change(losses["base"], losses[name])

    # 2. chrF on held-out translation pairs (both models, greedy); 3. Taiwan prompts and 4. taide-bench (the built
    # model: a pretrained base does not answer instructions, and its rambling would double the stage's time).
    pairs = heldout.read_pairs(settings.heldout_pairs)
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
    result = EvalStageResult(proof, taiwan, bench, models)
    write_json(directory / "proof.json", asdict(result))
    return result


def _run_taiwan(settings: BuildEvalConfig, engine, directory: Path, max_tokens: int) -> dict:
    """The Taiwan prompts, answered with the sampling and system prompt `taide chat` gives by default (seeded, so
    a rerun answers the same); each answer checked for language, script and loops."""
    from taide.chat.presets import messages_with_system
    from taide.engines import GenerationParams
    from taide.eval.fidelity import fidelity_many

    path = Path(settings.taiwan_prompts)
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
    config = EvalBenchConfig(run, model=engine.describe()["model"], data=settings.bench,
                             judge_endpoint=settings.judge_endpoint, judge_model=settings.judge_model,
                             system=settings.system_prompt, tasks=settings.tasks,
                             generate_only=not (judge or settings.judge_endpoint), max_tokens=max_tokens)
    result = run_eval_bench(config, engine=engine, judge=judge)
    return {"report": {k: str(v) for k, v in result.files.items()}, "runs": [str(run)]}
