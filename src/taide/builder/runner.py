"""`taide build`: the stages data → cp → sft → export → eval → card, each an artifact directory with a
manifest (:mod:`taide.artifacts`: command, config, versions, plus the stage's input hash, upstream hashes and
result). A stage whose inputs did not change since its complete manifest is skipped; a changed one reruns, and
so does everything after it (their inputs include its result); a killed stage resumes (cleaning and training
resume by themselves)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from taide.artifacts import manifest as artifact_manifest
from taide.artifacts import versions, write_json
from taide.builder import stages as stage_functions
from taide.builder.card import CardStageResult, write_card
from taide.builder.plan import gpu_hours, implied_mfu, model_shape
from taide.builder.recipe import STAGES, BuildError, Recipe, load_build_recipe

RUNNERS = {"data": stage_functions.run_data, "cp": stage_functions.run_cp, "sft": stage_functions.run_sft,
           "export": stage_functions.run_export, "eval": stage_functions.run_eval}
# Each stage's result type: what its manifest records, read back when a rerun skips the stage.
RESULTS = {"data": stage_functions.DataStageResult, "cp": stage_functions.TrainStageResult,
           "sft": stage_functions.TrainStageResult, "export": stage_functions.ExportStageResult,
           "eval": stage_functions.EvalStageResult, "card": CardStageResult}


def _files_fingerprint(paths) -> list:
    found = []
    for path in map(Path, paths if isinstance(paths, list) else [paths]):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found += [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.exists()]
    return found


def stage_settings(recipe: Recipe, stage: str) -> dict | None:
    """The stage's config as its manifest records it (None: the stage is skipped); what the build sets when the stage
    runs is not in it."""
    if stage == "card":
        return {"name": recipe.name, "description": recipe.description}
    section = getattr(recipe, stage)
    return None if section is None else json.loads(json.dumps(dataclasses.asdict(section), default=str))


def enabled_stages(recipe: Recipe) -> list[str]:
    return [s for s in STAGES if s == "card" or getattr(recipe, s) is not None]


def input_hash(recipe: Recipe, stage: str, upstream_hashes: dict) -> str:
    settings = stage_settings(recipe, stage)
    files = []
    if stage == "data":
        files = _files_fingerprint(recipe.data.inputs)
    elif stage == "sft":
        files = _files_fingerprint(recipe.sft_files())
    if stage in ("data", "sft"):  # the evaluation data its training data is checked against
        files += _files_fingerprint(getattr(recipe, stage).decontaminate or [])
    key = {"stage": stage, "settings": settings, "base": recipe.base_model, "upstream": upstream_hashes,
           "files": files, "taide": versions().get("taide")}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_plan(recipe: Recipe) -> dict:
    """What would run, with token counts and, for GPU recipes, the estimated GPU-hours."""
    shape, shape_source = model_shape(recipe.base_model, recipe.base_shape)
    compute = recipe.compute
    rows, training_flops = [], 0.0
    for stage in enabled_stages(recipe):
        row = {"stage": stage}
        if stage == "data":
            inputs = [str(p) for p in recipe.data.inputs]
            row.update(inputs=inputs, input_bytes=sum(f[1] for f in _files_fingerprint(inputs)))
        if stage in ("cp", "sft"):
            config = getattr(recipe, stage)
            seq_len = config.seq_len or 8192
            if recipe.expected_tokens.get(stage):
                tokens, how = recipe.expected_tokens[stage], "given in the recipe"
            elif config.max_steps:
                tokens, how = float(config.max_steps * (config.global_batch_tokens or 1 << 20)), "max_steps × batch"
            else:
                tokens, how = None, "counted when the stage runs"
            flops = shape.flops_per_token(seq_len)
            row.update(tokens=tokens, tokens_from=how, seq_len=seq_len, flops_per_token=flops)
            if tokens:
                training_flops += tokens * flops * config.epochs
            if tokens and compute.device:
                row["gpu_hours"] = gpu_hours(tokens * config.epochs, flops, compute.device, compute.mfu)
        rows.append(row)
    total = sum(r.get("gpu_hours", 0) for r in rows)
    plan = {"recipe": str(recipe.source), "name": recipe.name, "base_model": recipe.base_model,
            "parameters": shape.parameters, "shape_from": shape_source, "out": recipe.out, "stages": rows,
            "compute": dataclasses.asdict(compute), "gpu_hours": total or None}
    if compute.published_gpu_hours and compute.device:
        plan["published"] = {"gpu_hours": compute.published_gpu_hours,
                             "implied_mfu": implied_mfu(training_flops, compute.published_gpu_hours, compute.device),
                             "training_flops": training_flops}
    return plan


@dataclass
class BuildConfig:
    """``taide build``: the card's chain, data → cp → sft → export → eval → card, from one recipe."""
    recipe: Path | None = None  # the build recipe YAML; None: the demo recipe on the embedded model and shipped data
    out_dir: str | None = None  # where the stages' artifacts go; None: the recipe's out
    dry_run: bool = False  # the plan only (stages, tokens, GPU-hours)
    from_stage: str | None = None  # redo this stage and the ones after
    until_stage: str | None = None  # stop after this stage
    smoke: bool = False  # every stage at toy scale, under out_dir or <recipe out>-smoke (taide.builder.smoke)
    probe_endpoints: bool = False  # with smoke: ask the recipe's endpoints whether they answer (else none is contacted)


