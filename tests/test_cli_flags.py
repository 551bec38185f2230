"""Each command's flags are its config's fields: the same names, the same defaults. A default written in cli.py that
its config does not also hold is a second truth that drifts; these tests make it fail instead."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from taide.builder import BuildConfig
from taide.cli import app
from taide.data import CleanConfig
from taide.data.conversations import ConvertConfig
from taide.eval.commands import EvalBenchConfig, EvalCompareConfig, EvalMCConfig
from taide.export import ExportConfig
from taide.export.verify import VerifyConfig
from taide.generate import GenerateConfig
from taide.serve import ServeConfig
from taide.tasks import TaskConfig
from taide.train.config import TrainConfig

# Training flags default to None: the value comes from --recipe when it has one, else from TrainConfig.
RECIPE_FIRST = {"train cp", "train sft"}
CONFIGS = {"generate": GenerateConfig, "task": TaskConfig, "serve": ServeConfig, "build": BuildConfig,
           "export": ExportConfig, "verify": VerifyConfig, "data clean": CleanConfig, "data convert": ConvertConfig,
           "eval bench": EvalBenchConfig, "eval mc": EvalMCConfig, "eval compare": EvalCompareConfig,
           "train cp": TrainConfig, "train sft": TrainConfig}
# Fields a flag does not set, each for a reason: library or recipe settings, or set by the command itself.
NO_FLAG = {
    "task": {"stop"},  # each task's own stop strings
    "serve": {"retry_after"},  # the Retry-After a 503 carries, for embedders
    "data clean": {"batch_docs"},  # the unit of work resumed runs skip; a library setting (tests, benchmarks)
    "train cp": {"mode", "text_field", "min_lr_ratio", "decay_fraction", "weight_decay", "betas", "grad_clip",
                 "holdout_fraction", "eval_batches", "log_every", "dtype", "freeze_embeddings", "trainable_layers",
                 "end_of_turn_from_eos", "head_vocabulary", "head_full_share", "compile", "lora"},  # recipe keys
}
NO_FLAG["train sft"] = NO_FLAG["train cp"]
# Flags that are not fields: they choose what to run rather than configure it.
NO_FIELD = {"train cp": {"recipe", "lora_r", "resume", "resume_if_any"}}
NO_FIELD["train sft"] = NO_FIELD["train cp"]


def _commands():
    def walk(command, prefix=""):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{prefix} {name}".strip())
        else:
            yield prefix, command

    return dict(walk(typer.main.get_command(app)))


def _field_name(param, fields: dict) -> str:
    """The field a flag sets: its Python name, else its long option's (--format for a parameter named fmt)."""
    if param.name in fields:
        return param.name
    longest = max((o for o in getattr(param, "opts", []) if o.startswith("--")), key=len, default=None)
    return longest[2:].replace("-", "_") if longest else param.name


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None  # required: the command's argument supplies it


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_flags_are_the_configs_fields_with_its_defaults(name):
    command = _commands()[name]
    fields = {f.name: f for f in dataclasses.fields(CONFIGS[name])}
    flags = {_field_name(p, fields): p for p in command.params}
    assert set(flags) - set(fields) == NO_FIELD.get(name, set())
    assert set(fields) - set(flags) == NO_FLAG.get(name, set())
    for flag, param in flags.items():
        if flag not in fields or name in RECIPE_FIRST:
            assert name not in RECIPE_FIRST or param.default in (None, False), (name, flag, param.default)
            continue
        expected, given = _default(fields[flag]), param.default
        if expected is None or given in (None, [], ()) and not expected:
            continue  # an argument, or "not given" for a field whose default is empty
        assert given == expected, f"taide {name} --{flag.replace('_', '-')}: flag default {given!r}, config {expected!r}"


def test_every_command_with_options_is_covered():
    """A new command with options gets its config into CONFIGS (or is one of these, which build theirs from others)."""
    without = {"chat", "demo", "info", "data sample"}
    assert {name for name, c in _commands().items() if len(c.params) > 1} - set(CONFIGS) <= without
