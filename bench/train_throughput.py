"""Training throughput on CPU: `taide train sft` against Hugging Face `Trainer` (transformers 5; TRL is not
installed here), the same model, data, optimizer and step budget, measured in one run on this machine.

- Model: the embedded default (SmolLM2-135M-Instruct), dequantized once to a float32 Hugging Face directory
  that both contenders load; float32 on the CPU, every core (torch's default threads), no compile.
- Data: the shipped SFT set (``src/taide/train/data/sft-sample.jsonl``), every conversation rendered once by
  taide's renderer for the model's chat format (ids, and labels on the assistant turns only); both sides
  train on those same ids and labels. Conversations longer than ``--seq-len`` are left out by both.
- Batch: ``--micro-batch-size`` sequences of at most ``--seq-len`` tokens per step, no accumulation.
  taide packs whole conversations into rows of exactly ``seq_len`` tokens (its data path: attention is kept
  inside each conversation through restarting position ids); the Trainer gets one conversation per sequence,
  padded to the longest of its batch by ``DataCollatorForSeq2Seq`` (the standard dynamic padding; labels
  padded with -100). So both have the same budget per step (micro × seq_len positions) and the same number
  of steps; packing, which fills that budget, is taide's advantage and is counted as such.
- Optimizer: torch AdamW (``optim="adamw_torch"`` on the Trainer side: the same implementation taide uses on
  CPU), lr 5e-5, betas (0.9, 0.95), weight decay 0, gradient clipping 1.0, 1 warm-up step then cosine; no
  evaluation, no checkpoint or model saving inside the timed part (taide's end-of-run saving comes after).
- Timing: each contender in a fresh process, ``--rounds`` of each interleaved (the best counts); the wall time from the end of step 1 (warm-up, excluded) to the
  end of the last step, from taide's ``on_step`` and the Trainer's ``on_step_end`` callbacks. "Tokens" are
  the conversations' real tokens (no padding) of the steps timed; "positions" count padding too.

    .venv/bin/python -m bench.train_throughput [--steps 5] [--seq-len 1024] [--micro-batch-size 4] [--rounds 2]
        [--threads N] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "taide" / "train" / "data" / "sft-sample.jsonl"
WORKDIR = Path("/tmp/bench-train/train_throughput")
MODEL = "smollm2-135m"
LR, BETAS, WEIGHT_DECAY, GRAD_CLIP, WARMUP, SEED = 5e-5, (0.9, 0.95), 0.0, 1.0, 1, 0


# --- preparation (the parent process) -----------------------------------------------------------------

def prepare(workdir: Path, seq_len: int) -> dict:
    """The model as a float32 HF directory, the conversations rendered once: (ids, labels) per line."""
    import torch

    from taide.models.loading import HFCodec
    from taide.train.model import load_for_training
    from taide.train.sft_data import load_sft

    model_dir = workdir / "model"
    if not (model_dir / "config.json").is_file():
        model, tokenizer, _ = load_for_training(MODEL, torch.device("cpu"))
        model.save_pretrained(model_dir, safe_serialization=True)
        tokenizer.save_pretrained(model_dir)
        del model
    # Rendered as taide's trainer renders them: from the directory both contenders load.
    _, tokenizer, chat_format = load_for_training(str(model_dir), torch.device("cpu"))
    examples, problems = load_sft([SAMPLE], chat_format, HFCodec(tokenizer), seq_len)
    with (workdir / "examples.jsonl").open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"input_ids": e.input_ids.tolist(), "labels": e.labels.tolist()}) + "\n")
    return {"model_dir": str(model_dir), "examples": len(examples), "left_out": len(problems),
            "tokens": int(sum(len(e.input_ids) for e in examples)), "chat_format": chat_format.name,
            "pad_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            "lengths": [len(e.input_ids) for e in examples]}


def taide_step_tokens(prepared: dict, seq_len: int, rows_per_step: int, steps: int) -> list[tuple[int, int]]:
    """(real tokens, positions) of each of taide's steps: its packing of the same conversations (the trainer
    builds the same SFTDataset: every conversation, the seed's order, rows of seq_len)."""
    import numpy as np

    from taide.train.sft_data import SFTDataset, SFTExample

    examples = [SFTExample(np.zeros(n, np.int64), np.zeros(n, np.int64), "") for n in prepared["lengths"]]
    rows = SFTDataset(examples, seq_len, 0, SEED).pack(0)
    out = []
    for k in range(steps):
        batch = rows[k * rows_per_step:(k + 1) * rows_per_step]
        out.append((sum(prepared["lengths"][i] for row in batch for i in row), len(batch) * seq_len))
    return out


