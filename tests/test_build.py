"""`taide build`: the plan's arithmetic, and the chain on a tiny model — skip, rerun and resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from taide.builder.plan import gpu_hours, model_shape
from taide.builder.recipe import BuildError, load_build_recipe
from taide.builder.runner import BuildConfig, run_build

ROOT = Path(__file__).resolve().parents[1]


def test_the_cards_recipe_plans_the_cards_compute():
    """8.03B parameters, 8K context, 43B tokens → ≈ 5.8e10 FLOPs per token → ≈ 2,336 H100-hours at 30% MFU."""
    plan = run_build(BuildConfig(ROOT / "recipes/build/llama3-taide-8b.yaml", dry_run=True)).plan
    assert abs(plan["parameters"] - 8.03e9) < 0.01e9
    cp = next(s for s in plan["stages"] if s["stage"] == "cp")
    # by hand: 6 × (8.030e9 − 128256 × 4096) + 12 × 32 layers × 32 heads × 128 × 8192
    by_hand = 6 * (8_030_261_248 - 128_256 * 4096) + 12 * 32 * 32 * 128 * 8192
    assert cp["flops_per_token"] == by_hand and abs(by_hand - 5.79e10) < 0.01e10
    assert abs(cp["gpu_hours"] - 43e9 * by_hand / (989e12 * 0.30) / 3600) < 1e-6
    assert abs(cp["gpu_hours"] - 2336) / 2336 < 0.01
    assert [s["stage"] for s in plan["stages"]] == ["data", "cp", "sft", "export", "eval", "card"]


def test_shapes_agree_with_a_real_config(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from taide.train.metrics import flops_per_token

    shape, _ = model_shape(str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert shape.parameters == sum(p.numel() for p in model.parameters())
    assert shape.flops_per_token(256) == flops_per_token(model, 256)
    with pytest.raises(Exception, match="not one of"):
        gpu_hours(1e9, 1e9, "tpu", 0.3)


def _write_once(path: Path, text: str) -> Path:
    if not path.exists():  # a rewritten input (new mtime) counts as changed, as in make
        path.write_text(text, encoding="utf-8")
    return path


def _tiny_recipe(tmp_path: Path, model_dir: Path, **changes) -> Path:
    texts = ["臺灣的夜市文化源遠流長，從士林到六合，各地攤商以小吃與人情味吸引遊客。" * 3,
             "颱風來襲前，中央氣象署提醒民眾做好防颱準備，並留意山區豪雨與土石流。" * 3,
             "捷運新路線通車後，通勤時間縮短，沿線商圈也帶動了周邊的房地產市場。" * 3]
    leak = "在台灣搭公車，要怎麼知道下一班車什麼時候來？"  # one of the Taiwan prompts the build is measured on
    corpus = _write_once(tmp_path / "raw.jsonl", "".join(
        json.dumps({"id": f"d{i}", "text": f"{i}號：" + texts[i % 3] + f"第{i}篇。"}, ensure_ascii=False) + "\n"
        for i in range(40)) + json.dumps({"id": "leak", "text": "網友發問：" + leak + "大家推薦用公車動態系統，"
                                          "站牌上的電子看板和手機程式都能查到。"}, ensure_ascii=False) + "\n")
    sft = _write_once(tmp_path / "sft.jsonl", "".join(
        json.dumps({"messages": [{"role": "user", "content": f"請介紹第{i}個景點。" if i != 5 else leak},
                                 {"role": "assistant", "content": f"第{i}個景點在花蓮，風景優美。"}]}, ensure_ascii=False)
        + "\n" for i in range(24)))
    pairs = _write_once(tmp_path / "pairs.jsonl", "".join(
        json.dumps({"id": f"p{i}", "task": "zh2en", "source": "今天天氣很好。", "reference": "The weather is nice today."})
        + "\n" for i in range(3)))
    recipe = {"name": "tiny", "base_model": str(model_dir), "out": str(tmp_path / "build"),
              "data": {"inputs": [str(corpus)], "workers": 1},
              "cp": {"seq_len": 64, "global_batch_tokens": 256, "micro_batch_size": 4, "max_steps": 3,
                     "holdout_fraction": 0.2, "eval_batches": 2, "lr": 1e-3},
              "sft": {"data": [str(sft)], "seq_len": 128, "global_batch_tokens": 256, "micro_batch_size": 2,
                      "max_steps": 3, "holdout_fraction": 0.2, "eval_batches": 1, "lr": 1e-3},
              "export": {"format": "gguf", "quant": "f16", "verify": False},
              "eval": {"max_tokens": 8, "heldout_pairs": str(pairs), "tasks": ["zh2en"]}}
    for key, value in changes.items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) else value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def test_chain_skips_reruns_and_resumes(tmp_path, tiny_model_dir):
    events = []
    record = lambda kind, stage, _: events.append((kind, stage))  # noqa: E731
    first = run_build(BuildConfig(_tiny_recipe(tmp_path, tiny_model_dir)), on_event=record)
    stages = ["data", "cp", "sft", "export", "eval", "card"]
    assert [s for k, s in events if k == "done"] == stages
    card = Path(first.results["card"].card).read_text(encoding="utf-8")
    for heading in ("## 模型簡介", "## 模型參數", "## 特色", "## 使用說明", "## 訓練方法", "## 訓練資料", "## 模型評測",
                    "## 免責聲明"):
        assert heading in card
    # Neither the corpus nor the SFT set may hold what the build is measured on: the Taiwan prompt in each is left out.
    results = first.results
    assert results["data"].decontamination["removed"] == 1 and results["data"].removed["decontaminate:contaminated"] == 1
    assert results["sft"].decontamination["removed"] == 1
    assert results["data"].decontamination["benchmarks"]["taiwan-prompts"]["found"] == 1
    assert "### 評測資料污染檢查" in card and "| taiwan-prompts | 40 | 40 | 1（1） | 1（1） |" in card
    assert (tmp_path / "build/data/cleaned/decontamination.md").is_file() and (tmp_path / "build/sft/decontamination.md").is_file()
    proof = first.results["eval"].proof
    assert proof["heldout_perplexity"]["rows"] > 0 and "within_noise" in proof["heldout_chrf"]
    manifest = json.loads((tmp_path / "build/cp/manifest.json").read_text())
    assert manifest["complete"] and manifest["versions"]["torch"] and manifest["result"]["steps"] == 3

    events.clear()  # nothing changed: everything is skipped
    run_build(BuildConfig(_tiny_recipe(tmp_path, tiny_model_dir)), on_event=record)
    assert [k for k, _ in events] == ["skip"] * 6

    events.clear()  # a changed SFT setting reruns SFT and what follows, not data or CP
    run_build(BuildConfig(_tiny_recipe(tmp_path, tiny_model_dir, sft={"lr": 5e-4})), on_event=record)
    assert [s for k, s in events if k == "skip"] == ["data", "cp"]
    assert [s for k, s in events if k == "done"] == ["sft", "export", "eval", "card"]

    events.clear()  # killed during export: the next run resumes there

    def die_at_export(kind, stage, manifest):
        record(kind, stage, manifest)
        if (kind, stage) == ("start", "export"):
            raise KeyboardInterrupt

    recipe = _tiny_recipe(tmp_path, tiny_model_dir, export={"quant": "q8_0"})
    with pytest.raises(KeyboardInterrupt):
        run_build(BuildConfig(recipe), on_event=die_at_export)
    events.clear()
    run_build(BuildConfig(recipe), on_event=record)
    assert [s for k, s in events if k == "skip"] == ["data", "cp", "sft"]
    assert [s for k, s in events if k == "done"] == ["export", "eval", "card"]


def test_bad_recipes_are_named(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nbase_model: smollm2-135m\ncp_steps: 3\n")
    with pytest.raises(BuildError, match=r"r.yaml:3: cp_steps: unknown key 'cp_steps'; known: base_model, "):
        run_build(BuildConfig(bad, dry_run=True))
    with pytest.raises(BuildError, match="--from train: not a stage"):
        run_build(BuildConfig(None, str(tmp_path / "o"), from_stage="train"))


# ---- recipes checked when loaded ------------------------------------------------------------------------------

@pytest.mark.parametrize("stage, body, key, message", [
    ("cp", "cp:\n  seq_len: 64\n  expected_token: 5\n", "expected_token", r" \(did you mean 'expected_tokens'\?\)"),
    ("eval", "eval:\n  max_token: 8\n", "max_token", r" \(did you mean 'max_tokens'\?\)"),
    ("data", "data:\n  input: [sample:data]\n", "input", r" \(did you mean 'inputs'\?\)"),
    ("export", "export:\n  format: gguf\n  qaunt: q4_k_m\n", "qaunt", r" \(did you mean 'quant'\?\)"),
    ("sft", "sft:\n  learning_rate: 1.0e-4\n", "learning_rate", ""),
])
def test_a_key_no_stage_takes_is_named_with_file_line_stage_and_key(tmp_path, stage, body, key, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nbase_model: smollm2-135m\n" + body)
    line = 3 + next(i for i, text in enumerate(body.splitlines()) if text.strip().startswith(key))
    with pytest.raises(BuildError, match=rf"r.yaml:{line}: {stage}.{key}: unknown key '{key}'{message}"
                                         rf"; the {stage} section takes: .*") as caught:
        run_build(BuildConfig(recipe, dry_run=True))
    known = str(caught.value).split("takes: ")[1].split(", ")
    assert known == sorted(known) and key not in known
    if stage in ("cp", "sft"):  # TrainConfig's fields but those the build sets, and the plan-only keys
        assert {"seq_len", "lr", "expected_tokens"} <= set(known) and not {"mode", "model", "out"} & set(known)
        assert ("data" in known) == (stage == "sft")


@pytest.mark.parametrize("body, match", [
    ("cp: [1]\n", r"r.yaml:3: cp: expected a mapping of settings \(or null to skip the stage\), got list"),
    ("cp:\n  lr: 1e-4\n", r"r.yaml:4: cp.lr: '1e-4' is not a number \(YAML reads a number like 1e-4 as text: "
                          r"write 1.0e-4\)"),
    ("cp:\n  schedule: linear\n", r"r.yaml:4: cp.schedule: 'linear' is not cosine or wsd"),
    ("cp:\n  seq_len: 64\n  micro_batch_size: 3\n  global_batch_tokens: 1000\n",
     r"r.yaml:6: cp.global_batch_tokens: global_batch_tokens 1,000 is not a multiple of micro_batch_size 3"),
    ("cp:\n  expected_tokens: lots\n", r"r.yaml:4: cp.expected_tokens: 'lots' is not a number of tokens"),
    ("sft:\n  data: sample:sfT\n", r"r.yaml:4: sft.data: 'sample:sfT' names no shipped sample"),
    ("export:\n  quant: q4_k_n\n", r"r.yaml:4: export.quant: 'q4_k_n' is not a quantization; known: .*q4_k_m"),
    ("export:\n  format: onnx\n", r"r.yaml:4: export.format: 'onnx' is not one of gguf, hf"),
    ("eval:\n  heldout_rows: 0\n", r"r.yaml:4: eval.heldout_rows: 0 is not a whole number of at least 1"),
    ("data:\n  inputs: raw/\n", r"r.yaml:4: data.inputs: 'raw/' is not a list of paths"),
    ("data: null\n", r"r.yaml:3: data: null skips the data stage, but cp trains on its output"),
    ("compute: h100\n", r"r.yaml:3: compute: expected a mapping"),
    ("probe_endpoints: yes please\n", r"r.yaml:3: probe_endpoints: 'yes please' is not true or false"),
])
def test_values_a_stage_would_fail_on_are_named(tmp_path, body, match):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nbase_model: smollm2-135m\n" + body)
    with pytest.raises(BuildError, match=match):
        run_build(BuildConfig(recipe, dry_run=True))


def test_every_shipped_build_recipe_loads():
    from taide.builder.recipe import DEFAULT_RECIPE, load_build_recipe

    recipes = sorted((ROOT / "recipes/build").glob("*.yaml")) + [DEFAULT_RECIPE]
    assert len(recipes) >= 2
    for path in recipes:
        recipe = load_build_recipe(path)
        assert recipe.name and recipe.base_model, path


def test_expected_tokens_informs_the_plan_and_never_reaches_training(tmp_path, monkeypatch):
    """The card's recipe gives cp.expected_tokens (43B) for the plan; the cp and sft stages get TrainConfig
    without it (TrainConfig would refuse the key)."""
    import taide.train
    from taide.builder import stages
    from taide.builder.recipe import load_build_recipe
    from taide.train import TrainResult

    recipe = load_build_recipe(ROOT / "recipes/build/llama3-taide-8b.yaml")
    assert recipe.expected_tokens == {"cp": 43e9, "sft": 1.3e8}
    plan = run_build(BuildConfig(ROOT / "recipes/build/llama3-taide-8b.yaml", dry_run=True)).plan
    assert next(s for s in plan["stages"] if s["stage"] == "cp")["tokens_from"] == "given in the recipe"

    configs = []

    def fake_train(config, resume=False, on_step=None):
        configs.append(config)
        return TrainResult(tmp_path / config.mode / "model", 1, 1, 1.0, 1.0, 1.0)

    monkeypatch.setattr(taide.train, "run_train", fake_train)
    cleaned = stages.DataStageResult(str(tmp_path / "cleaned"), 1, 1, 0, {}, {}, {}, None)
    cp = stages.run_cp(recipe, tmp_path / "cp", {"data": cleaned})
    stages.run_sft(recipe, tmp_path / "sft", {"data": cleaned, "cp": cp})
    assert [c.mode for c in configs] == ["cp", "sft"]
    for config in configs:
        assert "expected_tokens" not in config.to_dict()
        assert config.seq_len == 8192  # the card's settings reach training as given
    assert configs[0].global_batch_tokens == 1 << 20 and configs[1].global_batch_tokens == 1 << 18


def test_the_gemma_card_recipe_says_its_published_hours_cannot_be_full_training():
    """Gemma-3-TAIDE 12B: 46B tokens at 32K context on gemma-3-12b's shape. Five of six layers attend to a 1,024-token
    window, so the attention term is 12 × 16 heads × 256 × (8 × 32768 + 40 × 1024), not × 48 × 32768; the card's
    642 H200-hours would need an MFU above 100%."""
    plan = run_build(BuildConfig(ROOT / "recipes/build/gemma-3-taide-12b.yaml", dry_run=True)).plan
    cp = next(s for s in plan["stages"] if s["stage"] == "cp")
    by_hand = 6 * plan["parameters"] + 12 * 16 * 256 * (8 * 32768 + 40 * 1024)
    assert cp["flops_per_token"] == by_hand
    assert 11.7e9 < plan["parameters"] < 11.9e9  # gemma-3-12b's text model
    published = plan["published"]
    assert published["gpu_hours"] == 642 and published["implied_mfu"] > 1.5
    assert abs(published["implied_mfu"] - published["training_flops"] / (642 * 3600 * 989e12)) < 1e-9


def test_sliding_window_layers_attend_to_their_window_only():
    from taide.train.metrics import attended_positions

    full = {"num_hidden_layers": 12}
    gemma = {"num_hidden_layers": 12, "sliding_window": 512, "sliding_window_pattern": 6}
    assert attended_positions(full, 8192) == 12 * 8192
    assert attended_positions(gemma, 8192) == 2 * 8192 + 10 * 512
    assert attended_positions(gemma, 256) == 12 * 256  # shorter than the window: every layer sees it all
    typed = {"num_hidden_layers": 3, "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention",
                                                                           "sliding_attention"]}
    assert attended_positions(typed, 10) == 4 + 10 + 4


# --- --smoke: every shipped recipe end to end at toy scale ------------------------------------------------------

# The card's recipes (Ray, torchrun) in the full suite; the SmolLM2 demo in the fast tier as well.
@pytest.mark.parametrize("name", [pytest.param(p.stem, marks=[] if p.stem == "smollm2-demo" else pytest.mark.slow)
                                  for p in sorted((ROOT / "recipes/build").glob("*.yaml"))])
def test_every_shipped_recipe_runs_smoke_to_a_model_card(tmp_path, monkeypatch, offsite, name):
    """`taide build RECIPE --smoke`: the card's recipes (Llama 3 8B, Gemma 3 12B: weights and data not on this
    machine, a judge at api.openai.com) run every stage on a tiny model of their family with their own executors
    (local Ray, 2 torchrun processes); the SmolLM2 demo on its own small base. Each stage leaves a complete manifest;
    the card says it is a smoke build; the export passes its verification against transformers. Nothing it runs
    tries to reach past this machine (the offsite guard, in a loopback-only namespace where the suite has one), and
    the local Ray (whatever RAY_ADDRESS names) is gone afterwards."""
    from conftest import free_port
    from taide.builder.recipe import load_build_recipe
    from taide.models import resolve_model

    monkeypatch.setenv("TAIDE_CACHE", str(tmp_path / "cache"))  # a smoke build must not become `taide chat`'s default
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")  # a dead cluster: the smoke's Ray is its own
    recipe = load_build_recipe(ROOT / f"recipes/build/{name}.yaml")
    result = run_build(BuildConfig(ROOT / f"recipes/build/{name}.yaml", str(tmp_path / "out"), smoke=True))
    results = result.results
    assert list(results) == ["data", "cp", "sft", "export", "eval", "card"]
    for stage in results:
        manifest = json.loads((tmp_path / "out" / stage / "manifest.json").read_text())
        assert manifest["complete"], stage
    data = results["data"]
    assert data.kept > 0 and data.read == data.kept + sum(data.removed.values()) + data.unreadable
    expected_processes = 2 if recipe.launch.train else 1
    for stage in ("cp", "sft"):
        assert results[stage].steps == 2 and results[stage].processes == expected_processes
        assert (tmp_path / "out" / stage / "checkpoints").is_dir() and results[stage].heldout_loss is not None
    assert results["export"].verification["ok"] and results["export"].quant == recipe.export.quant

    # a tiny stand-in of the base's family and chat format, however small the base (SmolLM2 is 135M)
    model = resolve_model(results["sft"].model)
    config = json.loads((Path(results["sft"].model) / "config.json").read_text())
    family = {"llama3-taide-8b": "llama3", "gemma-3-taide-12b": "gemma", "smollm2-demo": "template"}[name]
    assert config["hidden_size"] == 256 and model.chat_format == family
    if name == "smollm2-demo":  # the embedded GGUF's own ChatML template, on a tiny Llama
        assert "<|im_start|>" in model.chat_template and "smollm2-135m's chat template" in result.smoke[0]
    else:
        judge = json.loads(Path(results["eval"].bench["report"]["json"]).read_text())["runs"][0]["judge"]
        assert judge["engine"] == "stub"  # in place of the recipe's judge, which is never asked
        assert "the recipe's judge https://api.openai.com/v1, not contacted" in " ".join(result.smoke)
    card = Path(results["card"].card).read_text(encoding="utf-8")
    assert "Smoke 建置" in card and all(change in card for change in result.smoke)
    assert not (tmp_path / "cache" / "latest-build.json").exists()
    assert offsite.attempts() == []
    if recipe.data.executor == "ray":
        import ray

        assert not ray.is_initialized()


def test_smoke_takes_a_few_records_of_the_inputs_that_are_here(tmp_path, monkeypatch, tiny_model_dir):
    """When the recipe's base, corpus, SFT set and bench are on the machine, --smoke keeps the base's tokenizer
    (shrinking only the layers) and takes the first records of each; a missing input is said. The recipe's judge is
    not contacted: a stub stands in; with probe_endpoints it is asked, and kept when it answers."""
    from transformers import AutoTokenizer

    from conftest import StubJudge, free_port, write_jsonl
    from taide.builder import smoke
    from taide.builder.recipe import load_build_recipe

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "laws.jsonl", [{"id": i, "text": f"第{i}條 本法所稱主管機關為內政部。" * 5} for i in range(100)])
    conversations = [{"messages": [{"role": "user", "content": f"問題{i}"}, {"role": "assistant", "content": "回答"}]}
                     for i in range(100)]
    write_jsonl(tmp_path / "sft.jsonl", conversations)
    recipe_path = tmp_path / "recipe.yaml"

    def write_recipe(judge: str) -> Path:
        recipe_path.write_text(yaml.safe_dump({
            "name": "t", "base_model": str(tiny_model_dir), "out": "/nowhere/run",
            "data": {"inputs": [str(corpus), "/nowhere/news"]}, "sft": {"data": [str(tmp_path / "sft.jsonl")]},
            "eval": {"judge_endpoint": judge, "judge_model": "gpt-4"}}), encoding="utf-8")
        return recipe_path

    with StubJudge() as judge:
        recipe = smoke.smoke_recipe(load_build_recipe(write_recipe(judge.url)), str(tmp_path / "out"))
        assert judge.requests == []  # not even asked whether it answers
        assert recipe.eval.judge_model == "stub" and recipe.eval.judge_endpoint is None
        assert f"eval: a stub judge (scores mean nothing) in place of the recipe's judge {judge.url}, not contacted " \
               "(--probe-endpoints asks whether it answers)" in recipe.smoke
        probed = smoke.smoke_recipe(load_build_recipe(write_recipe(judge.url)), str(tmp_path / "out"), True)
        assert judge.requests == [("GET", "/v1/models")] and probed.eval.judge_endpoint == judge.url
        assert f"eval: the recipe's judge {judge.url} answers (--probe-endpoints): it judges the answers" in probed.smoke
    silent = f"http://127.0.0.1:{free_port()}/v1"
    probed = smoke.smoke_recipe(load_build_recipe(write_recipe(silent)), str(tmp_path / "out"), True)
    assert probed.eval.judge_model == "stub" and f"{silent}, which does not answer (" in " ".join(probed.smoke)

    base = Path(recipe.base_model)
    assert base == tmp_path / "out/smoke/base"
    assert len(AutoTokenizer.from_pretrained(base)) == len(AutoTokenizer.from_pretrained(tiny_model_dir))
    sampled = list((tmp_path / "out/smoke/inputs").iterdir())
    assert len(sampled) == 1 and len(sampled[0].read_text(encoding="utf-8").splitlines()) == smoke.DOCUMENTS
    assert len(Path(recipe.sft.data[0]).read_text(encoding="utf-8").splitlines()) == smoke.CONVERSATIONS
    assert "data: 20 documents from the 1 of 2 inputs here" in recipe.smoke
    with pytest.raises(BuildError, match="choose one"):
        run_build(BuildConfig(recipe_path, dry_run=True, smoke=True))
    with pytest.raises(BuildError, match="--probe-endpoints lets a --smoke build contact"):
        run_build(BuildConfig(recipe_path, probe_endpoints=True))


def test_recipe_sections_are_the_commands_configs(tmp_path):
    """A recipe's sections load as `taide data clean`'s, `taide train`'s and `taide export`'s own configs (and the
    build's eval config), ``sample:`` resolved and defaults from the configs; what the build sets is refused."""
    from taide.builder.recipe import SAMPLES, BuildEvalConfig
    from taide.data import CleanConfig
    from taide.export import ExportConfig
    from taide.train import TrainConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nbase_model: smollm2-135m\neval:\n  bench: sample:bench\n  max_tokens: 64\n"
                      "sft:\n  data: sample:sft\n  lr: 2.0e-5\n", encoding="utf-8")
    loaded = load_build_recipe(recipe)
    assert isinstance(loaded.data, CleanConfig) and isinstance(loaded.export, ExportConfig)
    assert loaded.eval == BuildEvalConfig(max_tokens=64) and loaded.eval.bench == str(SAMPLES["bench"])
    assert loaded.sft == TrainConfig(mode="sft", data=[str(SAMPLES["sft"])], lr=2e-5,
                                     decontaminate=[str(SAMPLES[k]) for k in ("bench", "taiwan", "pairs")])
    assert loaded.cp.model is None and loaded.cp.out is None and loaded.data.out_dir is None  # the build sets them
    assert (loaded.export.quant, loaded.export.verify) == ("q8_0", True)  # the build's defaults, not the command's
    recipe.write_text("name: r\nbase_model: smollm2-135m\neval:\n  max_token: 64\n", encoding="utf-8")
    with pytest.raises(BuildError, match=r"r.yaml:4: eval.max_token: unknown key 'max_token' \(did you mean 'max_tokens'"):
        load_build_recipe(recipe)
    recipe.write_text("name: r\nbase_model: smollm2-135m\nsft:\n  model: other\n", encoding="utf-8")
    with pytest.raises(BuildError, match=r"r.yaml:4: sft.model: unknown key 'model' \(the build sets model itself\)"):
        load_build_recipe(recipe)


