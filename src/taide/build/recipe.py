"""A build recipe: the base model, where the stages' outputs go, and each stage's settings (YAML).

``sample`` in an input list means what ships with taide: the raw sample corpus (data), the SFT set (sft),
the taide-bench sample (eval), the held-out translation pairs (proof).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from taide.errors import TaideError

STAGES = ("data", "cp", "sft", "export", "eval", "card")
PACKAGE = Path(__file__).resolve().parents[1]
SAMPLES = {"data": PACKAGE / "data/sample/raw", "sft": PACKAGE / "train/data/sft-sample.jsonl",
           "bench": PACKAGE / "eval/data/taide-bench", "pairs": PACKAGE / "build/data/heldout-pairs.jsonl"}
DEFAULT_RECIPE = PACKAGE / "build/default.yaml"


class BuildError(TaideError):
    """A build recipe or stage that cannot be used."""


@dataclass
class Recipe:
    name: str
    base_model: str
    out: str = "build"
    base_shape: str | None = None  # a known shape (llama-3-8b, ...) for planning when base_model is not here
    description: str = ""
    compute: dict = field(default_factory=dict)  # {device: h100, mfu: 0.3, gpus: 64} for GPU-hour estimates
    data: dict = field(default_factory=dict)  # inputs, config (pipeline YAML), workers, executor
    cp: dict | None = field(default_factory=dict)  # TrainConfig fields; None skips the stage
    sft: dict | None = field(default_factory=dict)  # TrainConfig fields incl. data; None skips
    export: dict = field(default_factory=lambda: {"format": "gguf", "quant": "q8_0"})
    eval: dict = field(default_factory=dict)  # bench, judge_endpoint, judge_model, heldout_pairs, max_tokens, launch
    launch: dict = field(default_factory=dict)  # how the card's recipe is run on a cluster (documentation)
    source: Path | None = None

    def resolve(self, value):
        """``sample`` and ``sample:<kind>`` → the shipped file; relative paths → relative to the recipe."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("sample:"):
            return str(SAMPLES[value.split(":", 1)[1]])
        return value


def load_build_recipe(path: str | Path | None = None, out: str | None = None) -> Recipe:
    path = Path(path) if path else DEFAULT_RECIPE
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise BuildError(f"{path}: cannot read the recipe ({e.strerror})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise BuildError(f"{path}{f':{mark.line + 1}' if mark else ''}: invalid YAML") from e
    if not isinstance(settings, dict):
        raise BuildError(f"{path}: a build recipe is a mapping")
    known = set(Recipe.__dataclass_fields__) - {"source"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise BuildError(f"{path}: unknown keys {unknown}; known: {', '.join(sorted(known))}")
    for key in ("name", "base_model"):
        if key not in settings:
            raise BuildError(f"{path}: missing '{key}'")
    recipe = Recipe(**settings, source=path)
    if out:
        recipe.out = out
    return recipe