# --- the contenders (each in a process of its own) --------------------------------------------------------

def run_taide(workdir: Path, model_dir: str, seq_len: int, micro: int, steps: int) -> dict:
    from taide.train import TrainConfig, run_train

    out = workdir / "taide-run"
    config = TrainConfig(mode="sft", model=model_dir, data=[str(SAMPLE)], out=str(out), seq_len=seq_len,
                         global_batch_tokens=micro * seq_len, micro_batch_size=micro, epochs=1, max_steps=steps,
                         lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP, warmup_steps=WARMUP,
                         holdout_fraction=0.0, eval_every=0, checkpoint_every=0, log_every=1, seed=SEED)
    stamps, losses = [], []

    def on_step(step, total, values):
        stamps.append(time.perf_counter())
        losses.append(values["loss"])

    result = run_train(config, on_step=on_step)
    assert result.steps == steps, f"taide ran {result.steps} steps, not {steps}"
    return {"stamps": stamps, "losses": losses}


def run_hf(workdir: Path, model_dir: str, seq_len: int, micro: int, steps: int) -> dict:
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainerCallback,
                              TrainingArguments)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    lines = (workdir / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    dataset = [json.loads(line) for line in lines]
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100, return_tensors="pt")
    batches: list[tuple[int, int]] = []

    def collate(features):
        batch = collator(features)
        batches.append((int(batch["attention_mask"].sum()), int(batch["input_ids"].numel())))
        return batch

    stamps, losses = [], []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    args = TrainingArguments(
        output_dir=str(workdir / "hf-run"), per_device_train_batch_size=micro, gradient_accumulation_steps=1,
        max_steps=steps, learning_rate=LR, adam_beta1=BETAS[0], adam_beta2=BETAS[1], weight_decay=WEIGHT_DECAY,
        max_grad_norm=GRAD_CLIP, lr_scheduler_type="cosine", warmup_steps=WARMUP, optim="adamw_torch",
        use_cpu=True, eval_strategy="no", save_strategy="no", report_to="none", logging_steps=1,
        dataloader_num_workers=0, seed=SEED, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate, callbacks=[Stamp()])
    trainer.train()
    assert len(stamps) == steps, f"the Trainer ran {len(stamps)} steps, not {steps}"
    return {"stamps": stamps, "losses": losses, "batches": batches[:steps]}


