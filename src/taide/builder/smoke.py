"""`taide build RECIPE --smoke`: every stage of a recipe at toy scale, on a laptop, before the cluster.

The smoke build runs the recipe as written — its stages, executors, training settings, chat format, export and
evaluation — with only what makes it small changed:

- **base**: a random-init model of the base's family (architecture, control tokens, chat template: see
  models/tiny.py), whatever the base's size, with the
  base's own tokenizer when its directory is here, or a tokenizer learned from the smoke data when it is not;
- **data**: a few documents of each input that is on this machine (the shipped raw sample when none is), cleaned
  by the recipe's executor (``ray``: a Ray of this machine's own, whatever cluster the recipe or RAY_ADDRESS names);
- **cp, sft**: 128-token sequences (SFT: the recipe's, at most 512), 2 steps with a held-out check and a
  checkpoint after the first, no ``torch.compile``; under torchrun with 2 processes (gloo, FSDP2) when the
  recipe launches its training with torchrun (``launch.train``); the first conversations of the recipe's SFT
  files (the shipped set when absent);
- **eval**: answers of at most 16 tokens; the first items of the recipe's bench and held-out pairs (the shipped
  ones when absent); a stub judge, whose scores mean nothing, in place of the recipe's judge endpoint;
- **export, card**: as written; the card says it is a smoke build.

A smoke build sends nothing off this machine: it contacts none of the recipe's endpoints (its judge), and inputs
given as URLs count as not here. With ``probe_endpoints`` (``--probe-endpoints`` or the recipe key) it asks each
endpoint whether it answers, says so, and uses those that do.

Everything goes under ``OUT/smoke`` (the base and the sampled inputs) and the usual stage directories.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from taide.artifacts import atomic_dir
from taide.builder.recipe import SAMPLES, BuildError, BuildEvalConfig, ComputeConfig, Recipe, evaluation_data
from taide.data.clean import CleanConfig
from taide.train.config import TrainConfig

DOCUMENTS = 20  # per input file, at most 3 files per input
CONVERSATIONS = 64  # per SFT file
BENCH_ITEMS, PAIRS = 2, 8  # per bench task file; held-out pairs
SEQ_LEN, SFT_SEQ_LEN, STEPS, PROCESSES, MAX_TOKENS = 128, 512, 2, 2, 16
TRAIN = {"max_steps": STEPS, "warmup_steps": 1, "eval_every": 1, "checkpoint_every": STEPS,  # one checkpoint: 1.6 GB at 135M
         "eval_batches": 1, "holdout_fraction": 0.1, "compile": False}


def _here(path) -> bool:
    return isinstance(path, str) and Path(path).exists()


def _copy_documents(source: Path, target: Path) -> int:
    """Up to DOCUMENTS documents of each of the first 3 files of ``source`` into ``target``, in the formats
    taide reads: JSONL lines and rows as JSONL, text and HTML files as they are. Returns how many."""
    from taide.data.readers import input_files, read_raw

    files, _ = input_files([source])
    count = 0
    for index, file in enumerate(files[:3]):
        raws = []
        for raw in read_raw(file.path):
            if len(raws) == DOCUMENTS:
                break
            raws.append(raw)
        if raws and getattr(raws[0], "kind", None) in ("text", "html"):
            shutil.copy2(file.path, target / f"{index}-{file.path.name}")
            count += 1
            continue
        lines = [r.payload.decode(r.encoding) if r.kind == "line" else json.dumps(r.payload, ensure_ascii=False,
                                                                                 default=str)
                 for r in raws if hasattr(r, "kind")]
        name = file.path.name.split(".")[0]
        (target / f"{index}-{name}.jsonl").write_text("".join(l.rstrip("\r\n") + "\n" for l in lines), "utf-8")
        count += len(lines)
    return count


def _head_jsonl(source: Path, target: Path, lines: int) -> None:
    with source.open(encoding="utf-8") as f:
        kept = [line for _, line in zip(range(lines), (l for l in f if l.strip()))]
    target.write_text("".join(kept), encoding="utf-8")


def _judge_answers(settings: BuildEvalConfig) -> str | None:
    """Why the recipe's judge endpoint cannot be used now (None: it answers)."""
    from taide.errors import EngineError
    from taide.eval.judge import load_endpoint

    try:
        load_endpoint(settings.judge_endpoint, settings.judge_model, timeout=5.0).check()
    except (EngineError, OSError) as e:
        return str(e)
    return None


