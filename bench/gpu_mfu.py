"""Tokens/s and MFU of taide's training step on one GPU, for Llama 3 shapes at the card's 8K context:
Llama-3.2-1B and Llama-3.2-3B full fine-tuning, Llama-3-8B with LoRA (r 16 on every projection).

Random-init weights built on the GPU from the published configs (no downloads), float32 master weights with
bf16 autocast, as ``taide train`` runs on a GPU; one sequence of 8192 random tokens per step. The step is the
trainer's: ``taide.train.trainer.token_loss_sum`` under the trainer's autocast, the loss divided by the
trained tokens, gradient clipping, the trainer's AdamW settings (fused on CUDA) and learning-rate schedule;
LoRA through ``taide.train.model.apply_lora`` and activation checkpointing as the trainer enables it. Each case:
``--warmup`` steps, then ``--steps`` timed steps (CUDA-synchronized wall time).

MFU = tokens/s × ``taide.train.metrics.flops_per_token`` / ``peak_flops`` (dense bf16 peak of the device):
6 × non-embedding parameters + the attention term, as the trainer logs it. Recomputation by activation
checkpointing is not counted (it is overhead, not model FLOPs). For LoRA, 6N counts the weight gradients of
the frozen weights, which are never computed; the table also gives MFU at 4N (forward + input gradients).

Activation checkpointing: off for 1B (retried with it on if the step runs out of memory), on for 3B and 8B.

    .venv/bin/python -m bench.gpu_mfu [--warmup 2] [--steps 5] [--only 1B,3B,8B-lora] [--no-write]
    .venv/bin/python -m bench.gpu_mfu --dry-run   # no GPU: tiny shapes through the same code on the CPU,
                                                  # and the real shapes' parameter and FLOP counts (meta device)

It needs a CUDA GPU (about 80 GB for the 3B full fine-tune); the three cases take about 3 minutes on an H100.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from dataclasses import dataclass

import torch

SEQ_LEN = 8192
VOCAB = 128256
LLAMA31_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}
# The published configs (Hugging Face config.json of each model), the shape-relevant fields.
SHAPES = {
    "Llama-3.2-1B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, vocab_size=VOCAB, tie_word_embeddings=True,
                         rope_theta=500000.0, rope_scaling=LLAMA31_ROPE, max_position_embeddings=131072),
    "Llama-3.2-3B": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                         num_key_value_heads=8, head_dim=128, vocab_size=VOCAB, tie_word_embeddings=True,
                         rope_theta=500000.0, rope_scaling=LLAMA31_ROPE, max_position_embeddings=131072),
    "Llama-3-8B": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, head_dim=128, vocab_size=VOCAB, tie_word_embeddings=False,
                       rope_theta=500000.0, max_position_embeddings=8192),
    # --dry-run: the same kinds of model, tiny (tied and untied embeddings, grouped-query attention).
    "tiny-tied": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, vocab_size=512, tie_word_embeddings=True,
                      max_position_embeddings=256),
    "tiny-untied": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=16, vocab_size=512, tie_word_embeddings=False,
                        max_position_embeddings=256),
}
# (the number of parameters each published model has: a check on the shapes above)
PUBLISHED_PARAMS = {"Llama-3.2-1B": 1.236e9, "Llama-3.2-3B": 3.213e9, "Llama-3-8B": 8.030e9}


@dataclass
class Case:
    key: str  # for --only
    shape: str
    lora: bool
    checkpointing: bool
    retry_with_checkpointing: bool = False


CASES = [Case("1B", "Llama-3.2-1B", False, False, retry_with_checkpointing=True),
         Case("3B", "Llama-3.2-3B", False, True),
         Case("8B-lora", "Llama-3-8B", True, True)]
DRY_CASES = [Case("1B", "tiny-tied", False, False), Case("3B", "tiny-tied", False, True),
             Case("8B-lora", "tiny-untied", True, True)]


def build(shape: str, device: torch.device, lora: bool, checkpointing: bool):
    """A random-init Llama of ``shape`` on ``device`` in float32, prepared as taide's trainer prepares a model:
    no KV cache, LoRA adapters (taide's defaults: r 16 on every projection), activation checkpointing."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from taide.train.config import LoraConfig
    from taide.train.model import apply_lora

    config = LlamaConfig(**SHAPES[shape], use_cache=False, attention_dropout=0.0)
    torch.manual_seed(0)
    with device:
        model = LlamaForCausalLM(config)
    if device.type != "meta":
        model = model.to(device=device, dtype=torch.float32)
    if lora:
        model = apply_lora(model, LoraConfig())
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def flop_counts(model, seq_len: int) -> tuple[float, float]:
    """(FLOPs per token as the trainer counts them, the same without the frozen weights' weight gradients)."""
    from taide.train.metrics import flops_per_token

    flops = flops_per_token(model, seq_len)
    embedding = model.get_input_embeddings().weight
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad and p is not embedding)
    if getattr(model.config, "tie_word_embeddings", False) and not embedding.requires_grad:
        frozen += embedding.numel()  # the tied output projection is a frozen matmul too
    return flops, flops - 2 * frozen