def test_sft_data_mapped_by_source_is_fingerprinted_file_by_file(tmp_path):
    """An sft stage whose data maps sources to files (as TrainConfig takes it): the stage's input hash covers each
    file, and changes when one of them does."""
    from taide.builder.runner import input_hash

    (tmp_path / "a.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nbase_model: smollm2-135m\ncp: null\ndata: null\nsft:\n  data:\n"
                      f"    office: [{tmp_path / 'a.jsonl'}]\n    daily: {tmp_path / 'b.jsonl'}\n", encoding="utf-8")
    loaded = load_build_recipe(recipe)
    assert loaded.sft_files() == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    before = input_hash(loaded, "sft", {})
    (tmp_path / "b.jsonl").write_text('{"messages": []}\n{"messages": []}\n', encoding="utf-8")
    assert input_hash(loaded, "sft", {}) != before


# --- what each stage hands its component, pinned ------------------------------------------------------------------

GOLDEN = ROOT / "tests/data/build/golden.json"


def _golden_recipes() -> dict[str, Path]:
    from taide.builder.recipe import DEFAULT_RECIPE

    recipes = {p.stem: p for p in sorted((ROOT / "recipes/build").glob("*.yaml"))}
    recipes["default"] = DEFAULT_RECIPE
    recipes.update({p.stem: p for p in sorted((ROOT / "tests/data/build").glob("*.yaml"))})
    return recipes


