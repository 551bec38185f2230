"""Training metrics: FLOPs per token and MFU (torchtitan's accounting), and where the numbers go — the
console, a JSONL file, TensorBoard, and a loss-curve PNG at the end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

# Dense bf16 peak FLOP/s of common accelerators (no sparsity), by a substring of the device name.
PEAK_BF16 = {"H200": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12, "H800": 989e12,
             "GH200": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 125e12,
             "RTX 4090": 165e12, "MI300X": 1307e12, "MI250X": 383e12}


def attended_positions(config: dict, seq_len: int) -> int:
    """Positions all layers attend to per token, summed over layers: ``seq_len`` for a full-attention layer, at most
    the window for a sliding-window one (Gemma 3: five of every six layers see 1,024 tokens, so at 128K context
    its attention costs a sixth of a full-attention model's). ``config``: config.json's fields."""
    layers = config["num_hidden_layers"]
    window = config.get("sliding_window")
    types = config.get("layer_types")
    if not window or (types is None and not config.get("sliding_window_pattern")):
        return layers * seq_len
    if types is None:  # every Nth layer global (sliding_window_pattern = N)
        pattern = config["sliding_window_pattern"]
        types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(layers)]
    return sum(seq_len if kind == "full_attention" else min(seq_len, window) for kind in types)


def flops_per_token(model, seq_len: int, head_rows: int | None = None) -> float:
    """6 × parameters (forward + backward, input embedding excluded: a lookup, not a matmul) plus the
    attention term 12 × heads × head_dim × attended positions (:func:`attended_positions`), as torchtitan counts.
    Llama 3 8B at 8K context: 6 × 7.50e9 + 12 × 32 × 32 × 128 × 8192 ≈ 5.8e10. ``head_rows``: the output layer
    computes only that many of its rows (``head_vocabulary: data``)."""
    config = model.config
    embedding = model.get_input_embeddings().weight.numel()
    params = sum(p.numel() for p in model.parameters()) - embedding
    if getattr(config, "tie_word_embeddings", False):
        params += embedding  # the tied matrix still does the output projection's matmul
    if head_rows is not None:
        output = model.get_output_embeddings().weight
        params -= output.numel() - head_rows * output.shape[1]
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 6 * params + 12 * config.num_attention_heads * head_dim * attended_positions(config.to_dict(), seq_len)


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, or None when unknown (CPUs: MFU is not reported)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


class MetricsLog:
    """Writes every logged step to ``metrics.jsonl`` and TensorBoard (when installed); ``plot()`` draws
    the loss curves."""

    def __init__(self, directory: Path, enabled: bool = True, resume: bool = False, resume_step: int | None = None):
        """``resume``: append to the run's log; ``resume_step``: the checkpoint's step, whose later records
        (logged before the run stopped, trained again now) are dropped, in the JSONL and in TensorBoard."""
        self.path = directory / "metrics.jsonl"
        self.enabled = enabled
        self.board = None
        if not enabled:
            return
        directory.mkdir(parents=True, exist_ok=True)
        if not resume and self.path.exists():
            self.path.unlink()
        if resume and resume_step is not None and self.path.exists():
            kept = [r for r in self.records() if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume and resume_step is not None else None
            self.board = SummaryWriter(str(directory / "tensorboard"), purge_step=purge)
        except ImportError:
            pass

    def log(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.board is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.board.add_scalar(key, value, step)

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]

    def plot(self, png: Path, title: str) -> Path | None:
        """Training and held-out loss against the step."""
        records = self.records()
        if not self.enabled or not records:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
        train = [(r["step"], r["loss"]) for r in records if "loss" in r]
        held = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
        if train:
            ax.plot(*zip(*train), label="training loss", linewidth=1.2)
        if held:
            ax.plot(*zip(*held), "o-", label="held-out loss", linewidth=1.2)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (nats/token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(png)
        plt.close(fig)
        return png

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