def _base(recipe: Recipe, texts: list[str], target: Path) -> tuple[str, str]:
    """The smoke base model, always a tiny random-init one of the base's family (a real base, even a small one,
    would make the smoke minutes long), and a sentence saying what it is. From a local HF directory it keeps the
    base's tokenizer and template; from a local GGUF (an embedded model) its chat template and control tokens."""
    from taide.models import resolve_model
    from taide.models.tiny import family_of, family_of_gguf, tiny_model

    here = Path(recipe.base_model)
    config = here / "config.json"
    family, gguf = (family_of(json.loads(config.read_text(encoding="utf-8"))) if config.is_file() else None), None
    if family is None and not config.is_file():
        try:
            ref = resolve_model(recipe.base_model)  # an embedded model or a GGUF file: its metadata only
            if ref.kind == "gguf":
                gguf, family = ref, family_of_gguf(ref)
        except Exception:  # noqa: BLE001 - not on this machine: the recipe's base_shape says the family
            pass
    shape_name = (recipe.base_shape or "").lower()
    prefixes = {"llama-3.1": "llama3.1", "llama-3.2": "llama3.1", "llama-3.3": "llama3.1", "llama-3": "llama3",
                "gemma-3": "gemma3", "qwen2": "qwen2", "qwen-2": "qwen2", "qwen3": "qwen3", "qwen-3": "qwen3",
                "mistral": "mistral", "breeze": "mistral", "phi-3": "phi3"}
    family = family or next((f for p, f in prefixes.items() if shape_name.startswith(p)), None)
    if family is None:
        raise BuildError(f"{recipe.source}: --smoke makes a tiny model of the base's family (Llama 3.x, Gemma 3, Qwen "
                         f"2/3, Mistral, Phi-3); cannot tell the family of base_model {recipe.base_model} (give "
                         "base_shape, e.g. llama-3-8b or gemma-3-12b)")
    tokenizer_from = here if (here / "tokenizer.json").is_file() or (here / "tokenizer.model").is_file() else None
    template = gguf.chat_template if gguf is not None and gguf.chat_format == "template" else None
    if not (target / "config.json").is_file():
        shutil.rmtree(target, ignore_errors=True)  # a stand-in begun by a killed smoke
        # Weights twice as wide as the usual init: a random model's next-token choices are nearly ties, and the
        # export's check (top-1 agreement with transformers after q4_k_m) needs them about as clear as a trained
        # model's. Measured on both families: top-1 agreement 50–73% at 0.02, 64–67% at 0.04; at 0.06 and
        # wider the Llama's deeper activations move under 4-bit weights and agreement falls below 45% again.
        with atomic_dir(target) as building:
            tiny_model(family, building, texts, tokenizer_from=tokenizer_from, initializer_range=0.04,
                       template=template, bos_token=gguf.bos_token if template else None,
                       eos_token=gguf.eos_token if template else None)
    vocabulary = (f"{recipe.base_model}'s tokenizer" if tokenizer_from else
                  f"{recipe.base_model}'s chat template and a tokenizer learned from the smoke data" if template else
                  "a tokenizer learned from the smoke data")
    return str(target), (f"a random-init {family} model (hidden 256) with {vocabulary}, standing in for "
                         f"{recipe.base_model}")


def _texts() -> list[str]:
    """What a tiny tokenizer learns its pieces from: the shipped SFT set and the Taiwan prompts."""
    texts = []
    for path in (SAMPLES["sft"], SAMPLES["taiwan"]):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line) if line.strip() else {}
            texts += [m["content"] for m in record.get("messages", [])] + [record.get("prompt", "")]
    return texts


