"""The trainer (`taide train cp|sft`): token-batch arithmetic, the LR schedule, exact resume, 2 processes
(torchrun, gloo, FSDP2) equal to 1, the Hugging Face output directory, LoRA, bad SFT records, the recipes,
and (slow) continued pretraining of the embedded default on Taiwan law text.

Runs train on the tiny random-init Llama (a copy of conftest's)."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, SHARED, free_port, write_jsonl
from safetensors.torch import load_file

from taide.errors import InputError
from taide.train import TrainConfig, TrainError, load_recipe, run_train
from taide.train.trainer import learning_rate

LAWS = SHARED / "data" / "tw-laws" / "laws-zh.jsonl.gz"
WORDS = ["hello", "world", "law", "article", "Taiwan", "night", "market", "tea", "debate", "amendment", "你好", "臺灣"]
ANSWER = "OK"


# ---- fixtures ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A copy of conftest's tiny Llama, whose tokenizer splits text as Llama 3's does ("\\n\\n" a piece of its own, so
    the generation prompt ends in the token SFT trains after it)."""
    path = tmp_path_factory.mktemp("tiny-llama3-copy") / "model"
    shutil.copytree(tiny_model_dir, path)
    return path


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory) -> Path:
    """64 short conversations, each answered "OK": a tiny model learns it (and the end of turn) in a few steps."""
    rng = random.Random(0)
    records = []
    for _ in range(64):
        question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))
        records.append({"messages": [{"role": "user", "content": question},
                                     {"role": "assistant", "content": ANSWER}]})
    return write_jsonl(tmp_path_factory.mktemp("sft") / "sft.jsonl", records)


def sft_config(model_dir, data, out, **overrides) -> TrainConfig:
    settings = dict(mode="sft", model=str(model_dir), data=[str(data)], out=str(out), seq_len=128,
                    global_batch_tokens=512, micro_batch_size=2, epochs=3, max_steps=8, lr=5e-3, warmup_steps=1,
                    holdout_fraction=0.125, eval_batches=2, seed=0,
                    dtype="float32")  # exact comparisons: no bf16 autocast, which "auto" picks on CPUs with AMX
    settings.update(overrides)
    return TrainConfig(**settings)


def losses(history: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in history if "loss" in r]


def weights(directory: Path) -> dict[str, torch.Tensor]:
    found = sorted(Path(directory).glob("*.safetensors"))
    assert found, f"no safetensors in {directory}"
    out = {}
    for f in found:
        out.update(load_file(f))
    return out


class Stop(Exception):
    """Raised from on_step: the run dies mid-way, as a preempted job does."""


@pytest.fixture(scope="module")
def sft_run(model_dir, sft_file, tmp_path_factory):
    """An uninterrupted 8-step SFT run with a checkpoint every 3 steps."""
    out = tmp_path_factory.mktemp("sft-run")
    return run_train(sft_config(model_dir, sft_file, out, checkpoint_every=3))


# ---- configuration ------------------------------------------------------------------------------------------

def card_config(**overrides) -> TrainConfig:
    settings = dict(mode="cp", model="m", data=["d"], out="o", seq_len=8192, global_batch_tokens=1_048_576,
                    micro_batch_size=2)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_accumulation_follows_the_token_batch():
    config = card_config()
    assert config.accumulation(64) == 1  # 64 GPUs × 2 × 8192 = 1M tokens
    assert config.accumulation(8) == 8
    assert config.accumulation(1) == 64
    assert card_config(global_batch_tokens=262_144, micro_batch_size=1).accumulation(8) == 4  # SFT: 256K
    with pytest.raises(TrainError, match=r"1,000,000 is not a multiple of micro_batch_size 2 × seq_len 8192 × "
                                         r"1 processes = 16,384 tokens; try 999,424"):
        card_config(global_batch_tokens=1_000_000)  # no number of processes divides it: refused when given
    with pytest.raises(TrainError, match=r"3,145,728 is not a multiple of micro_batch_size 2 × seq_len 8192 × "
                                         r"128 processes = 2,097,152 tokens; try 4,194,304"):
        card_config(global_batch_tokens=3 << 20).accumulation(128)
    with pytest.raises(TrainError, match="not a multiple"):  # fewer tokens than one micro-batch on every process
        config.accumulation(128)
    with pytest.raises(TrainError, match="micro_batch_size: must be at least 1"):
        card_config(micro_batch_size=0)