def measure(case: Case, device: torch.device, seq_len: int, warmup: int, steps: int, checkpointing: bool) -> dict:
    from taide.train.config import TrainConfig
    from taide.train.trainer import learning_rate, token_loss_sum

    model = build(case.shape, device, case.lora, checkpointing)
    model.train()
    flops, flops_lora = flop_counts(model, seq_len)
    params = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    # The trainer's optimizer and schedule settings (the 8B CP recipe's lr, betas, weight decay, clipping).
    config = TrainConfig(mode="cp", model=case.shape, data=[], out="-", seq_len=seq_len, global_batch_tokens=seq_len,
                         micro_batch_size=1, lr=1e-4, warmup_steps=1)
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16)

    generator = torch.Generator(device="cpu").manual_seed(0)
    vocab = model.config.vocab_size

    def batch():
        ids = torch.randint(0, vocab, (1, seq_len), generator=generator).to(device)
        return {"input_ids": ids, "labels": ids, "position_ids": torch.arange(seq_len, device=device)[None]}

    total = warmup + steps
    times, loss_value = [], None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(1, total + 1):
        data = batch()
        sync(device)
        started = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, total)
        trained = int((data["labels"][:, 1:] != -100).sum())
        loss, _ = token_loss_sum(model, data, autocast)
        (loss / trained).backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach()) / trained
        sync(device)
        if step > warmup:
            times.append(time.perf_counter() - started)
    seconds = sorted(times)[len(times) // 2]  # the median step
    peak_memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    checks = {"trainable": sum(p.numel() for p in trainable),
              "checkpointing_on": any(getattr(m, "gradient_checkpointing", False) for m in model.modules())}
    del model, optimizer, trainable
    return {**checks, "params": params, "flops": flops, "flops_lora": flops_lora, "seconds": seconds,
            "tokens_per_s": seq_len / seconds, "loss": loss_value, "peak_gib": peak_memory,
            "checkpointing": checkpointing}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_case(case: Case, device: torch.device, seq_len: int, warmup: int, steps: int) -> dict:
    """The case's measurement; without activation checkpointing first when the case allows, with it after an
    out-of-memory error; ``{"oom": True}`` when even that does not fit (the other cases still run)."""
    for checkpointing in ([False, True] if case.retry_with_checkpointing else [case.checkpointing]):
        try:
            return measure(case, device, seq_len, warmup, steps, checkpointing)
        except torch.OutOfMemoryError:
            pass
        # Out of the except block: the failed attempt's traceback, and with it its tensors, are gone.
        free(device)
        print(f"  {case.shape}: out of memory with activation checkpointing {'on' if checkpointing else 'off'}",
              flush=True)
    return {"oom": True, "checkpointing": True}


def check_real_shapes() -> list[str]:
    """The published shapes on the meta device: parameter counts against the published ones, and FLOPs per token."""
    from taide.train.metrics import flops_per_token

    lines = []
    for shape, published in PUBLISHED_PARAMS.items():
        model = build(shape, torch.device("meta"), lora=False, checkpointing=False)
        params = sum(p.numel() for p in model.parameters())
        if abs(params - published) / published > 0.005:
            raise SystemExit(f"{shape}: {params:,} parameters, the published model has {published:,.0f}")
        lines.append(f"  {shape}: {params / 1e9:.3f}B parameters, {flops_per_token(model, SEQ_LEN):.3e} FLOPs/token "
                     f"at {SEQ_LEN}")
    return lines


def table(rows: list[tuple[Case, dict]], peak: float | None, seq_len: int) -> str:
    lines = ["| model | training | activation checkpointing | step (median) | tokens/s | model TFLOP/s | MFU "
             "(trainer's 6N) | MFU (LoRA: 4N) | peak memory |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, r in rows:
        if r.get("oom"):
            lines.append(f"| {case.shape} | {'LoRA r 16' if case.lora else 'full'} | on | out of memory | | | | | |")
            continue
        tflops = r["tokens_per_s"] * r["flops"] / 1e12
        mfu = f"{r['tokens_per_s'] * r['flops'] / peak:.1%}" if peak else "n/a"
        mfu4 = (f"{r['tokens_per_s'] * r['flops_lora'] / peak:.1%}" if peak else "n/a") if case.lora else "—"
        memory = f"{r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else "n/a"
        kind = "LoRA r 16" if case.lora else "full"
        lines.append(f"| {case.shape} ({r['params'] / 1e9:.2f}B) | {kind} | {'on' if r['checkpointing'] else 'off'} | "
                     f"{r['seconds']:.3f} s | {r['tokens_per_s']:,.0f} | {tflops:.0f} | {mfu} | {mfu4} | {memory} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated cases: 1B, 3B, 8B-lora")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny shapes on the CPU (or the GPU when there is one), nothing written")
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args(argv)

    if args.dry_run:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        cases, seq_len, warmup, steps = DRY_CASES, 128, 1, 1
        print("dry run: the published shapes (meta device, nothing allocated)")
        print("\n".join(check_real_shapes()))
    else:
        if not torch.cuda.is_available():
            raise SystemExit("bench.gpu_mfu needs a CUDA GPU (torch.cuda.is_available() is False here: "
                             f"torch {torch.__version__}). Run it on a GPU machine, or check the code path on "
                             "this one with --dry-run (tiny shapes on the CPU).")
        device = torch.device("cuda")
        cases, seq_len, warmup, steps = CASES, SEQ_LEN, args.warmup, args.steps
    if args.only:
        wanted = {k.strip() for k in args.only.split(",")}
        unknown = wanted - {c.key for c in cases}
        if unknown:
            parser.error(f"--only: unknown case {', '.join(sorted(unknown))}; known: 1B, 3B, 8B-lora")
        cases = [c for c in cases if c.key in wanted]

    from taide.train.metrics import peak_flops

    peak = peak_flops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; dense bf16 peak: {f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown (no MFU)'}; "
          f"seq_len {seq_len}, {warmup} warm-up + {steps} timed steps per case", flush=True)
    rows = []
    started = time.perf_counter()
    for case in cases:
        t = time.perf_counter()
        result = run_case(case, device, seq_len, warmup, steps)
        free(device)
        rows.append((case, result))
        if result.get("oom"):
            continue
        print(f"  {case.shape} {'LoRA' if case.lora else 'full'}: {result['tokens_per_s']:,.0f} tokens/s, "
              f"loss {result['loss']:.3f}, {time.perf_counter() - t:.0f} s", flush=True)
    body = table(rows, peak, seq_len)
    print(body)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.dry_run:
        for case, r in rows:
            assert math.isfinite(r["loss"]), f"{case.key}: the loss is {r['loss']}"
            assert r["checkpointing_on"] == case.checkpointing, f"{case.key}: activation checkpointing not as asked"
            assert (r["trainable"] < 0.2 * r["params"]) == case.lora, f"{case.key}: {r['trainable']} trainable"
            assert r["flops_lora"] < r["flops"] if case.lora else True
        print("dry run OK: model building, LoRA, activation checkpointing, the step and the FLOP counts run")
        return
    if not args.no_write:
        from bench.report import write_section

        text = (f"## GPU MFU: taide's training step, Llama 3 shapes, one {name}\n\n"
                f"Random-init weights from the published configs, float32 master weights with bf16 autocast "
                f"(as `taide train` runs on a GPU), one sequence of {seq_len} tokens per step, {warmup} warm-up "
                f"and {steps} timed steps per case (median shown); the trainer's loss (`token_loss_sum`), fused "
                "AdamW, gradient clipping and schedule; no torch.compile. MFU = tokens/s × "
                "`flops_per_token` (6 × non-embedding parameters + attention, torchtitan's count) / the device's "
                f"dense bf16 peak ({peak / 1e12:.0f} TFLOP/s); activation checkpointing's recomputation is not "
                "counted. For LoRA, 6N includes weight gradients of frozen weights that are never computed; "
                "4N leaves them out.\n\n"
                + body + "\n\nReproduce: `.venv/bin/python -m bench.gpu_mfu`")
        write_section("gpu-mfu", text)


if __name__ == "__main__":
    sys.exit(main())