@dataclass
class BuildResult:
    """What ``taide build`` did: the plan, and (unless a dry run) each stage's result as its manifest holds it."""
    plan: dict  # the stages, their tokens and GPU-hours (make_plan)
    out: str  # where the stages' folders are
    results: dict = field(default_factory=dict)  # stage -> its typed result (builder.stages); empty for a dry run
    smoke: list[str] | None = None  # --smoke: what was made small, one sentence each


def run_build(config: BuildConfig, on_event: Callable[[str, str, dict], None] | None = None) -> BuildResult:
    """Run the recipe (a dry run: plan it only). ``on_event(kind, stage, info)``: kind is smoke, skip, start,
    progress (a training step) or done."""
    recipe_path, out, dry_run, smoke = config.recipe, config.out_dir, config.dry_run, config.smoke
    from_stage, until_stage = config.from_stage, config.until_stage
    recipe = load_build_recipe(recipe_path, None if smoke else out)
    if config.probe_endpoints and not smoke:
        raise BuildError("--probe-endpoints lets a --smoke build contact the recipe's endpoints; without --smoke a "
                         "build uses them anyway")
    if smoke:
        if dry_run:
            raise BuildError("--smoke runs the recipe at toy scale and --dry-run only plans it: choose one")
        from taide.builder.smoke import smoke_recipe

        recipe = smoke_recipe(recipe, out, config.probe_endpoints or recipe.probe_endpoints)
    plan = make_plan(recipe)
    if dry_run:
        return BuildResult(plan, recipe.out)
    stages = enabled_stages(recipe)
    for name, value in (("--from", from_stage), ("--until", until_stage)):
        if value is not None and value not in stages:
            raise BuildError(f"{name} {value}: not a stage of this recipe ({', '.join(stages)})")
    first = stages.index(from_stage) if from_stage else 0
    last = stages.index(until_stage) if until_stage else len(stages) - 1
    root = Path(recipe.out)
    root.mkdir(parents=True, exist_ok=True)
    results, hashes = {}, {}
    event = on_event or (lambda *_: None)
    if recipe.smoke:
        event("smoke", "build", {"changes": recipe.smoke})
    for index, stage in enumerate(stages):
        if index > last:
            break
        directory = root / stage
        manifest_path = directory / "manifest.json"
        digest = input_hash(recipe, stage, dict(hashes))
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
        done = _recorded(manifest, stage, digest)
        redo = from_stage is not None and index >= first
        if done is not None and not redo:
            results[stage], hashes[stage] = done, digest
            event("skip", stage, manifest)
            continue
        if index < first:
            raise BuildError(f"--from {from_stage}: the earlier stage {stage} has no complete result for these "
                             "inputs; run without --from first")
        started = directory / "started.json"
        resumable = started.is_file() and json.loads(started.read_text()).get("inputs_hash") == digest
        if directory.exists() and (redo or not resumable):
            shutil.rmtree(directory)  # other inputs, or asked to redo: nothing of the old run is reused
        directory.mkdir(parents=True, exist_ok=True)
        write_json(started, {"inputs_hash": digest})
        event("start", stage, {})
        began = time.perf_counter()
        if stage == "card":
            result = write_card(recipe, directory, results, plan)
        else:
            result = RUNNERS[stage](recipe, directory, results, lambda values, s=stage: event("progress", s, values))
        # Written last and whole: a complete manifest is what lets a rerun skip this stage.
        manifest = artifact_manifest(shlex.join(sys.argv), stage_settings(recipe, stage), stage=stage,
                                     inputs_hash=digest, complete=True, upstream=dict(hashes),
                                     seconds=round(time.perf_counter() - began, 1), result=dataclasses.asdict(result))
        write_json(manifest_path, manifest)
        results[stage], hashes[stage] = result, digest
        event("done", stage, manifest)
    if "card" in results and not recipe.smoke:  # a smoke build's random-init model is no one's chat default
        _remember(results)
    return BuildResult(plan, str(root), results, recipe.smoke)


def _recorded(manifest: dict | None, stage: str, digest: str):
    """The stage's result from its manifest when that is complete and for these inputs, else None (a manifest an
    older taide wrote, with another result shape, counts as none: the stage reruns)."""
    if not (manifest and manifest.get("complete") and manifest.get("inputs_hash") == digest):
        return None
    try:
        return RESULTS[stage](**manifest["result"])
    except TypeError:
        return None


def _remember(results: dict) -> None:
    """Note the finished build's model, so that commands given no model use it (models.default_model)."""
    from taide.models import remember_build

    export, trained = results.get("export"), results.get("sft") or results.get("cp")
    model = export.path if export else trained.model if trained else None
    if model:
        remember_build(model)
