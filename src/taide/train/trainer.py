"""The training loop, top to bottom: load the model, build the data, shard, then for each optimizer step
run the micro-batches, clip, step, log, evaluate and checkpoint; at the end write a Hugging Face
directory. The same code runs as one CPU process and under torchrun on many GPUs.

The loss of a step is the sum of per-token cross-entropies over every trained token of the global
batch (all micro-batches, all processes) divided by their number, so packing, micro-batch size and the
number of processes do not change what is optimized.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from taide.artifacts import write_json
from taide.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from taide.train.config import TrainConfig, TrainError
from taide.train.metrics import MetricsLog, flops_per_token, peak_flops
from taide.train.parallel import World, close_world, init_world, shard_model


@dataclass
class TrainResult:
    out: Path  # the Hugging Face directory
    steps: int
    tokens: int
    final_loss: float | None
    heldout_loss: float | None
    heldout_loss_before: float | None
    history: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # the data summary (OUT/data.json): rows, batch, SFT layouts, left out
    heldout: Path | None = None  # the held-out rows (OUT/heldout.npz), for scoring other models on the same rows
    decontamination: dict | None = None  # SFT: what the check against evaluation data found (OUT/decontamination.md)

    @property
    def heldout_perplexity(self) -> float | None:
        return math.exp(self.heldout_loss) if self.heldout_loss is not None else None


def learning_rate(config: TrainConfig, step: int, total: int) -> float:
    """Linear warmup, then cosine decay to lr × min_lr_ratio, or warmup-stable-decay (constant, then a
    linear decay over the last ``decay_fraction`` of the steps). ``step`` counts from 1."""
    warmup = config.warmup_steps if config.warmup_steps is not None else max(1, round(0.03 * total))
    floor = config.lr * config.min_lr_ratio
    if step <= warmup:
        return config.lr * step / warmup
    if config.schedule == "wsd":
        decay_start = total - max(1, round(config.decay_fraction * total))
        if step <= decay_start:
            return config.lr
        return config.lr - (config.lr - floor) * (step - decay_start) / max(1, total - decay_start)
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def token_loss_sum(model, batch: dict, autocast, head=None) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of every position whose next token is trained, and how many there are.

    The labels are shifted (the last position gets -100), not the logits, and the model computes logits only at
    positions where some row of the batch has a trained next token (``logits_to_keep``): in instruction tuning the
    head over a large vocabulary is skipped on prompts. No KV cache: with one, transformers' attention masks ignore
    the packed rows' restarting positions and let documents attend to each other. With ``head`` (a :class:`~taide.train.model.DataHead`) the
    softmax covers only the data's tokens."""
    targets = F.pad(batch["labels"][:, 1:], (0, 1), value=-100)
    keep = (targets != -100).any(0).nonzero().squeeze(1)
    if len(keep) == targets.shape[1]:
        keep = 0  # every position: the model's plain path
    else:
        targets = targets[:, keep]
    with autocast():
        if head is None:
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], logits_to_keep=keep,
                           use_cache=False).logits  # with a cache, transformers does not keep packed rows apart
        else:
            hidden = head.hidden(batch["input_ids"], batch["position_ids"])
            loss = head.loss_sum(hidden if isinstance(keep, int) else hidden[:, keep], targets)
            return loss, int((targets != -100).sum())
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())