def test_learning_rate_schedule():
    total = 100
    cosine = card_config(lr=1e-4, min_lr_ratio=0.1, warmup_steps=10)
    lrs = [learning_rate(cosine, s, total) for s in range(1, total + 1)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[4] == pytest.approx(5e-5)  # linear warmup
    assert lrs[9] == pytest.approx(1e-4)  # the peak at the last warmup step
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # then only down
    assert lrs[54] == pytest.approx((1e-4 + 1e-5) / 2)  # half-way through the decay: the midpoint
    assert lrs[-1] == pytest.approx(1e-5)  # ends at lr × min_lr_ratio
    assert learning_rate(card_config(), 1, 1000) == pytest.approx(1e-4 / 30)  # default warmup: 3% of the steps

    wsd = card_config(lr=1e-4, min_lr_ratio=0.1, warmup_steps=5, schedule="wsd", decay_fraction=0.2)
    lrs = [learning_rate(wsd, s, total) for s in range(1, total + 1)]
    assert lrs[:5] == pytest.approx([2e-5, 4e-5, 6e-5, 8e-5, 1e-4])  # warmup
    assert lrs[5:80] == pytest.approx([1e-4] * 75)  # stable until the last 20%
    decay = lrs[80:]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    steps = [b - a for a, b in zip(decay, decay[1:])]
    assert steps == pytest.approx([steps[0]] * len(steps))  # linear
    assert decay[-1] == pytest.approx(1e-5)  # to lr × min_lr_ratio
    with pytest.raises(TrainError, match="schedule"):
        card_config(schedule="linear")


def test_recipes_load_with_consistent_batches(tmp_path):
    """Every shipped recipe loads and its token batch divides into its intended world size."""
    world_sizes = {"llama3-taide-8b-cp": [64, 8], "llama3-taide-8b-sft": [32, 8], "tiny-cp": [1], "tiny-sft": [1]}
    recipes = sorted((REPO / "recipes").glob("*.yaml"))
    assert {r.stem for r in recipes} == set(world_sizes), "a recipe without an intended world size here"
    for recipe in recipes:
        config = load_recipe(recipe)
        for size in world_sizes[recipe.stem]:
            accumulation = config.accumulation(size)
            assert accumulation * config.micro_batch_size * config.seq_len * size == config.global_batch_tokens
    cp = load_recipe(REPO / "recipes" / "llama3-taide-8b-cp.yaml")
    assert (cp.mode, cp.seq_len, cp.global_batch_tokens, cp.lr, cp.epochs) == ("cp", 8192, 1 << 20, 1e-4, 1)
    assert cp.accumulation(64) == 1 and set(cp.mix) == set(cp.data)
    sft = load_recipe(REPO / "recipes" / "llama3-taide-8b-sft.yaml")
    assert (sft.mode, sft.global_batch_tokens, sft.lr, sft.epochs) == ("sft", 1 << 18, 5e-5, 3)
    assert sft.accumulation(32) == 1 and sft.accumulation(8) == 4
    assert load_recipe(REPO / "recipes" / "tiny-sft.yaml", max_steps=3).max_steps == 3  # flags override
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "recipes" / "tiny-cp.yaml").read_text(encoding="utf-8") + "\nlearning_rate: 1\n",
                   encoding="utf-8")
    line = bad.read_text(encoding="utf-8").splitlines().index("learning_rate: 1") + 1
    with pytest.raises(TrainError, match=rf"bad.yaml:{line}: learning_rate: unknown key 'learning_rate'; known: "):
        load_recipe(bad)
    # A bad value is named where it was given: the file's line, or the flag.
    filled = "mode: cp\nmodel: m\ndata: [d]\nout: o\n"
    for text, message in [
        ("mode: cp\nepoch: 2\n", r"bad.yaml:2: epoch: unknown key 'epoch' \(did you mean 'epochs'\?\)"),
        ("mode: cp\nlr: [1\n", r"bad.yaml:\d+: invalid YAML"),
        ("mode: cp\nlr: 1.0e-4\n", "missing settings: model, data, out"),
        (filled + "schedule: linear\n", r"bad.yaml:5: schedule: 'linear' is not cosine or wsd"),
        (filled + "lr: 1e-4\n", r"bad.yaml:5: lr: '1e-4' is not a number \(YAML reads a number like 1e-4"),
    ]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(TrainError, match=message):
            load_recipe(bad)
    bad.write_text("mode: cp\nlr: 1.0e-4\n", encoding="utf-8")
    assert load_recipe(bad, model="m", data=["d"], out="o", lr=3.0e-4).lr == 3.0e-4  # the flag over the file
    with pytest.raises(TrainError, match=r"^schedule \(given as a flag\): 'linear' is not cosine or wsd"):
        load_recipe(REPO / "recipes" / "tiny-cp.yaml", schedule="linear")


