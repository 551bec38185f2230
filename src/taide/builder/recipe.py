"""A build recipe (YAML): the base model, where the stages' outputs go, and each stage's settings, loaded as the
configs of the commands that do the stages' work.

A stage's section is that command's own config: ``data`` is `taide data clean`'s :class:`CleanConfig`, ``cp`` and
``sft`` are `taide train`'s :class:`TrainConfig`, ``export`` is `taide export`'s :class:`ExportConfig`, ``eval`` is
:class:`BuildEvalConfig`. What the build fills in itself (where a stage writes, the model it trains or exports, the
corpus CP trains on) is left open in the section and set when the stage runs; a recipe may not set it. A section
left out gets its config's defaults; ``null`` skips the stage. ``compute`` (the plan's GPU-hours) and ``launch`` (how
the recipe runs on a cluster) are configs too; ``expected_tokens`` in cp or sft informs the plan and no stage.

``sample`` in an input list means what ships with taide: the raw sample corpus (data), the SFT set (sft), the
taide-bench sample (bench), the held-out translation pairs (pairs), the Taiwan prompts (taiwan). These references are
resolved once, when the recipe is loaded.

A recipe is checked whole when it is loaded (:func:`taide.config.config_from`): every key against its config's
fields, every value against the field's type, and what the config itself refuses, so that a typo is an error naming
the file, line, stage and key before the first stage runs, not a crash at the first training stage hours into a
cluster job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from taide.builder.plan import DEVICE_PEAK
from taide.config import check_keys, config_from, read_yaml
from taide.data.clean import CleanConfig
from taide.data.shipped import SAMPLE_CORPUS
from taide.errors import TaideError
from taide.export.api import ExportConfig
from taide.train.config import TrainConfig

STAGES = ("data", "cp", "sft", "export", "eval", "card")
PACKAGE = Path(__file__).resolve().parents[1]
SAMPLES = {"data": SAMPLE_CORPUS / "raw", "sft": PACKAGE / "train/data/sft-sample.jsonl",
           "bench": PACKAGE / "eval/data/taide-bench", "pairs": PACKAGE / "builder/data/heldout-pairs.jsonl",
           "taiwan": PACKAGE / "eval/data/taiwan-prompts.jsonl"}
DEFAULT_RECIPE = PACKAGE / "builder/default.yaml"
# What the build sets in each section when the stage runs (out_dir: <out>/data/cleaned, model: the base or the cp
# stage's model, ...), so a recipe may not; and the build's own defaults where they differ from the command's.
SET_BY_BUILD = {"data": ("out_dir", "keep_rejected"), "cp": ("mode", "model", "data", "out"),
                "sft": ("mode", "model", "out"), "export": ("model", "out", "overwrite"), "eval": ()}
PLAN_ONLY = ("expected_tokens",)  # a cp/sft key that informs the plan (tokens → GPU-hours); no stage receives it
BUILD_DEFAULTS = {"data": {"inputs": [str(SAMPLES["data"])]}, "cp": {"mode": "cp"},
                  "sft": {"mode": "sft", "data": [str(SAMPLES["sft"])]},
                  "export": {"quant": "q8_0", "verify": True},  # a build ships a checked 8-bit GGUF
                  "eval": {}}


class BuildError(TaideError):
    """A build recipe or stage that cannot be used."""


@dataclass
class BuildEvalConfig:
    """The build's eval stage (the recipe's ``eval:``): the built model against the base on what the build never
    trained on. The evaluation data default to what ships with taide."""
    bench: str = str(SAMPLES["bench"])  # taide-bench folder
    heldout_pairs: str = str(SAMPLES["pairs"])  # held-out zh<->en pairs for chrF
    heldout_rows: int = 32  # held-out corpus rows scored for perplexity
    taiwan_prompts: str = str(SAMPLES["taiwan"])  # Taiwan prompts checked for language, script and loops
    max_tokens: int = 128  # longest answer, in tokens
    tasks: list[str] | None = None  # taide-bench tasks; None: all
    system_prompt: str = "auto"  # for taide-bench: auto, none, a preset or the text itself
    judge_endpoint: str | None = None  # an OpenAI-compatible judge
    # Without an endpoint: "self" (the built model judges) or "stub" (--smoke: scores mean nothing).
    judge_model: str | None = None  # the judge's model name

    def __post_init__(self):
        for name in ("heldout_rows", "max_tokens"):
            if getattr(self, name) < 1:
                raise BuildError(f"{name}: {getattr(self, name)} is not a whole number of at least 1")


@dataclass
class ComputeConfig:
    """What the plan estimates GPU-hours with (the recipe's ``compute:``)."""
    device: str | None = None  # h100, h200, a100, l40s or mi300x; None: no GPU-hour estimate
    mfu: float = 0.3  # the model FLOPs utilization expected
    gpus: int | None = None  # how many (documentation: GPU-hours do not depend on it)
    published_gpu_hours: float | None = None  # a published figure, checked against the training FLOPs

    def __post_init__(self):
        if self.device is not None and self.device.lower() not in DEVICE_PEAK:
            raise BuildError(f"device: {self.device!r} is not one of {', '.join(DEVICE_PEAK)}")
        if not 0 < self.mfu <= 1:
            raise BuildError(f"mfu: {self.mfu} is not between 0 and 1")


@dataclass
class LaunchConfig:
    """How the recipe runs on a cluster (the recipe's ``launch:``) and how `taide build` trains on this machine."""
    data: str | None = None  # how the data stage runs there (e.g. ray), for people and scripts
    train: str | None = None  # how training runs there (e.g. the Slurm script that starts torchrun)
    train_processes: int = 1  # torchrun processes `taide build` trains with here

    def __post_init__(self):
        if self.train_processes < 1:
            raise BuildError(f"train_processes: {self.train_processes!r} is not a whole number of at least 1")


@dataclass
class Recipe:
    """A loaded recipe: its sections typed, ``sample:`` resolved (:func:`load_build_recipe`). A stage whose section is
    None does not run."""
    name: str
    base_model: str
    out: str = "build"
    base_shape: str | None = None  # a known shape (llama-3-8b, ...) for planning when base_model is not here
    description: str = ""
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    data: CleanConfig | None = None
    cp: TrainConfig | None = None
    sft: TrainConfig | None = None
    export: ExportConfig | None = None
    eval: BuildEvalConfig | None = None
    probe_endpoints: bool = False  # --smoke: ask the recipe's endpoints (its judge) if they answer, use those that do
    expected_tokens: dict[str, float] = field(default_factory=dict)  # cp/sft: tokens per epoch, for the plan only
    source: Path | None = None
    smoke: list[str] | None = None  # `--smoke`: what was made small, one sentence each

    def sft_files(self) -> list[str]:
        """The sft stage's conversation files: its ``data``, paths or sources mapped to paths."""
        return data_paths(self.sft.data)


def data_paths(value) -> list[str]:
    """The paths of a TrainConfig's ``data``: a list of paths, or {source: path or paths}."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in (v if isinstance(v, list) else [v])]
    return list(value)


def evaluation_data(settings: BuildEvalConfig | None) -> list[str]:
    """What the training data is checked against when the recipe does not say (``decontaminate``): everything the
    build's evaluation reads (the bench, the Taiwan prompts, the held-out pairs), so it never trains on its test."""
    settings = settings or BuildEvalConfig()
    return [settings.bench, settings.taiwan_prompts, settings.heldout_pairs]


def _resolve(value):
    """``sample:<kind>`` → the shipped file, anywhere in a setting."""
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("sample:") and value.split(":", 1)[1] in SAMPLES:
        return str(SAMPLES[value.split(":", 1)[1]])
    return value


def _unknown_sample(value) -> str | None:
    """A ``sample:<kind>`` that names no shipped sample, anywhere in a setting."""
    items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    for item in items:
        if isinstance(item, (list, dict)):
            found = _unknown_sample(item)
            if found:
                return found
        elif isinstance(item, str) and item.startswith("sample:") and item.split(":", 1)[1] not in SAMPLES:
            return f"{item!r} names no shipped sample; known: {', '.join(f'sample:{k}' for k in SAMPLES)}"
    return None


class _Loader:
    """One recipe file's sections, each read into its config with the file's lines for errors."""

    def __init__(self, path: Path, settings: dict, lines: dict):
        self.path, self.settings, self.lines = path, settings, lines

    def fail(self, section: str, key: str | None, message: str):
        line = (self.lines.get((section, key)) if key else None) or self.lines.get((section,))
        raise BuildError(f"{self.path}{f':{line}' if line else ''}: {section}{f'.{key}' if key else ''}: {message}")

    def raw(self, section: str) -> dict | None:
        """The section's mapping as written (``{}`` when left out; None: skipped)."""
        value = self.settings.get(section, {})
        if value is not None and not isinstance(value, dict):
            self.fail(section, None, "expected a mapping of settings (or null to skip the stage), got "
                                     f"{type(value).__name__}")
        return value

    def section(self, section: str, cls, defaults: dict | None = None, hidden: tuple[str, ...] = ()):
        """``cls`` from the section (None when it is null), ``sample:`` resolved, over ``defaults``."""
        value = self.raw(section)
        if value is None:
            return None
        for key, item in value.items():
            problem = _unknown_sample(item)
            if problem:
                self.fail(section, key, problem)
        allowed = [f for f in cls.__dataclass_fields__ if f not in hidden]
        first = min(set(value) - set(allowed), default=None)  # the key an unknown-key error names
        hint = ""
        if first in hidden:
            hint = (" (cp trains on the data stage's output: give the corpus as data.inputs)"
                    if (section, first) == ("cp", "data") else f" (the build sets {first} itself)")
        return config_from(_resolve(value), cls, self.path, self.lines, BuildError, section, hidden=hidden,
                           defaults=defaults, hint=hint, taken=PLAN_ONLY if section in ("cp", "sft") else ())

    def stage(self, stage: str, cls, **defaults):
        return self.section(stage, cls, {**BUILD_DEFAULTS[stage], **defaults}, SET_BY_BUILD[stage])

    def expected_tokens(self, stage: str) -> float | None:
        """A training section's plan-only ``expected_tokens``, taken out of it (no stage receives it)."""
        section = self.raw(stage)
        if not section or PLAN_ONLY[0] not in section:
            return None
        value = section.pop(PLAN_ONLY[0])
        try:
            if float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            self.fail(stage, "expected_tokens", f"{value!r} is not a number of tokens")
        self.fail(stage, "expected_tokens", "must be a positive number of tokens")

    def decontaminate_default(self, *sections: str, fallback: list[str]) -> dict:
        """``decontaminate`` as the first of ``sections`` that names it (null: no check), else ``fallback``."""
        for section in sections:
            value = self.raw(section)
            if value and "decontaminate" in value:
                return {"decontaminate": _resolve(value["decontaminate"])}
        return {"decontaminate": fallback}


def load_build_recipe(path: str | Path | None = None, out: str | None = None) -> Recipe:
    """The recipe at ``path`` (the default one when None), checked whole: see the module docstring. ``out``: where
    the stages' outputs go, instead of the recipe's ``out``."""
    path = Path(path) if path else DEFAULT_RECIPE
    settings, lines = read_yaml(path, BuildError, "a build recipe (a mapping of settings)")
    hidden = ("source", "smoke", "expected_tokens")
    check_keys(path, lines, settings, set(Recipe.__dataclass_fields__) - set(hidden), BuildError)
    for key in ("name", "base_model"):
        if key not in settings:
            raise BuildError(f"{path}: missing '{key}'")
    loader = _Loader(path, settings, lines)
    if settings.get("data", {}) is None and settings.get("cp", {}) is not None:
        loader.fail("data", None, "null skips the data stage, but cp trains on its output: skip cp too (cp: null)")
    sections: dict = {name: loader.section(name, cls) or cls() for name, cls in (("compute", ComputeConfig),
                                                                                  ("launch", LaunchConfig))}
    expected = {stage: loader.expected_tokens(stage) for stage in ("cp", "sft")}
    sections["eval"] = loader.stage("eval", BuildEvalConfig)
    against = evaluation_data(sections["eval"])
    sections["data"] = loader.stage("data", CleanConfig, **loader.decontaminate_default("data", fallback=against))
    sections["cp"] = loader.stage("cp", TrainConfig)
    sections["sft"] = loader.stage("sft", TrainConfig, **loader.decontaminate_default("sft", "data", fallback=against))
    sections["export"] = loader.stage("export", ExportConfig)
    top = {k: v for k, v in settings.items() if k not in sections}
    return config_from({**top, **sections}, Recipe, path, lines, BuildError, hidden=hidden,
                       given={"expected_tokens": {k: v for k, v in expected.items() if v}, "source": path,
                              **({"out": out} if out else {})})