def smoke_recipe(recipe: Recipe, out: str | None = None, probe_endpoints: bool = False) -> Recipe:
    """The recipe at toy scale (see the module docstring), with what was changed in ``smoke`` (one sentence each).
    Writes the smoke base and the sampled inputs under ``OUT/smoke`` (OUT: ``out``, or ``<recipe out's name>-smoke``
    in the current directory). ``probe_endpoints``: ask the recipe's endpoints whether they answer, and use those
    that do; otherwise none is contacted."""
    out = out or f"{Path(recipe.out).name}-smoke"
    root = Path(out) / "smoke"
    root.mkdir(parents=True, exist_ok=True)
    changes = []
    base, said = _base(recipe, _texts(), root / "base")
    changes.append(f"base: {said}")
    data = _smoke_data(recipe.data, root, changes)
    processes = PROCESSES if recipe.launch.train else 1
    launch = replace(recipe.launch, train_processes=processes) if processes > 1 else recipe.launch
    cp, sft = (_smoke_training(stage, getattr(recipe, stage), processes, changes) for stage in ("cp", "sft"))
    if sft is not None:
        sft = _smoke_sft_data(recipe, sft, root, changes)
    said_of_eval: list[str] = []
    evaluation = _smoke_eval(recipe.eval, root, probe_endpoints, said_of_eval)

    # The evaluation data training is checked against: the smoke's own where the recipe's were the build's default
    # (or, for sft, the data stage's), else what of the named ones is on this machine.
    smoke_default = evaluation_data(evaluation)
    same = {tuple(evaluation_data(recipe.eval)): smoke_default}
    if data is not None and data.decontaminate:
        data = replace(data, decontaminate=_here_of(data.decontaminate, "data", same, smoke_default, changes))
    if sft is not None and sft.decontaminate:
        fallback = smoke_default
        if data is not None:
            same[tuple(map(str, recipe.data.decontaminate or []))] = fallback = data.decontaminate
        sft = replace(sft, decontaminate=_here_of(sft.decontaminate, "sft", same, fallback, changes))
    changes += said_of_eval
    if evaluation is not None:
        changes.append(f"eval: answers of at most {evaluation.max_tokens} tokens")
    return replace(recipe, name=f"{recipe.name} (smoke)", out=out, base_model=base, data=data, cp=cp, sft=sft,
                   eval=evaluation, launch=launch, compute=ComputeConfig(),  # GPU-hours of a toy run mean nothing
                   expected_tokens={}, smoke=changes)


def _smoke_data(data: CleanConfig | None, root: Path, changes: list[str]) -> CleanConfig | None:
    """A few documents of each input that is here (the shipped raw sample when none is); a local Ray for ray."""
    if data is None:
        return None
    inputs = [str(p) for p in data.inputs]
    found = [p for p in inputs if _here(p)]
    if found and [p for p in found if Path(p) != SAMPLES["data"]]:
        shutil.rmtree(root / "inputs", ignore_errors=True)
        (root / "inputs").mkdir()
        counts = [_copy_documents(Path(p), root / "inputs") for p in found]
        data = replace(data, inputs=[str(root / "inputs")])
        changes.append(f"data: {sum(counts)} documents from the {len(found)} of {len(inputs)} inputs here")
    else:
        data = replace(data, inputs=[str(SAMPLES["data"])])
        changes.append(f"data: the shipped raw sample ({'none' if not found else 'only'} of the recipe's inputs here)")
    if data.executor == "ray":
        data = replace(data, ray_address="local")  # not the recipe's cluster, nor RAY_ADDRESS's
        changes.append("data: a local Ray (executor: ray)")
    return data


def _smoke_training(stage: str, config: TrainConfig | None, processes: int, changes: list[str]) -> TrainConfig | None:
    """STEPS steps of short rows, two micro-batches each (so accumulation runs), a held-out check and a checkpoint."""
    if config is None:
        return None
    micro = min(config.micro_batch_size, 2)
    # CP packs documents into any length; a conversation must fit whole, so SFT keeps up to 512 tokens.
    seq_len = SEQ_LEN if stage == "cp" else min(config.seq_len or SFT_SEQ_LEN, SFT_SEQ_LEN)
    config = replace(config, **TRAIN, seq_len=seq_len, micro_batch_size=micro,
                     global_batch_tokens=seq_len * micro * processes * 2,
                     trainable_layers=1 if config.trainable_layers else config.trainable_layers)
    changes.append(f"{stage}: {STEPS} steps of {2 * micro * processes} sequences × {seq_len} tokens"
                   + (f", {processes} torchrun processes (FSDP2 over gloo)" if processes > 1 else ""))
    if stage == "sft":  # conversations longer than the smoke's rows are no fault of the recipe's data
        config = replace(config, on_bad_record="skip")
        changes.append(f"sft: conversations longer than {seq_len} tokens left out (each named on screen and in "
                       "sft/bad_records.txt)")
    return config