def _what_stages_receive(recipe: Path, out: Path, smoke: bool, monkeypatch) -> dict:
    """run_build with the components (clean, train, export) and the eval stage recording what they are given, as
    JSON with this run's folders written <tmp>, the package's <pkg> and the repository's <root>."""
    import dataclasses

    import taide.data
    import taide.export
    import taide.train
    import taide.train.launch
    from taide.builder import runner
    from taide.builder.card import CardStageResult
    from taide.builder.recipe import PACKAGE
    from taide.builder.stages import EvalStageResult
    from taide.data.clean import CleanResult
    from taide.export.api import ExportResult
    from taide.train import TrainResult

    got = {}

    def clean(config, on_progress=None):
        got["data"] = dataclasses.asdict(config)
        return CleanResult(Path(config.out_dir), 1, 1, {}, 0, {"stages": {}, "sources": {}})

    def train(config, processes=1, resume=False, on_step=None):
        got[config.mode] = {"config": config.to_dict(), "processes": processes}
        return TrainResult(Path(config.out) / "model", 1, 1, 1.0, 1.0, 1.0, heldout=Path(config.out) / "heldout.npz")

    def export(config, progress=None):
        got["export"] = dataclasses.asdict(config)
        return ExportResult(Path(config.out) / "m.gguf", config.format, config.quant, 1)

    def evaluate(recipe, directory, upstream, report=None):
        got["eval"] = dataclasses.asdict(recipe.eval)
        return EvalStageResult({}, {}, {}, {})

    monkeypatch.setattr(taide.data, "run_clean", clean)
    monkeypatch.setattr(taide.train, "run_train", lambda config, resume=False, on_step=None: train(config))
    monkeypatch.setattr(taide.train.launch, "train_in_processes", train)
    monkeypatch.setattr(taide.export, "run_export", export)
    monkeypatch.setitem(runner.RUNNERS, "eval", evaluate)
    monkeypatch.setattr(runner, "write_card", lambda *_: CardStageResult(""))
    result = run_build(BuildConfig(recipe, str(out), smoke=smoke))
    text = json.dumps({"stages": got, "plan": result.plan, "smoke": result.smoke}, default=str, sort_keys=True)
    for place, name in ((out.parent, "<tmp>"), (PACKAGE, "<pkg>"), (ROOT, "<root>")):
        text = text.replace(str(place), name)
    return json.loads(text)


def test_each_stage_receives_the_configs_it_always_has(tmp_path, monkeypatch):
    """Every shipped and test recipe, as written and --smoke: the config each stage hands clean, train and export,
    the eval settings and the plan are those pinned in tests/data/build/golden.json. It was written before the
    recipe's sections became typed configs and changed only where a change was meant (see its commit): a refactor of
    the recipe, the loader or --smoke that changes what a build does fails here. TAIDE_UPDATE_GOLDEN=1 rewrites it."""
    monkeypatch.setenv("TAIDE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    got = {}
    for name, recipe in _golden_recipes().items():
        for smoke in (False, True):
            out = tmp_path / f"{name}{'-smoke' if smoke else ''}" / "out"
            got[f"{name}{' --smoke' if smoke else ''}"] = _what_stages_receive(recipe, out, smoke, monkeypatch)
    if os.environ.get("TAIDE_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    pinned = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(got) == sorted(pinned)
    for case in pinned:
        assert got[case] == pinned[case], case
