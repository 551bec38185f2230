"""Conversations in the layouts users have (messages, Alpaca, ShareGPT) and the files they keep them in (JSONL,
JSON arrays, Parquet, CSV, Arrow, datasets folders, folders of files): all read as the same messages, a file's layout
detected and reported, a mixed or unknown layout an error naming the line, the fields and the layouts accepted."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl

from taide.data.conversations import ConvertConfig, read_conversations, run_convert
from taide.errors import InputError

SYSTEM = "你是一個來自台灣的AI助理。"
# The same conversations in each layout: the messages, and the Alpaca and ShareGPT records that say the same.
MESSAGES = [
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "台灣最高的山是哪一座？"},
     {"role": "assistant", "content": "玉山。"}],
    [{"role": "user", "content": "請翻成英文：\n早安"}, {"role": "assistant", "content": "Good morning."}],
    [{"role": "user", "content": "滷肉飯是什麼？"}, {"role": "assistant", "content": "一種台灣小吃。"},
     {"role": "user", "content": "哪裡吃得到？"}, {"role": "assistant", "content": "夜市。"}],
]
ALPACA = [
    {"instruction": "台灣最高的山是哪一座？", "input": "", "output": "玉山。", "system": SYSTEM},
    {"instruction": "請翻成英文：", "input": "早安", "output": "Good morning."},
    {"instruction": "哪裡吃得到？", "output": "夜市。", "history": [["滷肉飯是什麼？", "一種台灣小吃。"]]},
]
SHAREGPT = [
    {"conversations": [{"from": "system", "value": SYSTEM}, {"from": "human", "value": "台灣最高的山是哪一座？"},
                       {"from": "gpt", "value": "玉山。"}]},
    {"conversations": [{"from": "human", "value": "請翻成英文：\n早安"}, {"from": "gpt", "value": "Good morning."}]},
    {"conversations": [{"from": "user", "value": "滷肉飯是什麼？"}, {"from": "assistant", "value": "一種台灣小吃。"},
                       {"from": "human", "value": "哪裡吃得到？"}, {"from": "gpt", "value": "夜市。"}]},
]


def _table(records: list[dict]):
    import pyarrow as pa

    columns = sorted({k for r in records for k in r})
    return pa.table({k: [r.get(k) for r in records] for k in columns})


def _write(kind: str, path: Path) -> Path:
    """The conversations as a ``kind`` file (or folder) at ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "messages.jsonl":
        return write_jsonl(path, [{"messages": m} for m in MESSAGES])
    if kind == "alpaca.json":
        path.write_text(json.dumps(ALPACA, ensure_ascii=False), encoding="utf-8")
    elif kind == "sharegpt.json-lines":  # JSON Lines named .json, as many datasets ship
        write_jsonl(path, SHAREGPT)
    elif kind == "alpaca.parquet":
        pq.write_table(_table(ALPACA), path)
    elif kind == "messages.parquet":  # the messages as a column holding JSON
        pq.write_table(pa.table({"messages": [json.dumps(m, ensure_ascii=False) for m in MESSAGES]}), path)
    elif kind == "sharegpt.arrow":
        table = pa.Table.from_pylist(SHAREGPT)
        with pa.ipc.new_stream(str(path), table.schema) as writer:  # the stream format, as datasets writes
            writer.write_table(table)
    elif kind == "alpaca.csv":  # a table has no history column: the single-turn ones
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["instruction", "input", "output", "system"])
            writer.writeheader()
            writer.writerows({"input": "", "system": "", **r} for r in ALPACA[:2])
    return path


@pytest.mark.parametrize("kind", ["messages.jsonl", "alpaca.json", "sharegpt.json-lines", "alpaca.parquet",
                                  "messages.parquet", "sharegpt.arrow", "alpaca.csv"])
def test_every_layout_and_file_reads_as_the_same_messages(tmp_path, kind):
    path = _write(kind, tmp_path / kind.replace("json-lines", "json"))
    read = read_conversations(path)
    expected = MESSAGES[:2] if kind == "alpaca.csv" else MESSAGES
    assert [c.messages for c in read.conversations] == expected and not read.problems
    layout = kind.split(".")[0]
    assert [(s.path, s.layout, s.conversations) for s in read.sources] == [(str(path), layout, len(expected))]
    name = {"messages": "messages", "alpaca": "Alpaca", "sharegpt": "ShareGPT"}[layout]
    assert read.sources[0].describe() == f"read {len(expected)} {name} conversations from {path}"


