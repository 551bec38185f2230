"""A build recipe: the base model, where the stages' outputs go, and each stage's settings (YAML).

``sample`` in an input list means what ships with taide: the raw sample corpus (data), the SFT set (sft),
the taide-bench sample (eval), the held-out translation pairs (proof).

A recipe is checked whole when it is loaded: every stage's keys against what that stage reads
(:data:`STAGE_KEYS`; cp and sft take TrainConfig's fields) and the values a stage would fail on, so that a
typo is an error naming the file, line, stage and key before the first stage runs, not a crash at the
first training stage hours into a cluster job.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


from taide.config import check_keys, read_yaml
from taide.data.shipped import SAMPLE_CORPUS
from taide.errors import TaideError
from taide.train.config import TrainConfig, TrainError

STAGES = ("data", "cp", "sft", "export", "eval", "card")
PACKAGE = Path(__file__).resolve().parents[1]
SAMPLES = {"data": SAMPLE_CORPUS / "raw", "sft": PACKAGE / "train/data/sft-sample.jsonl",
           "bench": PACKAGE / "eval/data/taide-bench", "pairs": PACKAGE / "builder/data/heldout-pairs.jsonl",
           "taiwan": PACKAGE / "eval/data/taiwan-prompts.jsonl"}
DEFAULT_RECIPE = PACKAGE / "builder/default.yaml"
PLAN_ONLY = ("expected_tokens",)  # cp/sft keys that inform the plan (tokens → GPU-hours); no stage receives them
SET_BY_BUILD = ("mode", "model", "out")  # TrainConfig fields the build fills in itself


def _setting(default, kind, doc: str = ""):
    """A recipe setting: its default and the kind of value it takes ("path", "paths", "text", "texts", "count",
    "flag", "quant"; "?" allows null; or a tuple of the allowed values), which the loader checks."""
    return field(default=default, metadata={"kind": kind, "doc": doc})


@dataclass
class BuildEvalConfig:
    """The build's eval stage (the recipe's ``eval:``): the built model against the base on what the build never
    trained on. Paths may be ``sample:<kind>``; None means the shipped sample."""
    bench: str | None = _setting(None, "path?", "taide-bench folder")
    heldout_pairs: str | None = _setting(None, "path?", "held-out zh<->en pairs for chrF")
    heldout_rows: int = _setting(32, "count", "held-out corpus rows scored for perplexity")
    taiwan_prompts: str | None = _setting(None, "path?", "Taiwan prompts checked for language, script and loops")
    max_tokens: int = _setting(128, "count", "longest answer, in tokens")
    tasks: list[str] | None = _setting(None, "texts?", "taide-bench tasks (default: all)")
    system_prompt: str | None = _setting(None, "text?", "for taide-bench (default: auto)")
    judge_endpoint: str | None = _setting(None, "text?", "an OpenAI-compatible judge")
    # Without an endpoint: "self" (the built model judges) or "stub" (--smoke: scores mean nothing).
    judge_model: str | None = _setting(None, "text?", "the judge's model name")


# What each non-training stage reads from its settings (build/stages.py), and the values it can use: a kind
# ("path", "paths", "text", "count", "flag", "quant"; "?" allows null) or the allowed values.
STAGE_KEYS = {
    "data": {"inputs": "paths", "config": "path?", "workers": "count?", "executor": ("local", "ray"),
             "ray_address": "text?", "decontaminate": "paths?", "decontaminate_action": ("drop", "cut", "tag")},
    "export": {"format": ("gguf", "hf"), "quant": "quant", "verify": "flag", "output_type": "text?"},
    "eval": {f.name: f.metadata["kind"] for f in dataclasses.fields(BuildEvalConfig)},
}


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
    eval: dict = field(default_factory=dict)  # bench, judge_endpoint, judge_model, heldout_pairs, max_tokens, ...
    launch: dict = field(default_factory=dict)  # how the recipe runs on a cluster (documentation), and
    # train_processes: N, how many torchrun processes `taide build` trains with on this machine (default 1)
    probe_endpoints: bool = False  # --smoke: ask the recipe's endpoints (its judge) if they answer, use those that do
    source: Path | None = None
    smoke: list[str] | None = None  # `--smoke`: what was made small, one sentence each (not a YAML key)

    def data_inputs(self) -> list[str]:
        """The data stage's inputs, resolved: the recipe's ``data.inputs``, else the shipped raw corpus."""
        return self.resolve((self.data or {}).get("inputs", ["sample:data"]))

    def sft_files(self) -> list[str]:
        """The sft stage's conversation files, resolved: its ``data`` (paths, or sources mapped to paths), else the
        shipped set."""
        return _data_paths(self.resolve((self.sft or {}).get("data", ["sample:sft"])))

    def eval_config(self) -> BuildEvalConfig:
        """The eval stage's settings, typed, ``sample:`` references resolved."""
        return BuildEvalConfig(**(self.resolve(self.eval) or {}))  # eval: null skips the stage, not its defaults

    def resolve(self, value):
        """``sample`` and ``sample:<kind>`` → the shipped file; relative paths → relative to the recipe."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("sample:"):
            return str(SAMPLES[value.split(":", 1)[1]])
        return value


def stage_keys(stage: str) -> tuple[str, ...]:
    """The keys a stage's settings may have. cp and sft: TrainConfig's fields but those the build sets (and, for
    cp, ``data``: its corpus is the data stage's output), plus the plan-only keys."""
    if stage in ("cp", "sft"):
        fields = [f.name for f in dataclasses.fields(TrainConfig)
                  if f.name not in SET_BY_BUILD and (stage == "sft" or f.name != "data")]
        return tuple(sorted(fields + list(PLAN_ONLY)))
    return tuple(sorted(STAGE_KEYS[stage]))


_SCALARS = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}  # a field's type: the values it takes
_SCALAR_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a text"}