# ---- resume --------------------------------------------------------------------------------------------------

def test_resume_reproduces_the_uninterrupted_run(model_dir, sft_file, sft_run, tmp_path):
    """Killed after the step-3 checkpoint (during step 5), then resumed: the same per-step losses, learning
    rates and gradient norms as the uninterrupted run, and the same final weights."""
    config = sft_config(model_dir, sft_file, tmp_path, checkpoint_every=3)

    def die(step, total, values):
        if step == 5:
            raise Stop

    with pytest.raises(Stop):
        run_train(config, on_step=die)
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-3"
    resumed = run_train(config, resume=True)

    assert resumed.steps == sft_run.steps == 8
    assert [s for s, _ in losses(resumed.history)] == list(range(1, 9))  # steps 4, 5 logged once (not twice)
    for got, want in zip([r for r in resumed.history if "loss" in r], [r for r in sft_run.history if "loss" in r]):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6, abs=1e-7)
        assert got["lr"] == want["lr"]
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-5)
    assert resumed.heldout_loss == pytest.approx(sft_run.heldout_loss, rel=1e-6)
    a, b = weights(sft_run.out), weights(resumed.out)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    with pytest.raises(TrainError, match="no checkpoint"):
        run_train(sft_config(model_dir, sft_file, tmp_path / "fresh"), resume=True)


# ---- 2 processes ---------------------------------------------------------------------------------------------

DRIVER = """
import json, sys
from taide.train import TrainConfig, run_train
settings, resume, stop_at = json.loads(sys.argv[1]), sys.argv[2] == "resume", int(sys.argv[3])

def on_step(step, total, values):
    if step == stop_at:
        raise SystemExit(f"stopped at step {step}")

run_train(TrainConfig(**settings), resume=resume, on_step=on_step)
"""