def run_profile(workdir: Path, model_dir: str, seq_len: int, micro: int, steps: int) -> dict:
    """Where a position's cost differs: forward + backward of the model alone (no optimizer, no loop) on
    taide's first packed batch, on the same ids with plain causal positions (one document per row: no
    block-diagonal mask), and on a Trainer-style padded batch of conversations; best of 2, interleaved."""
    import contextlib

    import torch
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq

    from taide.train import TrainConfig
    from taide.train.datasets import build_datasets
    from taide.train.model import load_for_training
    from taide.train.parallel import World
    from taide.train.trainer import token_loss_sum

    config = TrainConfig(mode="sft", model=model_dir, data=[str(SAMPLE)], out=str(workdir / "profile-run"),
                         seq_len=seq_len, global_batch_tokens=micro * seq_len, micro_batch_size=micro,
                         holdout_fraction=0.0, seed=SEED)
    model, tokenizer, chat_format = load_for_training(model_dir, torch.device("cpu"))
    model.train()
    packed = next(iter(build_datasets(config, tokenizer, chat_format, World(0, 1, 0, torch.device("cpu"))).train))
    causal = dict(packed, position_ids=torch.arange(seq_len).expand_as(packed["input_ids"]).contiguous())
    hf_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if hf_tokenizer.pad_token is None:
        hf_tokenizer.pad_token = hf_tokenizer.eos_token
    lines = (workdir / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    padded = DataCollatorForSeq2Seq(hf_tokenizer, padding="longest", label_pad_token_id=-100,
                                    return_tensors="pt")([json.loads(line) for line in lines[:micro]])

    def taide_step(batch):
        loss, trained = token_loss_sum(model, batch, contextlib.nullcontext)
        (loss / trained).backward()

    def hf_step():
        model(**padded).loss.backward()

    cases = {"taide packed rows (block-diagonal attention)": (lambda: taide_step(packed), packed["input_ids"].numel()),
             "the same rows as single documents (causal attention)": (lambda: taide_step(causal),
                                                                      causal["input_ids"].numel()),
             "Trainer-style padded batch": (hf_step, padded["input_ids"].numel())}
    best = {name: 0.0 for name in cases}
    for _ in range(2):
        for name, (step, positions) in cases.items():
            started = time.perf_counter()
            step()
            model.zero_grad(set_to_none=True)
            best[name] = max(best[name], positions / (time.perf_counter() - started))
    return {"positions_per_s": best, "shapes": {"packed": list(packed["input_ids"].shape),
                                                "padded": list(padded["input_ids"].shape)}}


# --- the comparison ---------------------------------------------------------------------------------------

def contender(name: str, args, prepared: dict) -> dict:
    """Runs one contender in a fresh process; its JSON result."""
    command = [sys.executable, "-m", "bench.train_throughput", "--worker", name, "--steps", str(args.steps),
               "--seq-len", str(args.seq_len), "--micro-batch-size", str(args.micro_batch_size)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, TAIDE_BENCH_MODEL_DIR=prepared["model_dir"]))
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def measure(result: dict, step_tokens: list[tuple[int, int]]) -> dict:
    stamps = result["stamps"]
    seconds = stamps[-1] - stamps[0]  # steps 2..N
    timed = step_tokens[1:]
    tokens, positions = sum(t for t, _ in timed), sum(p for _, p in timed)
    return {"steps": len(timed), "seconds": seconds, "tokens": tokens, "positions": positions,
            "tokens_per_s": tokens / seconds, "positions_per_s": positions / seconds,
            "step_seconds": seconds / len(timed), "fill": tokens / positions,
            "first_loss": result["losses"][0] if result["losses"] else None,
            "process_seconds": result["process_seconds"]}