def _smoke_sft_data(recipe: Recipe, sft: TrainConfig, root: Path, changes: list[str]) -> TrainConfig:
    """The first conversations of each SFT file that is here, else the shipped set."""
    files = recipe.sft_files()
    found = [Path(p) for p in files if _here(p) and Path(p).is_file() and Path(p) != SAMPLES["sft"]]
    if not found:
        changes.append("sft: the shipped conversations" + (" (the recipe's are not here)" if files != [
            str(SAMPLES["sft"])] else ""))
        return replace(sft, data=[str(SAMPLES["sft"])])
    (root / "sft").mkdir(exist_ok=True)
    heads = [root / "sft" / f"{index}-{path.name}" for index, path in enumerate(found)]
    for path, head in zip(found, heads):
        _head_jsonl(path, head, CONVERSATIONS)
    changes.append(f"sft: the first {CONVERSATIONS} conversations of {len(found)} of {len(files)} files")
    return replace(sft, data=[str(h) for h in heads])


def _smoke_eval(evaluation: BuildEvalConfig | None, root: Path, probe_endpoints: bool,
                changes: list[str]) -> BuildEvalConfig | None:
    """Short answers, a few rows; the first items of the recipe's bench and pairs (the shipped ones when absent); a
    stub judge unless the recipe's answers and may be asked (``probe_endpoints``)."""
    if evaluation is None:
        return None
    shipped = BuildEvalConfig()
    evaluation = replace(evaluation, max_tokens=min(evaluation.max_tokens, MAX_TOKENS), heldout_rows=4)
    if evaluation.bench != shipped.bench:
        if _here(evaluation.bench):
            (root / "bench").mkdir(exist_ok=True)
            for path in sorted(Path(evaluation.bench).glob("*.jsonl")):
                _head_jsonl(path, root / "bench" / path.name, BENCH_ITEMS)
            evaluation = replace(evaluation, bench=str(root / "bench"))
        else:
            changes.append(f"eval: the shipped taide-bench sample ({evaluation.bench} is not here)")
            evaluation = replace(evaluation, bench=shipped.bench)
    if evaluation.heldout_pairs != shipped.heldout_pairs:
        if _here(evaluation.heldout_pairs):
            _head_jsonl(Path(evaluation.heldout_pairs), root / "pairs.jsonl", PAIRS)
            evaluation = replace(evaluation, heldout_pairs=str(root / "pairs.jsonl"))
        else:
            changes.append(f"eval: the shipped held-out pairs ({evaluation.heldout_pairs} is not here)")
            evaluation = replace(evaluation, heldout_pairs=shipped.heldout_pairs)
    judge = evaluation.judge_endpoint
    if judge:
        why = _judge_answers(evaluation) if probe_endpoints else None
        if probe_endpoints and not why:
            changes.append(f"eval: the recipe's judge {judge} answers (--probe-endpoints): it judges the answers")
        else:
            evaluation = replace(evaluation, judge_endpoint=None, judge_model="stub")
            changes.append("eval: a stub judge (scores mean nothing) in place of the recipe's judge " + (
                f"{judge}, which does not answer ({why})" if why else
                f"{judge}, not contacted (--probe-endpoints asks whether it answers)"))
    return evaluation


def _here_of(wanted: list, stage: str, same: dict, fallback: list, changes: list[str]) -> list:
    """The evaluation data to check ``stage``'s training data against in the smoke: ``same[wanted]`` when ``wanted``
    is the build's default (or what it took from another stage), else what of ``wanted`` is here, else
    ``fallback``."""
    wanted = [str(p) for p in wanted]
    if tuple(wanted) in same:
        return same[tuple(wanted)]
    here = [p for p in wanted if _here(p)]
    if len(here) < len(wanted):
        changes.append(f"{stage}: decontaminated against {len(here) or 'none'} of the {len(wanted)} evaluation sets "
                       "named (the others are not here)")
    return here or fallback