def test_a_datasets_folder_and_a_folder_of_files(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "hub-copy"
    datasets.Dataset.from_list(SHAREGPT).save_to_disk(str(folder))
    assert [c.messages for c in read_conversations(folder).conversations] == MESSAGES
    splits = tmp_path / "splits"
    rows = [{"input": "", "system": None, "history": None, **r} for r in ALPACA]  # a table's columns: every field
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "test": datasets.Dataset.from_list(rows[:1])}).save_to_disk(str(splits))
    assert [c.messages for c in read_conversations(splits).conversations] == MESSAGES + MESSAGES[:1]
    # a folder of files of different layouts: each file its own layout, in name order
    mixed = tmp_path / "mixed"
    _write("alpaca.json", mixed / "a.json")
    _write("messages.jsonl", mixed / "b.jsonl")
    _write("sharegpt.arrow", mixed / "nested" / "c.arrow")
    read = read_conversations(mixed)
    assert [s.layout for s in read.sources] == ["alpaca", "messages", "sharegpt"]
    assert [c.messages for c in read.conversations] == MESSAGES * 3


def test_a_mixed_or_unknown_layout_names_the_line_the_fields_and_the_layouts(tmp_path):
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [ALPACA[0], ALPACA[1], SHAREGPT[0]])
    with pytest.raises(InputError, match=rf"^{mixed}:3: ShareGPT \(fields 'conversations'\), but the file's first "
                                         r"record \(line 1\) is Alpaca; a file holds one layout \(messages: .*"
                                         r"ShareGPT: .*Alpaca: "):
        read_conversations(mixed)
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"prompt": "q", "completion": "a"}])
    with pytest.raises(InputError, match=rf"^{unknown}:1: no known conversation layout: fields 'prompt', "
                                         r"'completion'; taide reads messages: .*ShareGPT: .*Alpaca: "):
        read_conversations(unknown)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no files of a format taide reads"):
        read_conversations(tmp_path / "empty")


def test_records_that_cannot_be_used_are_named_with_their_field(tmp_path):
    records = [SHAREGPT[1],
               {"conversations": [{"from": "human", "value": "天氣？"}, {"from": "function_call", "value": "{}"}]},
               {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": 3}]},
               {"conversations": [{"from": "human", "value": "only a question"}]}]
    path = write_jsonl(tmp_path / "sharegpt.jsonl", records)
    read = read_conversations(path)
    assert [c.messages for c in read.conversations] == [MESSAGES[1]]
    assert [str(p) for p in read.problems] == [
        f"{path}:2: conversations[1].from: 'function_call' is not a speaker taide trains on (human, user, gpt, "
        "assistant, chatgpt, bard, bing, model, system); tool and function turns are not supported",
        f"{path}:3: conversations[1].value: expected a string, got int",
        f"{path}:4: messages: no assistant message: nothing to learn"]


def test_convert_writes_the_messages_and_refuses_too_many_bad_records(tmp_path):
    source = _write("alpaca.parquet", tmp_path / "alpaca.parquet")
    out = tmp_path / "out" / "conversations.jsonl"
    taide = str(Path(sys.executable).with_name("taide"))
    done = subprocess.run([taide, "data", "convert", str(source), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"read 3 Alpaca conversations from {source}" in done.stderr and f"3 conversations → {out}" in done.stdout
    assert [json.loads(line)["messages"] for line in out.read_text(encoding="utf-8").splitlines()] == MESSAGES
    assert read_conversations(out).sources[0].layout == "messages"  # and trains as it is
    bad = write_jsonl(tmp_path / "bad.jsonl", [ALPACA[0], {"instruction": "q", "output": ""}])
    with pytest.raises(InputError, match=rf"{bad}:2: messages\[1\].content: expected a non-empty string — 1 of 2 "
                                         r"records cannot be used \(more than 1% is refused\)"):
        run_convert(ConvertConfig(inputs=[str(bad)], out=str(tmp_path / "x.jsonl")))
    assert not (tmp_path / "x.jsonl").exists()
    result = run_convert(ConvertConfig(inputs=[str(bad)], out=str(tmp_path / "x.jsonl"), on_bad_record="skip"))
    assert result.written == 1 and [str(p) for p in result.problems] == [
        f"{bad}:2: messages[1].content: expected a non-empty string"]