def report(args, prepared: dict, taide: dict, hf: dict, load: str, profile: dict | None = None) -> str:
    ratio = taide["tokens_per_s"] / hf["tokens_per_s"]
    rows = [("taide train sft (packed rows)", taide), ("HF Trainer (DataCollatorForSeq2Seq, pad to longest)", hf)]
    lines = [
        "## Training throughput: `taide train sft` vs Hugging Face `Trainer`, SmolLM2-135M, float32 CPU",
        "",
        f"The shipped SFT set ({prepared['examples']} conversations of at most {args.seq_len} tokens, "
        f"{prepared['left_out']} longer ones left out by both; {prepared['tokens']:,} tokens), rendered once by "
        f"taide's `{prepared['chat_format']}` chat format, assistant turns trained. Both: the embedded default "
        f"dequantized to float32, {args.steps} optimizer steps of {args.micro_batch_size} sequences × "
        f"{args.seq_len} tokens at most (no accumulation), torch AdamW lr 5e-5, betas (0.9, 0.95), clip 1.0, "
        "no evaluation or saving while timed; each in a fresh process, "
        f"{args.rounds} rounds interleaved (best shown); the first step of each is warm-up, not timed. "
        "taide packs whole conversations into full rows (attention kept inside each); the Trainer pads each "
        "batch to its longest conversation. Tokens are real tokens (no padding); positions include padding.",
        "",
        "| trainer | steps timed | s/step | tokens/s | positions/s | rows filled | tokens/s vs HF |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {m['steps']} | {m['step_seconds']:.2f} | {m['tokens_per_s']:.0f} | "
                     f"{m['positions_per_s']:.0f} | {m['fill']:.0%} | {m['tokens_per_s'] / hf['tokens_per_s']:.2f}× |")
    per_position = taide["positions_per_s"] / hf["positions_per_s"]
    lines += [
        "",
        f"**taide: {ratio:.2f}× the Trainer's tokens/s.** Per position (padding included) taide runs at "
        f"{per_position:.2f}× the Trainer's speed, so the gain is packing: {taide['fill']:.0%} of taide's "
        f"positions are real tokens against {hf['fill']:.0%} of the Trainer's.",
        "",
    ]
    if profile:
        speeds = profile["positions_per_s"]
        shapes = profile["shapes"]
        packed, causal = list(speeds.values())[:2]
        lines += ["Per position, the model alone (forward + backward, no optimizer or loop; best of 2): "
                  + "; ".join(f"{name} {value:.0f} positions/s" for name, value in speeds.items())
                  + f" (packed {shapes['packed'][0]} × {shapes['packed'][1]}, padded {shapes['padded'][0]} × "
                  f"{shapes['padded'][1]}). Keeping attention inside each conversation costs taide "
                  f"{1 - packed / causal:.0%} per position against plain causal attention on the same rows: on the "
                  "CPU, SDPA with a block-diagonal mask computes every score of the row, while causal attention "
                  "skips the upper half (on a GPU with flash-attention, transformers turns packed positions into "
                  "variable-length sequences instead of a mask).", ""]
    lines += [
        f"Load average (1, 5, 15 min) when started: {load}; torch threads: "
        f"{args.threads or 'default (every core)'}.",
        "",
        f"Reproduce: `.venv/bin/python -m bench.train_throughput --steps {args.steps} --seq-len {args.seq_len} "
        f"--micro-batch-size {args.micro_batch_size} --rounds {args.rounds}"
        + (f" --threads {args.threads}" if args.threads else "") + (" --profile" if args.profile else "") + "`",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per contender; the first is warm-up")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each contender, interleaved; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, every core)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    parser.add_argument("--profile", action="store_true",
                        help="also time forward + backward of the model alone on each kind of batch")
    parser.add_argument("--worker", choices=["taide", "hf", "profile"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first is warm-up)")
    WORKDIR.mkdir(parents=True, exist_ok=True)

    if args.worker:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        model_dir = os.environ["TAIDE_BENCH_MODEL_DIR"]
        run = {"taide": run_taide, "hf": run_hf, "profile": run_profile}[args.worker]
        result = run(WORKDIR, model_dir, args.seq_len, args.micro_batch_size, args.steps)
        print(json.dumps(result))
        return

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load}; preparing the model and data in {WORKDIR}", flush=True)
    prepared = prepare(WORKDIR, args.seq_len)
    taide_tokens = taide_step_tokens(prepared, args.seq_len, args.micro_batch_size, args.steps)
    runs: dict[str, list[dict]] = {"taide": [], "hf": []}
    for round_ in range(args.rounds):  # interleaved, the order alternating, so drift hits both alike
        for name in (("taide", "hf") if round_ % 2 == 0 else ("hf", "taide")):
            print(f"round {round_ + 1}: {name} ...", flush=True)
            result = contender(name, args, prepared)
            measured = measure(result, result.pop("batches") if name == "hf" else taide_tokens)
            print(f"  {measured['tokens_per_s']:.1f} tokens/s, {measured['step_seconds']:.2f} s/step", flush=True)
            runs[name].append(measured)
    taide = max(runs["taide"], key=lambda m: m["tokens_per_s"])  # best of the rounds
    hf = max(runs["hf"], key=lambda m: m["tokens_per_s"])
    for name, m in (("taide", taide), ("HF Trainer", hf)):
        print(f"{name:>10}: {m['tokens_per_s']:7.1f} tokens/s  {m['positions_per_s']:7.1f} positions/s  "
              f"{m['step_seconds']:6.2f} s/step  rows {m['fill']:.0%} filled  first loss {m['first_loss']:.3f}  "
              f"(process {m['process_seconds']:.0f} s)")
    print(f"ratio taide / HF tokens/s: {taide['tokens_per_s'] / hf['tokens_per_s']:.2f}x")
    profile = None
    if args.profile:
        print("profile: the model alone on each kind of batch ...", flush=True)
        profile = contender("profile", args, prepared)
        for name, value in profile["positions_per_s"].items():
            print(f"  {name}: {value:.1f} positions/s")
    body = report(args, prepared, taide, hf, load, profile)
    if not args.no_write:
        from bench.report import write_section

        write_section("train-throughput", body)


if __name__ == "__main__":
    main()
