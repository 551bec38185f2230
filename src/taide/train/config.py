"""A training run's settings: one dataclass, filled from a YAML recipe and then from command-line flags
of the same names. The batch is given in tokens, as the card gives it (1M tokens for continued
pretraining, 256K for instruction tuning); gradient accumulation follows from it. A run that gives no
``seq_len`` or ``global_batch_tokens`` gets values its data can fill, chosen when the data is tokenized
(``taide.train.datasets.choose_batch``): the card's 8B values live in the card's recipes, not here, since
a small file cannot fill one of its 1M-token batches."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


from taide.errors import TaideError


class TrainError(TaideError):
    """A training recipe, dataset or run that cannot be used."""


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int | None = None  # None: 2 × r
    dropout: float = 0.0
    # Every linear layer of the blocks (peft's "all-linear"): the same rule for Llama's separate q/k/v/gate/up and
    # Phi-3's fused qkv_proj and gate_up_proj; the output head is never adapted.
    target_modules: list[str] | str = "all-linear"

    def __post_init__(self):
        if self.r < 1:
            raise TrainError(f"lora.r: must be at least 1, got {self.r}")
        if self.alpha is None:
            self.alpha = 2 * self.r


@dataclass
class TrainConfig:
    mode: str  # "cp" (continued pretraining) or "sft" (instruction tuning)
    # model, data and out are required to train; a build recipe's cp and sft leave them to the build, which trains
    # its base (or the cp stage's model) on its data stage's output (or the sft section's data) into its stage folder.
    model: str | None = None  # a model reference: embedded name, HF directory or GGUF file
    data: list[str] | dict[str, list[str] | str] | str | None = None  # files/dirs, or {source: files} mixed by mix
    out: str | None = None
    mix: dict[str, float] | None = None  # source -> weight (CP)
    text_field: str = "text"
    seq_len: int | None = None  # tokens per row; None: chosen from the data (≤ 2048 and the model's context)
    global_batch_tokens: int | None = None  # tokens per optimizer step; None: chosen so an epoch has ~10 steps
    micro_batch_size: int = 1  # sequences per forward pass on each process
    epochs: float = 1.0
    max_steps: int | None = None  # stop earlier (demos, smoke tests)
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # the schedule ends at lr × this
    schedule: str = "cosine"  # "cosine" or "wsd" (warmup-stable-decay)
    warmup_steps: int | None = None  # default: 3% of the steps, at least 1
    decay_fraction: float = 0.2  # wsd: the share of steps spent decaying
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    holdout_fraction: float = 0.01  # documents (CP) or conversations (SFT) kept out for evaluation
    eval_every: int = 0  # steps; 0: only at the end
    eval_batches: int = 8
    checkpoint_every: int = 0  # steps; 0: only at the end
    log_every: int = 1
    on_bad_record: str = "auto"  # SFT: "auto" (leave out up to 1% unusable records, named on screen; refuse more),
    #                              "skip" (leave out any number) or "error" (refuse any)
    chat_date: str | None = None  # YYYY-MM-DD a dated chat template (Llama 3.1+) renders; None: today
    dtype: str = "auto"  # "auto": bf16 autocast on GPU and on CPUs with AMX, else fp32; or "float32", "bfloat16"
    freeze_embeddings: bool = False  # keep the token embeddings (and a tied output head) as they are
    trainable_layers: int | None = None  # train only the top N transformer blocks (and the final norm); None: all
    end_of_turn_from_eos: bool = False  # SFT of a pretrained base: start the end-of-turn token's embedding from EOS's
    # "full": the loss's softmax over the whole vocabulary. "data": over the tokens the run's data holds (every token
    # it trains to predict, and the end-of-turn ones) and their Simplified forms (so Traditional is still preferred
    # to them): with Gemma 3's 262K-token vocabulary the output layer is most of a small model's compute, and a demo
    # corpus holds about 10,000 distinct tokens. The model keeps its whole vocabulary; only the loss leaves out
    # tokens the data never asks for (measured in BENCHMARKS.md, the build).
    head_vocabulary: str = "full"
    head_full_share: float = 0.0  # with head_vocabulary data: the share of positions (drawn each step) scored over
    #                               every token anyway, so tokens the data never holds are still pushed down
    activation_checkpointing: bool = False
    compile: bool = False
    lora: LoraConfig | None = None
    seed: int = 0
    decontaminate: list[str] | None = None  # SFT: evaluation files or folders whose items no conversation may hold
    decontaminate_action: str = "drop"  # SFT: drop such conversations, or tag them (reported, still trained on)

    def __post_init__(self):
        if self.mode not in ("cp", "sft"):
            raise TrainError(f"mode: {self.mode!r} is not cp or sft")
        if self.schedule not in ("cosine", "wsd"):
            raise TrainError(f"schedule: {self.schedule!r} is not cosine or wsd")
        if self.on_bad_record not in ("auto", "skip", "error"):
            raise TrainError(f"on_bad_record: {self.on_bad_record!r} is not auto, skip or error")
        if self.decontaminate_action not in ("drop", "tag"):
            raise TrainError(f"decontaminate_action: {self.decontaminate_action!r} is not drop or tag (a conversation "
                             "with an exam question cut out of a turn no longer makes sense)")
        if self.decontaminate and self.mode != "sft":
            raise TrainError("decontaminate: a CP corpus is decontaminated when it is cleaned: "
                             "taide data clean … --decontaminate EVAL (a recipe's data.decontaminate)")
        if isinstance(self.decontaminate, str):
            self.decontaminate = [self.decontaminate]
        if isinstance(self.data, str):
            self.data = [self.data]
        if self.head_vocabulary not in ("full", "data"):
            raise TrainError(f"head_vocabulary: {self.head_vocabulary!r} is not full or data")
        if not 0 <= self.head_full_share <= 1:
            raise TrainError(f"head_full_share: {self.head_full_share} is not between 0 and 1")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise TrainError(f"dtype: {self.dtype!r} is not auto, float32 or bfloat16")
        if self.trainable_layers is not None and self.trainable_layers < 1:
            raise TrainError(f"trainable_layers: must be at least 1 (or left out for all), got {self.trainable_layers}")
        for name in ("seq_len", "global_batch_tokens", "micro_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TrainError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if isinstance(self.lora, dict):
            self.lora = LoraConfig(**self.lora)
        self.betas = tuple(self.betas)
        if self.seq_len is not None and self.global_batch_tokens is not None:
            self.accumulation(1)  # a batch that no number of processes divides is refused now, not at step 0

    def missing(self) -> list[str]:
        """The settings training needs that this config leaves open (a build recipe's cp and sft leave them)."""
        return [name for name in ("model", "data", "out") if not getattr(self, name)]

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step on each process, so that a step sees global_batch_tokens."""
        if self.seq_len is None or self.global_batch_tokens is None:
            raise TrainError("seq_len and global_batch_tokens are not set: they are chosen from the data when it is "
                             "tokenized (build_datasets), so the accumulation is known only after that")
        per_micro = self.micro_batch_size * self.seq_len * world_size
        steps, rest = divmod(self.global_batch_tokens, per_micro)
        if steps < 1 or rest:
            raise TrainError(
                f"global_batch_tokens {self.global_batch_tokens:,} is not a multiple of micro_batch_size "
                f"{self.micro_batch_size} × seq_len {self.seq_len} × {world_size} processes = {per_micro:,} tokens; "
                f"try {max(1, round(self.global_batch_tokens / per_micro)) * per_micro:,}")
        return steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_data(values: list[str] | None) -> list[str] | dict[str, str] | None:
    """``--data`` values: paths, or all of them named sources to mix (``legal=cleaned/laws``; a path that exists is
    a path even with an "=" in its name)."""
    if not values:
        return None
    named = [v.split("=", 1) for v in values if "=" in v and not Path(v).exists()]
    return dict(named) if len(named) == len(values) else list(values)


def parse_mix(values: list[str] | None) -> dict[str, float] | None:
    """``--mix`` values, ``source=weight``."""
    if not values:
        return None
    try:
        return {k: float(v) for k, v in (m.split("=", 1) for m in values)}
    except ValueError:
        raise TrainError(f"--mix takes source=weight, e.g. legal=3; got {values}") from None


def load_recipe(path: str | Path | None, data: list[str] | None = None, mix: list[str] | None = None,
                lora_r: int | None = None, **flags) -> TrainConfig:
    """A recipe YAML (its keys are TrainConfig's fields; None: no file) with `taide train`'s flags on top (None: not
    given): ``data`` and ``mix`` as typed (``legal=cleaned/laws``, ``legal=3``: :func:`parse_data`, :func:`parse_mix`),
    ``lora_r`` the rank of LoRA adapters (:class:`LoraConfig`'s other settings), the rest TrainConfig's fields."""
    from taide.config import load_config

    return load_config(path, TrainConfig, TrainError, required=("mode", "model", "data", "out"), data=parse_data(data),
                       mix=parse_mix(mix), lora=LoraConfig(r=lora_r) if lora_r else None, **flags)