def torchrun(tmp_path, settings: dict, processes: int = 2, resume: bool = False, stop_at: int = 0,
             check: bool = True) -> subprocess.CompletedProcess:
    """``run_train(settings)`` under torchrun; ``stop_at``: process 0 dies at that step (the others are ended by
    torchrun)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(driver), json.dumps(settings),
               "resume" if resume else "start", str(stop_at)]
    # A session of its own, so that a hang (a collective one process never joins) can be ended whole.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun hung (killed after 180 s):\n{stderr[-4000:]}")
    if check:
        assert process.returncode == 0, stderr[-4000:]
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("mode", ["sft", pytest.param("cp", marks=pytest.mark.slow)])
def test_two_processes_match_one(model_dir, sft_file, tmp_path, mode):
    """torchrun --nproc_per_node 2 (gloo, FSDP2) against one process at the same global batch: the same
    per-step losses and held-out loss (to float32 reordering), the same saved weights. SFT: 5 held-out rows,
    so the processes hold different numbers of held-out batches (evaluation must still not hang). CP: both
    processes tokenize into the same cache at once. ``eval_batches`` counts each process's micro-batches, so
    both cover the whole held-out set here (else 2 processes evaluate twice the rows of 1)."""
    if mode == "sft":
        settings = dataclasses.asdict(sft_config(model_dir, sft_file, tmp_path / "two", max_steps=4,
                                                 micro_batch_size=1, eval_batches=8))
    else:
        corpus = write_jsonl(tmp_path / "docs.jsonl",
                             [{"text": " ".join(random.Random(i).choice(WORDS) for _ in range(12 + i % 30))}
                              for i in range(200)])
        settings = dict(mode="cp", model=str(model_dir), data=[str(corpus)], out=str(tmp_path / "two"),
                        seq_len=64, global_batch_tokens=512, micro_batch_size=2, max_steps=4, lr=3e-3,
                        warmup_steps=1, holdout_fraction=0.1, eval_batches=64, seed=0, dtype="float32")
    torchrun(tmp_path, settings)
    one = run_train(TrainConfig(**dict(settings, out=str(tmp_path / "one"))))

    two = metrics(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "data.json").read_text())["accumulation"] * 2 == \
        json.loads((tmp_path / "one" / "data.json").read_text())["accumulation"]
    assert [s for s, _ in losses(two)] == [s for s, _ in losses(one.history)] == [1, 2, 3, 4]
    for (_, got), (_, want) in zip(losses(two), losses(one.history)):
        assert got == pytest.approx(want, rel=1e-5)
    held_two = [r["eval_loss"] for r in two if "eval_loss" in r]
    held_one = [r["eval_loss"] for r in one.history if "eval_loss" in r]
    assert len(held_two) == len(held_one) == 2  # before and after
    assert held_two == pytest.approx(held_one, rel=1e-5)
    a, b = weights(one.out), weights(tmp_path / "two" / "model")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_two_processes_resume_with_lora(model_dir, sft_file, tmp_path):
    """2 processes with LoRA adapters under FSDP2, killed during step 3 after the step-2 checkpoint and resumed:
    the per-step losses and merged weights of one uninterrupted process."""
    settings = dataclasses.asdict(sft_config(model_dir, sft_file, tmp_path / "two", max_steps=4, checkpoint_every=2,
                                             lora={"r": 4, "alpha": 8}))
    stopped = torchrun(tmp_path, settings, stop_at=3, check=False)
    assert stopped.returncode != 0 and "stopped at step 3" in stopped.stderr
    assert (tmp_path / "two" / "checkpoints" / "latest").read_text() == "step-2"
    torchrun(tmp_path, settings, resume=True)
    one = run_train(TrainConfig(**dict(settings, out=str(tmp_path / "one"))))

    two = metrics(tmp_path / "two")
    assert [s for s, _ in losses(two)] == [s for s, _ in losses(one.history)] == [1, 2, 3, 4]
    for (_, got), (_, want) in zip(losses(two), losses(one.history)):
        assert got == pytest.approx(want, rel=1e-5)
    a, b = weights(one.out), weights(tmp_path / "two" / "model")
    assert a.keys() == b.keys() == weights(model_dir).keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)


# ---- the output directory ------------------------------------------------------------------------------------

def test_output_directory_loads_and_stops_at_end_of_turn(sft_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from taide.engines import load_engine
    from taide.engines.params import GenerationParams

    out = sft_run.out
    assert out.name == "model" and (out / "taide_training.json").is_file()
    assert (out.parent / "metrics.jsonl").is_file() and (out.parent / "loss.png").stat().st_size > 1000
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.float32 and model.config.use_cache
    tokenizer = AutoTokenizer.from_pretrained(out)
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert "<|start_header_id|>" in tokenizer.chat_template and "<|eot_id|>" in tokenizer.chat_template
    eos = GenerationConfig.from_pretrained(out).eos_token_id
    assert eot in (eos if isinstance(eos, list) else [eos])
    assert sft_run.heldout_loss < sft_run.heldout_loss_before  # it learned something

    with load_engine(str(out), "transformers") as engine:
        answer = engine.chat([{"role": "user", "content": "hello tea 臺灣"}],
                             GenerationParams(temperature=0, max_tokens=24))
    assert answer.finish_reason == "stop", answer  # ended by the end-of-turn token, not the token budget
    assert answer.text == ANSWER and answer.completion_tokens < 24


# ---- LoRA ----------------------------------------------------------------------------------------------------

def test_lora_trains_only_adapters_and_saves_merged(model_dir, sft_file, tmp_path):
    result = run_train(sft_config(model_dir, sft_file, tmp_path, max_steps=4, lora={"r": 4, "alpha": 8}))
    checkpoint = load_file(tmp_path / "checkpoints" / "step-4" / "model.safetensors")
    assert checkpoint and all("lora_A" in k or "lora_B" in k for k in checkpoint)  # only adapters are state

    base, merged = weights(model_dir), weights(result.out)
    assert merged.keys() == base.keys()  # plain Llama names: no base_model., no lora_ keys
    changed = set()
    for name, before in base.items():
        after = merged[name]
        if any(t in name for t in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")):
            delta = (after - before).double()
            assert torch.linalg.matrix_rank(delta, rtol=1e-6) <= 4, name  # W + B·A: rank ≤ r
            changed.add(name)
            assert delta.abs().max() > 0, name
        else:  # embeddings, norms, the output matrix: frozen
            assert torch.equal(after, before), name
    assert len(changed) == 2 * 7  # every targeted projection of both layers moved
    assert result.heldout_loss < result.heldout_loss_before


# ---- bad SFT records -----------------------------------------------------------------------------------------

def test_bad_records_are_reported_or_fatal(model_dir, sft_file, tmp_path, capfd):
    good = sft_file.read_text(encoding="utf-8").splitlines()
    lines = good[:20] + [
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "OK"}',  # line 21
        json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),  # 22
        json.dumps({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}),  # 23
    ] + good[20:40] + [
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}),  # 44
    ] + good[40:]
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = len(lines)

    # the default refuses more than 1% unusable records, naming the first ones and what to do
    with pytest.raises(InputError, match=rf"^{data}:21: not valid JSON .* 4 of {records} conversations cannot be "
                                         rf"used \(more than 1% is refused\); also {data}:22: .*--on-bad-record skip"):
        run_train(sft_config(model_dir, data, tmp_path / "auto"))
    assert not (tmp_path / "auto" / "model").exists()

    result = run_train(sft_config(model_dir, data, tmp_path / "skip", max_steps=2, on_bad_record="skip"))
    assert result.steps == 2
    shown = capfd.readouterr().err
    assert f"read {records - 4} messages conversations from {data} (4 unusable)" in shown
    assert f"4 of {records} conversations left out" in shown and f"{data}:22: messages: no assistant" in shown
    report = (tmp_path / "skip" / "bad_records.txt").read_text(encoding="utf-8").splitlines()
    assert report[0].startswith(f"{data}:21: not valid JSON (")
    assert report[1:] == [
        f"{data}:22: messages: no assistant message: nothing to learn",
        f"{data}:23: messages[0].role: 'robot' is not one of system, user, assistant",
        f"{data}:44: messages[1].content: expected a non-empty string",
    ]
    summary = json.loads((tmp_path / "skip" / "data.json").read_text())
    assert summary["bad_records"] == 4 and summary["train_rows_epoch0"] > 0
    assert summary["conversations"]["sources"] == [{"path": str(data), "layout": "messages",
                                                    "conversations": records - 4}]

    with pytest.raises(InputError, match=rf"^{data}:21: not valid JSON .* 4 of {records} conversations cannot be used "
                                         r"\(any is refused\)"):
        run_train(sft_config(model_dir, data, tmp_path / "error", on_bad_record="error"))
    assert not (tmp_path / "error" / "model").exists()

    # a record of another layout is no bad record to leave out: the file is not what it seems
    data.write_text("\n".join(good[:5] + [json.dumps({"text": "not a conversation"})]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"^{data}:6: no known layout \(fields 'text'\), but the file's first record "
                                         r"\(line 1\) is messages; a file holds one layout"):
        run_train(sft_config(model_dir, data, tmp_path / "layout", on_bad_record="skip"))


# ---- batch settings chosen from the data when none are given ----------------------------------------------

def _datasets(config: TrainConfig):
    """build_datasets for one process, with the config's model's tokenizer and chat format."""
    from transformers import AutoTokenizer

    from taide.chat.formats import chat_format_for
    from taide.models import resolve_model
    from taide.train.datasets import build_datasets
    from taide.train.parallel import World

    ref = resolve_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    chat_format = chat_format_for(ref.chat_format, tokenizer.chat_template, tokenizer.bos_token, tokenizer.eos_token)
    return build_datasets(config, tokenizer, chat_format, World(0, 1, 0, torch.device("cpu")))


def test_batch_settings_are_chosen_from_sft_data(model_dir, sft_file, tmp_path, capsys):
    """No seq_len, no global_batch_tokens: the smallest power of two that holds the longest conversation, and a batch
    that gives an epoch at least 10 steps, both reported (stderr, data.json) and set on the config."""
    config = TrainConfig(mode="sft", model=str(model_dir), data=[str(sft_file)], out=str(tmp_path), micro_batch_size=2,
                         holdout_fraction=0.125)
    data = _datasets(config)
    longest = max(len(e.input_ids) for e in data.train.dataset.examples + data.heldout_set.examples)
    assert config.seq_len == 1 << (longest - 1).bit_length() >= 16  # the smallest power of two ≥ the longest
    rows = data.train.dataset.num_rows(0)
    assert config.global_batch_tokens % (2 * config.seq_len) == 0
    assert data.steps >= 10 and rows // (2 * config.global_batch_tokens // config.seq_len) < 10  # the largest k
    err = capsys.readouterr().err
    assert f"taide train: read 64 messages conversations from {sft_file}\n" in err
    line = next(line for line in err.splitlines() if "chosen from the data" in line)
    assert line.startswith("taide train: seq_len and global_batch_tokens not given, chosen from the data: ")
    assert (f"seq_len {config.seq_len}: the smallest power of two that holds the longest of 64 conversations "
            f"({longest} tokens), at most the model's context, 256; ") in line
    rows_a_step = config.global_batch_tokens // config.seq_len
    assert f"global_batch_tokens {config.global_batch_tokens:,} ({rows_a_step} rows a step)" in line
    batch = json.loads((tmp_path / "data.json").read_text())["batch"]
    assert batch["chosen"] == ["seq_len", "global_batch_tokens"] and batch["why"] in line
    assert (batch["seq_len"], batch["global_batch_tokens"]) == (config.seq_len, config.global_batch_tokens)


def test_given_batch_settings_are_kept(model_dir, sft_file, tmp_path, capsys):
    given = TrainConfig(mode="sft", model=str(model_dir), data=[str(sft_file)], out=str(tmp_path / "a"), seq_len=128,
                        global_batch_tokens=512, micro_batch_size=2)
    _datasets(given)
    assert (given.seq_len, given.global_batch_tokens) == (128, 512) and "chosen" not in capsys.readouterr().err
    assert json.loads((tmp_path / "a/data.json").read_text())["batch"]["chosen"] == []
    # A given batch with no seq_len: seq_len is chosen (64 holds the longest conversation, 63 tokens), the batch kept.
    batch_only = TrainConfig(mode="sft", model=str(model_dir), data=[str(sft_file)], out=str(tmp_path / "b"),
                             global_batch_tokens=192, micro_batch_size=1)
    _datasets(batch_only)
    assert (batch_only.seq_len, batch_only.global_batch_tokens) == (64, 192)
    assert "taide train: seq_len not given, chosen from the data: seq_len 64: " in capsys.readouterr().err
    with pytest.raises(TrainError, match="global_batch_tokens 96 is not a multiple of .* seq_len 64"):
        _datasets(TrainConfig(mode="sft", model=str(model_dir), data=[str(sft_file)], out=str(tmp_path / "c"),
                              global_batch_tokens=96))


def test_cp_seq_len_leaves_enough_rows(model_dir, tmp_path, capsys):
    """A small corpus is cut into rows short enough to make at least 8 of them; a large one into rows of at
    most the model's context."""
    corpus = write_jsonl(tmp_path / "docs.jsonl", [{"text": f"{i} " + " ".join(WORDS)} for i in range(12)])
    config = TrainConfig(mode="cp", model=str(model_dir), data=[str(corpus)], out=str(tmp_path / "small"),
                         holdout_fraction=0.0)
    data = _datasets(config)
    assert data.train.dataset.num_rows(0) >= 8 and config.seq_len < 256
    assert data.train.dataset.num_rows(0) // config.seq_len < 16  # the largest power of two that leaves 8 rows
    assert f"seq_len {config.seq_len}: the largest power of two that cuts the" in capsys.readouterr().err
    big = write_jsonl(tmp_path / "big.jsonl", [{"text": f"{i} " + " ".join(WORDS * 20)} for i in range(300)])
    config = TrainConfig(mode="cp", model=str(model_dir), data=[str(big)], out=str(tmp_path / "big"),
                         holdout_fraction=0.0)
    _datasets(config)
    assert config.seq_len == 256  # the tiny model's context