def _data_paths(value) -> list:
    """The paths of an sft ``data`` value: a path, a list of paths, or {source: path or paths}."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in (v if isinstance(v, list) else [v])]
    return value if isinstance(value, list) else [value]


_TRAIN_TYPES = typing.get_type_hints(TrainConfig)  # the fields' types, not their annotations' text


def _train_value_problem(name: str, value) -> str | None:
    """What is wrong with a cp/sft value whose TrainConfig field is a plain scalar (int, float, bool, str, or
    one of those or None); None when it fits or the field is not a scalar (TrainConfig checks those)."""
    if name == "data":  # sft: its conversations, as TrainConfig takes them (files, or {source: files})
        paths = _data_paths(value)
        if not paths or not all(isinstance(p, str) and p.strip() for p in paths):
            return f"{value!r} is not a path, a list of paths or a mapping of sources to paths"
        return None
    if name in PLAN_ONLY:
        try:
            return None if float(value) > 0 else "must be a positive number of tokens"
        except (TypeError, ValueError):
            return f"{value!r} is not a number of tokens"
    hint = _TRAIN_TYPES[name]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)  # int | None -> (int, NoneType)
    kinds = [o for o in options if o is not type(None)]
    if not kinds or any(k not in _SCALARS for k in kinds):
        return None
    if value is None:
        return None if type(None) in options else "may not be empty"
    wanted = tuple(t for k in kinds for t in _SCALARS[k])
    if (isinstance(value, bool) and bool not in wanted) or not isinstance(value, wanted):
        hint = ""
        if isinstance(value, str) and float in kinds:
            hint = " (YAML reads a number like 1e-4 as text: write 1.0e-4)"
        return f"{value!r} is not {' or '.join(_SCALAR_WORDS[k] for k in kinds)}{hint}"
    return None


def _value_problem(kind, value) -> str | None:
    """What is wrong with a data/export/eval value of this kind (see STAGE_KEYS), or None."""
    if isinstance(kind, tuple):
        return None if value in kind else f"{value!r} is not one of {', '.join(kind)}"
    if kind.endswith("?") and value is None:
        return None
    kind = kind.rstrip("?")
    ok = {"path": lambda v: isinstance(v, str) and v.strip(), "text": lambda v: isinstance(v, str) and v.strip(),
          "paths": lambda v: isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v),
          "texts": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
          "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
          "flag": lambda v: isinstance(v, bool),
          "quant": lambda v: isinstance(v, str)}[kind](value)
    if ok:
        return None
    described = {"path": "a path", "text": "a text", "paths": "a list of paths", "texts": "a list of names",
                 "count": "a whole number of at least 1", "flag": "true or false", "quant": "a quantization name"}[kind]
    return f"{value!r} is not {described}"


def _samples_problem(value) -> str | None:
    """A ``sample:<kind>`` that names no shipped sample."""
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and item.startswith("sample:") and item.split(":", 1)[1] not in SAMPLES:
            return f"{item!r} names no shipped sample; known: {', '.join(f'sample:{k}' for k in SAMPLES)}"
    return None


def _check_stage(path: Path, lines: dict, stage: str, settings, recipe: dict) -> None:
    """Raise BuildError naming path:line, the stage and the key for the first key or value ``stage`` cannot use."""
    def fail(key: str | None, message: str):
        line = lines.get((stage, key)) if key else None
        line = line or lines.get((stage,))
        raise BuildError(f"{path}{f':{line}' if line else ''}: {stage}{f'.{key}' if key else ''}: {message}")

    if settings is None:
        if stage == "data" and recipe.get("cp", {}) is not None:
            fail(None, "null skips the data stage, but cp trains on its output: skip cp too (cp: null)")
        return
    if not isinstance(settings, dict):
        fail(None, f"expected a mapping of settings (or null to skip the stage), got {type(settings).__name__}")
    hint = " (cp trains on the data stage's output: give the corpus as data.inputs)" if stage == "cp" else ""
    check_keys(path, lines, settings, stage_keys(stage), BuildError, section=stage,
               hint=hint if "data" in settings else "", listing=f"the {stage} stage takes")
    for key, value in settings.items():
        training = stage in ("cp", "sft")
        problem = _samples_problem(value) or (_train_value_problem(key, value) if training
                                              else _value_problem(STAGE_KEYS[stage][key], value))
        if problem:
            fail(key, problem)
    if stage in ("cp", "sft"):
        _check_train_settings(settings, stage, fail)
    if stage == "export" and settings.get("format", "gguf") == "gguf" and "quant" in settings:
        from taide.export.quantize import QUANTS

        if settings["quant"].strip().lower().replace("-", "_") not in QUANTS:
            fail("quant", f"{settings['quant']!r} is not a quantization; known: {', '.join(QUANTS)}")


def _check_train_settings(settings: dict, stage: str, fail) -> None:
    """What TrainConfig itself refuses (schedule, dtype, sizes, a batch that is not a multiple of micro_batch_size
    × seq_len), found now rather than when the stage starts."""
    values = {k: v for k, v in settings.items() if k not in PLAN_ONLY}
    values.setdefault("data", ["sample:sft"])
    try:
        config = TrainConfig(mode=stage, model="base", out="out", **values)
        if config.seq_len is not None and config.global_batch_tokens is not None:
            config.accumulation(1)
    except (TrainError, TypeError, ValueError) as e:
        message = str(e)
        key = next((k for k in settings if message.startswith((f"{k}:", f"{k} "))), None)
        if key is None and "LoraConfig" in message:
            key = "lora"
        fail(key, message.removeprefix(f"{key}: ") if key else message)


def _check_top(path: Path, lines: dict, settings: dict) -> None:
    """The recipe's own keys: names and paths are texts, compute and launch mappings (null: none)."""
    def fail(key: str, message: str):
        line = lines.get((key,))
        raise BuildError(f"{path}{f':{line}' if line else ''}: {key}: {message}")

    for key in ("name", "base_model", "out"):
        if key in settings and not (isinstance(settings[key], str) and settings[key].strip()):
            fail(key, f"{settings[key]!r} is not a non-empty text")
    if not isinstance(settings.get("description", ""), str):
        fail("description", f"{settings['description']!r} is not a text")
    if not isinstance(settings.get("base_shape") or "", str):
        fail("base_shape", f"{settings['base_shape']!r} is not a shape name")
    if not isinstance(settings.get("probe_endpoints", False), bool):
        fail("probe_endpoints", f"{settings['probe_endpoints']!r} is not true or false")
    for key in ("compute", "launch"):
        if not isinstance(settings.get(key) or {}, dict):
            fail(key, "expected a mapping")
        if key in settings:
            settings[key] = settings[key] or {}
    processes = settings.get("launch", {}).get("train_processes", 1)
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        fail("launch", f"train_processes: {processes!r} is not a whole number of at least 1")


def load_build_recipe(path: str | Path | None = None, out: str | None = None) -> Recipe:
    """The recipe at ``path`` (the default one when None), checked whole: see the module docstring."""
    path = Path(path) if path else DEFAULT_RECIPE
    settings, lines = read_yaml(path, BuildError, "a build recipe (a mapping of settings)")
    check_keys(path, lines, settings, set(Recipe.__dataclass_fields__) - {"source", "smoke"}, BuildError)
    for key in ("name", "base_model"):
        if key not in settings:
            raise BuildError(f"{path}: missing '{key}'")
    _check_top(path, lines, settings)
    for stage in STAGES[:-1]:
        if stage in settings:
            _check_stage(path, lines, stage, settings[stage], settings)
    recipe = Recipe(**settings, source=path)
    if out:
        recipe.out = out
    return recipe
