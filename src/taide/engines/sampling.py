"""Next-token choice for the transformers engine, row by row with each request's own parameters:
repetition penalty (over prompt and answer), temperature, top-k, min-p, top-p, then a seeded draw."""

from __future__ import annotations

import torch

from taide.engines.params import GenerationParams


def penalize_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty: seen tokens' positive logits are divided by ``penalty``, negative ones multiplied.
    ``seen`` is a [batch, vocab] boolean mask."""
    if penalty == 1.0:
        return logits
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


MIN_TEMPERATURE = 1e-4  # below this the draw is greedy anyway; dividing by less overflows float32 to inf


def filter_logits(logits: torch.Tensor, params: GenerationParams) -> torch.Tensor:
    logits = logits / max(params.temperature, MIN_TEMPERATURE)
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.min_p > 0:  # keep tokens at least min_p as likely as the likeliest: log p ≥ log p_max + log min_p
        floor = logits.max(dim=-1, keepdim=True).values + torch.log(torch.tensor(params.min_p))
        logits = logits.masked_fill(logits < floor, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= params.top_p  # keeps the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def choose_next(logits: torch.Tensor, seen: torch.Tensor, params: list[GenerationParams],
                generators: list[torch.Generator]) -> torch.Tensor:
    """One token id per row of ``logits`` ([batch, vocab]); each row has its own parameters and generator."""
    logits = logits.float()
    if all(p.greedy and p.repetition_penalty == 1.0 for p in params):
        return logits.argmax(dim=-1)
    chosen = []
    for i, (p, g) in enumerate(zip(params, generators)):
        row = penalize_repeats(logits[i:i + 1], seen[i:i + 1], p.repetition_penalty)
        probs = None if p.greedy else torch.softmax(filter_logits(row, p), dim=-1)[0]
        if probs is None or not torch.isfinite(probs).all():
            # Greedy, or parameters so extreme (a penalty of 1e-300) that the division overflowed: their limit is
            # the most likely token.
            chosen.append(torch.nan_to_num(row, nan=float("-inf")).argmax(dim=-1))
        else:
            chosen.append(torch.multinomial(probs, 1, generator=g))
    return torch.cat(chosen)