def test_train_with_no_batch_settings_on_a_small_file(model_dir, sft_file, tmp_path):
    """`taide train sft --model M --data small.jsonl --out run`: it trains (the card's 1M-token batch would not
    fit this file), says what it chose, and records it with the run's settings."""
    taide = str(Path(sys.executable).with_name("taide"))
    result = subprocess.run([taide, "train", "sft", "--model", str(model_dir), "--data", str(sft_file), "--out",
                             str(tmp_path / "run"), "--max-steps", "2"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COLUMNS": "300"})
    if "seq_len and global_batch_tokens are not set" in result.stderr:
        pytest.skip("trainer.py computes the accumulation before build_datasets (issue #17: move that line after it)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not given, chosen from the data: seq_len " in result.stderr and "2 steps" in result.stdout
    saved = json.loads((tmp_path / "run/model/taide_training.json").read_text())
    batch = json.loads((tmp_path / "run/data.json").read_text())["batch"]
    assert (saved["seq_len"], saved["global_batch_tokens"]) == (batch["seq_len"], batch["global_batch_tokens"])
    assert saved["seq_len"] <= 256 and batch["chosen"] == ["seq_len", "global_batch_tokens"]


# ---- the real thing: continued pretraining of the embedded default on law text -------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not LAWS.is_file(), reason=f"{LAWS} is absent (it ships only with the project checkout)")
def test_continued_pretraining_on_laws_lowers_heldout_perplexity(tmp_path):
    """SmolLM2-135M (the embedded default), 300 Taiwan laws (5% held out by text hash), 20 steps of 2 × 128
    tokens at lr 1e-4: the held-out perplexity after is clearly lower than before (measured: 14.7 -> 7.3).
    About 70 s on 2 idle cores, a quarter of it loading (dequantizing) the GGUF."""
    started = time.perf_counter()
    records = []
    with gzip.open(LAWS, "rt", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line).get("text", "")
            if len(text) >= 200:
                records.append({"text": text[:1500]})
            if len(records) == 300:
                break
    data = write_jsonl(tmp_path / "laws.jsonl", records)
    config = TrainConfig(mode="cp", model="smollm2-135m", data=[str(data)], out=str(tmp_path / "run"), seq_len=128,
                         global_batch_tokens=256, micro_batch_size=2, max_steps=20, lr=1e-4, warmup_steps=2,
                         holdout_fraction=0.05, eval_batches=4, seed=0)
    result = run_train(config)
    seconds = time.perf_counter() - started
    before, after = math.exp(result.heldout_loss_before), result.heldout_perplexity
    print(f"held-out perplexity {before:.2f} -> {after:.2f} in {result.steps} steps, {seconds:.0f} s")
    assert result.steps == 20
    assert after < 0.8 * before


# ---- decontamination of the SFT set ---------------------------------------------------------------------------

def test_sft_conversations_holding_evaluation_items_are_left_out(model_dir, tmp_path, capsys):
    """`taide train sft --decontaminate EVAL`: a conversation whose user turn is an exam question (in Simplified, the
    options reordered) or whose answer is a bench reference is left out and reported; tag keeps and reports it."""
    exam = tmp_path / "exam" / "公民_test.csv"
    exam.parent.mkdir()
    exam.write_text("question,A,B,C,D,answer\n依據我國現行制度，全民健康保險的主管機關為下列哪一個中央機關？,衛生福利部,勞動部,"
                    "內政部,財政部,A\n", encoding="utf-8")
    bench = tmp_path / "zh2en.jsonl"
    bench.write_text(json.dumps({"qid": "zh2en-9", "prompt": "請翻譯成英文。\n\n颱風即將來襲，市政府宣布明天停止上班上課。",
                                 "reference": "A typhoon is approaching, so the city government has announced that "
                                              "offices and schools will be closed tomorrow."}, ensure_ascii=False) + "\n")
    records = [{"messages": [{"role": "user", "content": f"第{i}題：請用一句話介紹臺灣的第{i}個特色。"},
                             {"role": "assistant", "content": ANSWER}]} for i in range(10)]
    records.insert(3, {"messages": [{"role": "user", "content": "依据我国现行制度,全民健康保险的主管机关为下列哪一个中央机关?"
                                                                "(A)内政部(B)卫生福利部(C)劳动部(D)财政部"},
                                    {"role": "assistant", "content": "(B)"}]})
    records.insert(7, {"messages": [{"role": "user", "content": "Translate the news headline for me."},
                                    {"role": "assistant", "content": "A typhoon is approaching, so the city government "
                                     "has announced that offices and schools will be closed tomorrow."}]})
    data = write_jsonl(tmp_path / "sft.jsonl", records)
    config = TrainConfig(mode="sft", model=str(model_dir), data=[str(data)], out=str(tmp_path / "drop"),
                         holdout_fraction=0, decontaminate=[str(exam.parent), str(bench)], seq_len=256,
                         global_batch_tokens=256)
    assert len(_datasets(config).train.dataset.examples) == 10
    report = json.loads((tmp_path / "drop" / "decontamination.json").read_text())
    assert {f["item"]: [d["id"] for d in f["documents"]] for f in report["found"]} == {
        "exam/公民/2": [f"{data}:4"], "zh2en/zh2en/zh2en-9:reference": [f"{data}:8"]}
    assert report["what"] == "conversations" and report["removed"] == 2
    assert "2 of 12 conversations held evaluation items (2 left out" in capsys.readouterr().err
    tagged = dataclasses.replace(config, out=str(tmp_path / "tag"), decontaminate_action="tag")
    assert len(_datasets(tagged).train.dataset.examples) == 12
    assert len(json.loads((tmp_path / "tag" / "decontamination.json").read_text())["seen_keys"]) == 2
    with pytest.raises(TrainError, match="taide data clean"):
        TrainConfig(mode="cp", model="m", data=["d"], out="o", decontaminate=[str(exam)])
    with pytest.raises(TrainError, match="not drop or tag"):
        TrainConfig(mode="sft", model="m", data=["d"], out="o", decontaminate=[str(exam)], decontaminate_action="cut")


def test_a_data_vocabulary_head_is_the_softmax_over_the_data_tokens(model_dir, sft_file, tmp_path):
    """head_vocabulary: data computes the loss over the tokens the data holds: with every token it is the full loss;
    with the data's tokens it is the cross-entropy of the logits of those rows alone. A run trains with it."""
    from transformers import AutoModelForCausalLM

    from taide.train.model import DataHead
    from taide.train.trainer import token_loss_sum

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(5, vocab, (2, 24), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "position_ids": torch.arange(24).repeat(2, 1),
             "labels": torch.where(torch.arange(24) % 3 == 0, -100, ids)}
    plain = contextlib.nullcontext  # float32, no autocast
    full, n = token_loss_sum(model, batch, plain)
    every, m = token_loss_sum(model, batch, plain, DataHead(model, range(vocab), torch.device("cpu")))
    assert n == m and torch.allclose(full, every, rtol=1e-5)
    wanted = torch.unique(batch["labels"][batch["labels"] != -100])
    part, _ = token_loss_sum(model, batch, plain, DataHead(model, wanted, torch.device("cpu")))
    logits = model(input_ids=ids, position_ids=batch["position_ids"]).logits[:, :-1][..., wanted]
    targets = batch["labels"][:, 1:]
    index = {int(t): i for i, t in enumerate(wanted)}
    remapped = targets.clone().apply_(lambda t: index.get(t, -100))
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), remapped.flatten(), ignore_index=-100,
                                                 reduction="sum")
    assert torch.allclose(part, expected, rtol=1e-5) and part < full

    result = run_train(sft_config(model_dir, sft_file, tmp_path / "run", head_vocabulary="data", max_steps=3))
    assert result.steps == 3 and math.isfinite(result.final_loss)
    with pytest.raises(TrainError, match="head_vocabulary: 'all' is not full or data"):
        sft_config(model_dir, sft_file, tmp_path / "x", head_vocabulary="all")
