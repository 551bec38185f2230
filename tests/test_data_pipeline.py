"""The cleaning pipeline: every record accounted for, fields carried through, stages configurable."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

from taide.data import CleanConfig, DataError, build_pipeline, run_clean

LONG = "臺灣的夜市是觀光客必訪的地方，從士林夜市到六合夜市，每個地方都有自己的特色小吃與人情味，值得慢慢品嚐。"
LONG2 = "颱風過後，農委會統計各地農損金額，並宣布啟動現金救助，受災農民可在兩週內向鄉鎮公所提出申請。"
LONG3 = "捷運新路線通車首週，搭乘人次超過預期，營運公司表示將加開班次，並在尖峰時段增派站務人員。"


def _corpus(path: Path) -> Path:
    records = [
        {"id": "a", "text": LONG, "source_url": "https://example.tw/a", "year": 2024},
        {"id": "b", "text": "ＡＢＣ１２３ " + LONG2},  # full-width: normalized, then kept
        {"id": "c", "text": LONG.replace("夜市", "夜市 ", 1).replace("夜市 ", "夜市", 1)},  # same text as a
        {"id": "d", "text": "太短了。"},
        {"id": "e", "text": "聯絡我：0912-345-678，或寄信到someone@example.com.tw。" + LONG3},
        {"id": "f", "content": "no text field"},
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + ['{"id": "g", "text": ']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_record_is_accounted_for(tmp_path):
    src = _corpus(tmp_path / "corpus.jsonl")
    report = run_clean(CleanConfig([src], tmp_path / "out", keep_rejected=tmp_path / "rejected")).report
    assert report["read"] == 7 and report["balanced"]
    assert report["kept"] == 3 and report["unreadable"] == 2
    assert report["removed"] == {"min_length:too_short": 1, "exact_dedup:duplicate": 1}
    kept = {r["id"]: r for r in map(json.loads, (tmp_path / "out/part-00000.jsonl").read_text().splitlines())}
    assert kept["a"]["source_url"] == "https://example.tw/a" and kept["a"]["year"] == 2024  # carried through
    assert kept["b"]["text"].startswith("ABC123 ")
    assert "<PHONE>" in kept["e"]["text"] and "<EMAIL>" in kept["e"]["text"]
    assert report["stages"]["pii"] == {"in": 4, "redacted_phone": 1, "redacted_email": 1}
    rejected = [json.loads(l) for l in (tmp_path / "rejected/rejected-00000.jsonl").read_text().splitlines()]
    assert {(r["id"], r["reason"]) for r in rejected} == {("c", "duplicate"), ("d", "too_short")}
    assert "corpus.jsonl:6" in report["unreadable_examples"][0] and "corpus.jsonl:7" in report["unreadable_examples"][1]
    md = (tmp_path / "out/stats.md").read_text()
    assert "7 read = 3 kept + 2 removed + 2 unreadable" in md


def test_yaml_reorders_disables_and_tunes_stages(tmp_path):
    src = _corpus(tmp_path / "corpus.jsonl")
    config = tmp_path / "pipeline.yaml"
    config.write_text("pipeline:\n  - normalize\n  - stage: min_length\n    min_chars: 5\n"
                      "  - stage: pii\n    kinds: [email]\n  - stage: exact_dedup\n    enabled: false\n")
    report = run_clean(CleanConfig([src], tmp_path / "out", config=config)).report
    assert list(report["stages"]) == ["normalize", "min_length", "pii"]
    assert report["kept"] == 4 and report["removed"] == {"min_length:too_short": 1}
    kept = (tmp_path / "out/part-00000.jsonl").read_text()
    assert "0912-345-678" in kept and "<EMAIL>" in kept


@pytest.mark.parametrize("config, match", [
    ([{"stage": "translate"}], r"pipeline\[0\]\.stage: 'translate'"),
    ([{"stage": "min_length", "min_words": 3}], r"pipeline\[0\] \(min_length\).*min_words"),
    ([{"stage": "pii", "kinds": ["ssn"]}], r"pii\.kinds: unknown \['ssn'\]"),
])
def test_bad_configuration_is_named(config, match):
    with pytest.raises(DataError, match=match):
        build_pipeline(config)


def test_bad_yaml_names_the_line(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("pipeline:\n  - normalize\n  - [unclosed\n")
    with pytest.raises(DataError, match=r"p.yaml:\d+: invalid YAML"):
        run_clean(CleanConfig([_corpus(tmp_path / "c.jsonl")], tmp_path / "out", config=config))


def test_cli_clean(tmp_path):
    src = _corpus(tmp_path / "corpus.jsonl")
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    taide = str(Path(sys.executable).with_name("taide"))
    result = subprocess.run([taide, "data", "clean", str(gz), "-o", str(tmp_path / "out")], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "7 read = 3 kept + 2 removed + 2 unreadable" in result.stdout
    missing = subprocess.run([taide, "data", "clean", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o2")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "nope.jsonl: no such file" in missing.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data/tw-laws/laws-zh.jsonl.gz").is_file(), reason="../shared is absent")
def test_law_corpus_loses_at_most_one_percent_outside_dedup(tmp_path):
    report = run_clean(CleanConfig([SHARED / "data/tw-laws/laws-zh.jsonl.gz"], tmp_path / "out")).report
    assert report["balanced"] and report["unreadable"] == 0
    outside_dedup = sum(v for k, v in report["removed"].items() if not k.endswith("duplicate"))
    assert outside_dedup <= 0.01 * report["read"]


def _big_corpus(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` distinct documents, with some copies and short ones, so every phase has work."""
    import random

    rng = random.Random(seed)
    clauses = ["颱風帶來豪雨", "捷運延長營運時間", "健保署調整給付", "夜市攤商準備開張", "半導體出口創新高",
               "立法院今天審查預算", "棒球隊贏得冠軍", "縣市政府發布停班停課", "民眾排隊購買車票", "學校舉辦畢業典禮"]
    lines = []
    for i in range(n):
        text = "，".join(rng.choice(clauses) for _ in range(rng.randint(6, 30))) + f"。編號{i}。"
        if i % 17 == 0:
            text = "太短。"
        lines.append(json.dumps({"id": f"d{i}", "text": text, "n": i}, ensure_ascii=False))
        if i % 23 == 0:
            lines.append(json.dumps({"id": f"copy{i}", "text": text, "n": i}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _outputs(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*")) if p.is_file()}


def test_interrupted_run_resumes_to_the_same_output(tmp_path):
    src = _big_corpus(tmp_path / "c.jsonl", 600)
    whole = run_clean(CleanConfig([src], tmp_path / "whole", keep_rejected=tmp_path / "whole-rej", workers=1,
                                  batch_docs=50)).report

    class Killed(Exception):
        pass

    def die_after_three(done):
        if done >= 150:
            raise Killed

    with pytest.raises(Killed):
        run_clean(CleanConfig([src], tmp_path / "again", keep_rejected=tmp_path / "again-rej", workers=1,
                              batch_docs=50), die_after_three)
    assert not (tmp_path / "again/stats.json").exists()
    seen = []
    resumed = run_clean(CleanConfig([src], tmp_path / "again", keep_rejected=tmp_path / "again-rej", workers=1,
                                    batch_docs=50), seen.append).report
    assert seen[0] > 150  # finished batches were not redone
    assert resumed == whole and resumed["balanced"] and resumed["removed"]["exact_dedup:duplicate"] == 25  # copies of short ones go as short
    assert _outputs(tmp_path / "again") == _outputs(tmp_path / "whole")
    assert _outputs(tmp_path / "again-rej") == _outputs(tmp_path / "whole-rej")
    # Done is done: a third run returns the report without work; other settings are refused.
    assert run_clean(CleanConfig([src], tmp_path / "again", keep_rejected=tmp_path / "again-rej", workers=1,
                                 batch_docs=50)).report == whole
    with pytest.raises(DataError, match="another configuration"):
        run_clean(CleanConfig([src], tmp_path / "again", config=None, text_field="n", workers=1, batch_docs=50))


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_output(tmp_path):
    """A real SIGKILL in the middle of the job, then the same command again."""
    import signal
    import time

    src = _big_corpus(tmp_path / "c.jsonl", 30000, seed=1)
    taide = str(Path(sys.executable).with_name("taide"))
    command = [taide, "data", "clean", str(src), "-o", str(tmp_path / "out"), "--workers", "2", "--shard-docs", "5000"]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list((tmp_path / "out/.work").glob("batch-*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (tmp_path / "out/stats.json").exists(), "the job finished before it could be killed"
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    whole = run_clean(CleanConfig([src], tmp_path / "whole", workers=1, shard_docs=5000)).report
    assert json.loads((tmp_path / "out/stats.json").read_text()) == whole
    assert _outputs(tmp_path / "out") == _outputs(tmp_path / "whole")


def test_success_leaves_no_work_files_and_a_rerun_returns_at_once(tmp_path):
    """The batch files are resume state: gone after success. stats.json remembers the job, so the same command
    again returns the report without redoing it, other inputs are still refused, and other write settings
    redo the job."""
    src = _big_corpus(tmp_path / "c.jsonl", 120)
    first = run_clean(CleanConfig([src], tmp_path / "out", keep_rejected=tmp_path / "rej", workers=1,
                                  batch_docs=40)).report
    assert not (tmp_path / "out/.work").exists()
    assert first["fingerprint"] and first["rejected_shards"] == ["rejected-00000.jsonl"]
    before = _outputs(tmp_path / "out")
    seen = []
    assert run_clean(CleanConfig([src], tmp_path / "out", keep_rejected=tmp_path / "rej", workers=1, batch_docs=40),
                                 seen.append).report == first
    assert seen == [] and _outputs(tmp_path / "out") == before and not (tmp_path / "out/.work").exists()
    with pytest.raises(DataError, match=r"out holds a run over other inputs or another configuration"):
        run_clean(CleanConfig([src], tmp_path / "out", text_field="n", workers=1, batch_docs=40))
    (tmp_path / "rej/rejected-00000.jsonl").unlink()  # a missing output: the job is done again
    assert run_clean(CleanConfig([src], tmp_path / "out", keep_rejected=tmp_path / "rej", workers=1,
                                 batch_docs=40)).report == first
    assert (tmp_path / "rej/rejected-00000.jsonl").is_file()
    smaller = run_clean(CleanConfig([src], tmp_path / "out", keep_rejected=tmp_path / "rej", workers=1, batch_docs=40,
                                    shard_docs=50)).report
    assert len(smaller["shards"]) == -(-first["kept"] // 50) > 1 and smaller["kept"] == first["kept"]
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == smaller["shards"]


def test_keep_work_keeps_the_batches(tmp_path):
    src = _big_corpus(tmp_path / "c.jsonl", 120)
    report = run_clean(CleanConfig([src], tmp_path / "out", workers=1, batch_docs=40, keep_work=True)).report
    assert len(list((tmp_path / "out/.work").glob("batch-*.json"))) == -(-report["read"] // 40)
    seen = []
    assert run_clean(CleanConfig([src], tmp_path / "out", workers=1, batch_docs=40, keep_work=True),
                                 seen.append).report == report
    assert seen == [] and (tmp_path / "out/.work").is_dir()
    # Other write settings reuse the kept batches: only the shards are rewritten.
    again = run_clean(CleanConfig([src], tmp_path / "out", workers=1, batch_docs=40, keep_work=True, shard_docs=50),
                                  seen.append).report
    assert seen == [] and len(again["shards"]) == -(-report["kept"] // 50) > 1
    # Without --keep-work, the next run of the finished job clears them.
    run_clean(CleanConfig([src], tmp_path / "out", workers=1, batch_docs=40, shard_docs=50))
    assert not (tmp_path / "out/.work").exists()


def test_cli_keep_work(tmp_path):
    src = _corpus(tmp_path / "corpus.jsonl")
    taide = str(Path(sys.executable).with_name("taide"))
    for flags, kept in (([], False), (["--keep-work"], True)):
        out = tmp_path / f"out{len(flags)}"
        result = subprocess.run([taide, "data", "clean", str(src), "-o", str(out), "--workers", "1", *flags],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert (out / ".work").is_dir() == kept and (out / "stats.json").is_file()


def test_parallel_workers_write_what_one_writes(tmp_path):
    src = _big_corpus(tmp_path / "c.jsonl", 400)
    one = run_clean(CleanConfig([src], tmp_path / "one", workers=1, batch_docs=40)).report
    two = run_clean(CleanConfig([src], tmp_path / "two", workers=2, batch_docs=40)).report
    assert one == two and _outputs(tmp_path / "one") == _outputs(tmp_path / "two")


def test_parquet_shards_keep_every_field(tmp_path):
    import pyarrow.parquet as pq

    src = _big_corpus(tmp_path / "c.jsonl", 120)
    report = run_clean(CleanConfig([src], tmp_path / "out", format="parquet", shard_docs=50, workers=1)).report
    tables = [pq.read_table(tmp_path / "out" / name) for name in report["shards"]]
    assert [t.num_rows for t in tables] == [50, 50, report["kept"] - 100]
    assert tables[0].column_names == ["id", "text", "n"]


@pytest.fixture
def stale_ray_cluster(monkeypatch, tmp_path_factory):
    """This machine's Ray state pointing at a cluster whose head is gone: `ray start` left its address in
    ray_current_cluster (under RAY_TMPDIR; a short path, as Ray's socket paths must be) and nothing answers there."""
    import shutil
    import tempfile

    from conftest import free_port

    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    (temp / "ray").mkdir()
    address = f"127.0.0.1:{free_port()}"
    (temp / "ray" / "ray_current_cluster").write_text(address)
    monkeypatch.setenv("RAY_TMPDIR", str(temp))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield address
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_executor_writes_what_local_writes(tmp_path, stale_ray_cluster):
    """Without an address, a Ray of its own (not the stale cluster this machine's Ray state names, which would
    retry for minutes), shut down after the run."""
    ray = pytest.importorskip("ray")
    src = _big_corpus(tmp_path / "c.jsonl", 300)
    local = run_clean(CleanConfig([src], tmp_path / "local", workers=1, batch_docs=40)).report
    on_ray = run_clean(CleanConfig([src], tmp_path / "ray", executor="ray", workers=2, batch_docs=40)).report
    assert on_ray == local and _outputs(tmp_path / "ray") == _outputs(tmp_path / "local")
    assert not ray.is_initialized()


@pytest.mark.parametrize("given, origin", [
    ("flag", "the address given with --ray-address or data.ray_address"),
    ("RAY_ADDRESS", "the address in RAY_ADDRESS"),
    ("auto", "auto: the cluster `ray start` recorded in /tmp/ray-"),
])
def test_a_ray_cluster_that_does_not_answer_fails_at_once_naming_it(tmp_path, stale_ray_cluster, monkeypatch, given,
                                                                    origin):
    """Not minutes of Ray's retries: a one-line error naming the address, where it came from and how to choose."""
    pytest.importorskip("ray")
    src = _big_corpus(tmp_path / "c.jsonl", 10)
    address = {"flag": stale_ray_cluster, "RAY_ADDRESS": None, "auto": "auto"}[given]
    if given == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", stale_ray_cluster)
    with pytest.raises(DataError) as caught:
        run_clean(CleanConfig([src], tmp_path / "out", executor="ray", ray_address=address))
    message = str(caught.value)
    assert message.startswith(f"executor ray: no Ray cluster answers at {stale_ray_cluster}, {origin}")
    assert "--ray-address HOST:PORT" in message and "RAY_ADDRESS" in message and "--ray-address local" in message


def test_line_separators_inside_text_survive(tmp_path):
    """U+2028, U+0085 and form feeds are not line ends in JSONL (str.splitlines thinks they are)."""
    text = LONG + "\u2028第二行\x85第三行\u2029" + LONG
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps({"id": "a", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    pipeline = _write(tmp_path / "p.yaml", "pipeline: [min_length, exact_dedup]\n")
    run_clean(CleanConfig([src], tmp_path / "out", config=pipeline, workers=1))
    (line,) = (tmp_path / "out/part-00000.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    assert json.loads(line)["text"] == text


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_text_field_flag_wins_over_the_config_file_which_wins_over_the_default(tmp_path):
    """One precedence everywhere: the flag, else the config file, else the default."""
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "body": f"第{i}篇：" + "臺灣的法規文字，內容完整。" * 8}, ensure_ascii=False)
                           + "\n" for i in range(3)), encoding="utf-8")
    config = tmp_path / "pipeline.yaml"
    config.write_text("text_field: body\npipeline: [min_length]\n", encoding="utf-8")
    from_file = run_clean(CleanConfig([src], tmp_path / "file", config=config, workers=1)).report
    assert (from_file["read"], from_file["kept"], from_file["unreadable"]) == (3, 3, 0)
    from_flag = run_clean(CleanConfig([src], tmp_path / "flag", config=config, text_field="missing", workers=1)).report
    assert (from_flag["read"], from_flag["unreadable"]) == (3, 3)  # the flag named a field no record has
    default = run_clean(CleanConfig([src], tmp_path / "default", workers=1)).report
    assert default["unreadable"] == 3  # no config: the records have no "text"


def test_a_pipeline_file_with_a_misspelt_key_is_named_with_its_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "臺灣的法規文字。"}\n', encoding="utf-8")
    config = tmp_path / "p.yaml"
    config.write_text("text_field: text\npipline: [min_length]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p.yaml:2: pipline: unknown key 'pipline' \(did you mean 'pipeline'\?\); "
                                        r"known: pipeline, text_field"):
        run_clean(CleanConfig([src], tmp_path / "out", config=config, workers=1))
    assert not (tmp_path / "out").exists()
