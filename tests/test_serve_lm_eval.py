"""lm-evaluation-harness's `local-completions` model against `taide serve`: the harness scores multiple choice through
/v1/completions with echo and logprobs, counting tokens with the server's /tokenize (tokenizer_backend=remote). On the
same items and prompt it must agree with `taide eval mc`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import LiveServer

from taide.eval.mc import load_mc, mc_messages, run_mc
from taide.serve import create_app

lm_eval = pytest.importorskip("lm_eval")

EXAM = Path(__file__).parent / "data" / "tmmlu"


def _task(tmp_path: Path, engine, data) -> str:
    """A harness task whose documents are the exam's prompts exactly as `taide eval mc` renders them."""
    system = engine.default_system_prompt
    docs = tmp_path / "docs.jsonl"
    with docs.open("w", encoding="utf-8") as f:
        for item in [i for items in data.subjects.values() for i in items]:
            letters = list(item.options)
            prompt = engine.chat_format.render_text(mc_messages(item, system=system))
            assert engine.tokenize(prompt, add_special_tokens=False) == engine.prompt_ids(mc_messages(item, system=system))
            f.write(json.dumps({"qid": item.qid, "prompt": prompt, "choices": letters,
                                "gold": letters.index(item.answer)}, ensure_ascii=False) + "\n")
    (tmp_path / "taide_exam.yaml").write_text(f"""task: taide_exam
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
""", encoding="utf-8")
    return "taide_exam"


@pytest.mark.slow
def test_local_completions_matches_taide_eval_mc(tmp_path, smol_llamacpp, monkeypatch):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import datasets

    # datasets reads HF_DATASETS_OFFLINE when it is imported (lm_eval imports it): set now, the variable alone came
    # too late, and loading the local task's JSON sent a download count to S3
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    data = load_mc(EXAM)
    ours = run_mc(smol_llamacpp, data, method="loglikelihood")
    task = _task(tmp_path, smol_llamacpp, data)
    with LiveServer(create_app(smol_llamacpp)) as server:
        results = simple_evaluate(
            model="local-completions",
            model_args={"base_url": server.url + "/v1/completions", "model": "smollm2-135m",
                        "tokenizer_backend": "remote", "num_concurrent": 1, "max_retries": 1},
            tasks=[task], task_manager=TaskManager(include_path=str(tmp_path)), log_samples=True)
    harness = results["results"][task]["acc,none"]
    predicted = {s["doc"]["qid"]: s["doc"]["choices"][max(range(len(s["filtered_resps"])),
                                                          key=lambda i: s["filtered_resps"][i][0])]
                 for s in results["samples"][task]}
    taide = {r["qid"]: r["predicted"] for r in ours["records"]}
    assert len(predicted) == len(taide) == 12
    assert harness == pytest.approx(ours["overall"]["micro_accuracy"])
    assert predicted == taide
