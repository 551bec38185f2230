"""Checkpoints: everything a run needs to continue exactly — model, optimizer, schedule position, data
position and random-number state — in safetensors and JSON (no pickles). ``OUT/checkpoints/step-N/``
is written under a temporary name and renamed when complete; ``latest`` names the newest."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from taide.train.parallel import World


def _flatten(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict as tensors (``state/<param>/<name>``) and the JSON-able rest."""
    tensors, scalars = {}, {}
    for param, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{param}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param}/{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        _, param, name = key.split("/", 2)
        state.setdefault(param, {})[name] = value
    for key, value in rest["scalars"].items():
        param, name = key.rsplit("/", 1)
        state.setdefault(param, {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def _unshared(weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tied weights (SmolLM2's embedding and output matrix) are one tensor: stored once, with an alias."""
    first: dict[int, str] = {}
    tensors, aliases = {}, {}
    for name, value in weights.items():
        pointer = value.data_ptr()
        if pointer in first:
            aliases[name] = first[pointer]
        else:
            first[pointer] = name
            tensors[name] = value.contiguous()
    return tensors, aliases


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    weights = load_file(path)
    weights.update({name: weights[target] for name, target in aliases.items()})
    return weights


def _trainable(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(directory: Path, step: int, model, optimizer, world: World, progress: dict,
                    trainable_only: bool = False) -> Path:
    """Collective: every process calls it. ``progress`` is JSON (step, schedule, data position)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    optim = get_optimizer_state_dict(model, optimizer, options=options)
    final = directory / f"step-{step}"
    tmp = directory / f".step-{step}.tmp"
    if world.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if trainable_only:  # LoRA: the frozen base comes back from the base model
            keep = _trainable(model)
            weights = {k: v for k, v in weights.items() if k in keep}
        tensors, aliases = _unshared(weights)
        save_file(tensors, tmp / "model.safetensors", metadata={"aliases": json.dumps(aliases)})
        tensors, rest = _flatten(optim)
        save_file(tensors, tmp / "optimizer.safetensors")
        (tmp / "optimizer.json").write_text(json.dumps(rest))
        (tmp / "progress.json").write_text(json.dumps(progress, indent=1))
    world.barrier()
    rng = {"cpu": torch.get_rng_state()}
    if world.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(world.device)
    save_file(rng, tmp / f"rng-rank{world.rank}.safetensors")
    world.barrier()
    if world.main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        (directory / "latest.tmp").write_text(final.name)
        os.replace(directory / "latest.tmp", directory / "latest")
    world.barrier()
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    pointer = directory / "latest"
    if not pointer.is_file():
        return None
    path = directory / pointer.read_text().strip()
    return path if (path / "progress.json").is_file() else None


def load_checkpoint(path: Path, model, optimizer, world: World, trainable_only: bool = False) -> dict:
    """Restore model, optimizer and this process's RNG; returns the progress JSON."""
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=world.size > 1,
                               strict=not trainable_only)
    weights = _load_weights(path / "model.safetensors") if world.main or world.size == 1 else {}
    set_model_state_dict(model, weights, options=options)
    optim = {}
    if world.main or world.size == 1:
        optim = _unflatten(load_file(path / "optimizer.safetensors"),
                           json.loads((path / "optimizer.json").read_text()))
    set_optimizer_state_dict(model, optimizer, optim, options=options)
    rng = load_file(path / f"rng-rank{world.rank}.safetensors")
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and world.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], world.device)
    return json.loads((path / "progress.json").read_text())
