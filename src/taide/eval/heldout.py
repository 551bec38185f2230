"""The held-out proof: does a trained model beat its base on text training never saw? Each comparison scores
the same items with both models and gives a 95% bootstrap interval of the difference, so a gain inside the
noise is reported as such.

- :func:`heldout_losses`: per-row loss on the continued-pretraining held-out split → :func:`perplexity_change`
- :func:`translation_chrf`: sentence chrF on held-out translation pairs (greedy) → :func:`score_change`
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from pathlib import Path


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def bootstrap_diff(a: list[float], b: list[float], rounds: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(b) - mean(a) over items resampled with replacement (a[i] and b[i]: the same item)."""
    rng = random.Random(seed)
    n = len(a)
    diffs = []
    for _ in range(rounds):
        pick = [rng.randrange(n) for _ in range(n)]
        diffs.append(_mean([b[i] for i in pick]) - _mean([a[i] for i in pick]))
    diffs.sort()
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def heldout_losses(rows_path: str | Path, models: dict[str, str],
                   rows_wanted: int) -> dict[str, tuple[list[float], list[int]]]:
    """``{name: (loss sum per row, tokens per row)}`` of each model on the first ``rows_wanted`` held-out rows a
    training run saved (``TrainResult.heldout``, an .npz of packed rows): the same rows for every model, the whole
    vocabulary in every softmax."""
    import numpy as np
    import torch

    from taide.models.loading import load_hf
    from taide.train.trainer import token_loss_sum

    with np.load(rows_path, allow_pickle=False) as saved:
        batch = {name: torch.from_numpy(saved[name][:rows_wanted]) for name in ("input_ids", "labels", "position_ids")}
    rows = {}
    for name, reference in models.items():
        _, model = load_hf(reference)
        losses, counts = [], []
        with torch.no_grad():
            for i in range(len(batch["input_ids"])):  # one item per row, for the bootstrap
                loss, n = token_loss_sum(model, {k: v[i:i + 1] for k, v in batch.items()}, contextlib.nullcontext)
                losses.append(float(loss))
                counts.append(n)
        rows[name] = (losses, counts)
        del model
    return rows


def perplexity_change(base: tuple[list[float], list[int]], other: tuple[list[float], list[int]]) -> dict:
    """Both models' perplexity over the rows, and the interval of the per-row mean loss difference."""
    (base_losses, counts), (other_losses, _) = base, other
    perplexity = lambda losses: math.exp(sum(losses) / sum(counts))  # noqa: E731
    low, high = bootstrap_diff([l / n for l, n in zip(base_losses, counts) if n],
                               [l / n for l, n in zip(other_losses, counts) if n])
    return {"base": perplexity(base_losses), "built": perplexity(other_losses), "rows": len(base_losses),
            "tokens": sum(counts), "loss_diff_95": [low, high], "within_noise": low <= 0 <= high}


def read_pairs(path: str | Path) -> list[dict]:
    """Held-out translation pairs: ``{id, task (zh2en/en2zh), source, reference}`` per JSONL line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def translation_chrf(engine, pairs: list[dict], max_tokens: int) -> tuple[list[str], list[float]]:
    """The engine's greedy translation of each pair (the office-task prompt) and its sentence chrF."""
    from taide.chat.presets import task_messages
    from taide.engines import GenerationParams
    from taide.eval.metrics import sentence_chrf

    prompts = [task_messages(p["task"], p["source"]) for p in pairs]
    answers = engine.generate_batch(prompts, GenerationParams(max_tokens=max_tokens, temperature=0.0))
    outputs = [a.text for a in answers]
    return outputs, [sentence_chrf(o, p["reference"]) for o, p in zip(outputs, pairs)]


def score_change(base: list[float], built: list[float]) -> dict:
    """Both models' mean score over the same items, and the interval of the difference."""
    low, high = bootstrap_diff(base, built)
    return {"base": _mean(base), "built": _mean(built), "pairs": len(base), "diff_95": [low, high],
            "within_noise": low <= 0 <= high}


__all__ = ["bootstrap_diff", "heldout_losses", "perplexity_change", "read_pairs", "score_change", "translation_chrf"]