def autocast_for(dtype: str, device: torch.device):
    """bf16 autocast where it pays: GPUs, and CPUs with AMX tiles (bf16 matmuls about 8× float32 on 2 cores here);
    float32 elsewhere, where bf16 is emulated and slower."""
    if dtype == "auto":
        # oneDNN runs bf16 on AMX unless its ISA is capped below it (ONEDNN_MAX_CPU_ISA=AVX2, as on a laptop)
        capped = "AMX" not in os.environ.get("ONEDNN_MAX_CPU_ISA", "AMX").upper()
        fast_cpu = (device.type == "cpu" and not capped
                    and getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
        dtype = "bfloat16" if device.type == "cuda" or fast_cpu else "float32"
    if dtype == "bfloat16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def evaluate(model, batches, world: World, autocast) -> float | None:
    """Mean loss per trained token over the held-out batches (all processes together)."""
    was_training = model.training
    model.eval()
    total = count = 0.0
    for batch in batches:
        loss, n = token_loss_sum(model, _to(batch, world.device), autocast)
        total += float(loss)
        count += n
    model.train(was_training)
    total, count = world.all_sum(total), world.all_sum(count)
    return total / count if count else None


def run_train(config: TrainConfig, resume: bool | str = False,
          on_step: Callable[[int, int, dict], None] | None = None) -> TrainResult:
    """Run ``config``; with ``resume``, continue from the newest checkpoint under ``OUT/checkpoints``
    (``resume="if_any"``: when there is one, else start)."""
    from taide.train.model import (DataHead, apply_lora, end_of_turn_from_eos, freeze, load_for_training,
                                   save_hf_directory, simplified_counterparts)
    from taide.train.datasets import build_datasets

    if config.missing():
        raise TrainError(f"nothing to train: {', '.join(config.missing())} not given")
    world = init_world()
    try:
        torch.manual_seed(config.seed)
        out = Path(config.out)
        model, tokenizer, chat_format = load_for_training(config.model, world.device, config.chat_date)
        data = build_datasets(config, tokenizer, chat_format, world)  # sets seq_len and the batch when not given
        heldout_rows = data.save_heldout(out / "heldout.npz") if world.main else None
        accumulation = config.accumulation(world.size)
        if config.end_of_turn_from_eos and config.mode == "sft":
            end_of_turn_from_eos(model, tokenizer, chat_format)
        freeze(model, config)
        if config.lora is not None:
            model = apply_lora(model, config.lora)
        if config.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        head = None
        if config.head_vocabulary == "data":
            if world.size > 1:
                raise TrainError("head_vocabulary: data is for one process; under torchrun (FSDP2) the output layer "
                                 "is sharded across processes: use head_vocabulary: full")
            targets = data.target_ids()
            head = DataHead(model, sorted(set(targets.tolist()) | simplified_counterparts(targets, tokenizer)),
                            world.device, config.head_full_share)
            data.summary["head_rows"] = len(head.ids)
            if world.main:
                write_json(out / "data.json", data.summary)
                print(f"taide train: the loss's softmax covers the {len(head.ids):,} tokens the data holds (and their "
                      f"Simplified forms), of {head.index.shape[0]:,} (head_vocabulary: data)", file=sys.stderr,
                      flush=True)
        flops = flops_per_token(model, config.seq_len, None if head is None else len(head.ids))
        model = shard_model(model, world)
        if config.compile:
            model.compile()
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
                                      fused=world.device.type == "cuda")
        autocast = autocast_for(config.dtype, world.device)

        total = data.steps
        if config.max_steps:
            total = min(total, config.max_steps)
        checkpoints = out / "checkpoints"
        step = 0
        found = latest_checkpoint(checkpoints) if resume else None
        if resume is True and found is None:
            raise TrainError(f"--resume: no checkpoint under {checkpoints}")
        if found is not None:
            progress = load_checkpoint(found, model, optimizer, world, trainable_only=config.lora is not None)
            step = progress["step"]
            data.train.load_state_dict(progress["data"][world.rank])
        log = MetricsLog(out, enabled=world.main, resume=found is not None,
                         resume_step=step if found is not None else None)
        heldout_before = evaluate(model, data.heldout(config.eval_batches), world, autocast) if step == 0 else None
        if heldout_before is not None:
            log.log(0, {"eval_loss": heldout_before, "eval_perplexity": math.exp(heldout_before)})
        peak = peak_flops(world.device)
        batches = iter(data.train)
        loss_value = heldout = None
        tokens_seen = step * config.global_batch_tokens
        while step < total:
            step += 1
            started = time.perf_counter()
            lr = learning_rate(config, step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            micro = [_to(next(batches), world.device) for _ in range(accumulation)]
            trained = world.all_sum(sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro))
            if trained == 0:
                raise TrainError(f"step {step}: the global batch has no trained tokens")
            step_loss = 0.0
            for i, batch in enumerate(micro):
                if world.size > 1:  # reduce gradients once per step, after the last micro-batch
                    model.set_requires_gradient_sync(i == len(micro) - 1)
                loss, _ = token_loss_sum(model, batch, autocast, head)
                # FSDP averages gradients over processes; × world size makes it the global sum / trained.
                (loss * world.size / trained).backward()
                step_loss += float(loss.detach())
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = world.all_sum(step_loss) / trained
            if world.device.type == "cuda":
                torch.cuda.synchronize(world.device)
            seconds = time.perf_counter() - started
            tokens_seen += config.global_batch_tokens
            tokens_per_second = config.global_batch_tokens / seconds
            values = {"loss": loss_value, "lr": lr, "grad_norm": float(grad_norm), "tokens_per_second": tokens_per_second,
                      "tokens": tokens_seen}
            if peak:
                values["mfu"] = tokens_per_second * flops / (peak * world.size)
            if config.eval_every and step % config.eval_every == 0 and step < total:
                heldout = evaluate(model, data.heldout(config.eval_batches), world, autocast)
                if heldout is not None:
                    values.update(eval_loss=heldout, eval_perplexity=math.exp(heldout))
            if step % config.log_every == 0 or "eval_loss" in values:
                log.log(step, values)
            if on_step and world.main:
                on_step(step, total, values)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total:
                save_checkpoint(checkpoints, step, model, optimizer, world,
                                {"step": step, "data": _gathered_data_state(data, world)},
                                trainable_only=config.lora is not None)
        heldout = evaluate(model, data.heldout(config.eval_batches), world, autocast)
        if heldout is not None:
            log.log(step, {"eval_loss": heldout, "eval_perplexity": math.exp(heldout)})
        save_checkpoint(checkpoints, step, model, optimizer, world,
                        {"step": step, "data": _gathered_data_state(data, world)},
                        trainable_only=config.lora is not None)
        model_dir = save_hf_directory(model, tokenizer, chat_format, config, world, out / "model")
        if world.main:
            log.plot(out / "loss.png", f"taide train {config.mode}: {Path(config.model).name}")
        history = log.records()
        log.close()
        return TrainResult(model_dir, step, tokens_seen, loss_value, heldout, heldout_before, history, data.summary,
                           heldout_rows, data.decontamination)
    finally:
        close_world(world)


def _gathered_data_state(data, world: World) -> list[dict]:
    """Every process's data position (each reads its own part of the global batch)."""
    state = data.train.state_dict()
    if world.size == 1:
        return [state]
    import torch.distributed as dist

    states = [None] * world.size
    dist.all_gather_object(states, state)
    return states
