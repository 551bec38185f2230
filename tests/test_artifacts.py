"""taide.artifacts: atomic writes, the one manifest schema, and resumable JSONL."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from taide.artifacts import atomic_dir, atomic_write, file_digest, manifest, read_resumable, write_json, write_manifest
from taide.errors import InputError


def test_atomic_write_replaces_the_content_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "deep" / "out.txt"
    atomic_write(path, "第一版")
    assert path.read_text(encoding="utf-8") == "第一版"
    atomic_write(path, b"second")
    assert path.read_bytes() == b"second"
    assert atomic_write(path, lambda tmp: tmp.write_text("third")) == path and path.read_text() == "third"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"a": 1})

    def crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["out.json"]


@dataclass
class Settings:
    out: Path
    quant: str = "q8_0"



def test_atomic_dir_keeps_the_copy_another_process_renamed_into_place_first(tmp_path, monkeypatch):
    """Two processes (torchrun's) write the same cache entry at once: the second rename finds the first's directory
    in place. That is no error; the first copy stays, the second's temporary goes."""
    import os

    import taide.artifacts

    entry = tmp_path / "entry"
    real_replace = os.replace

    def other_process_first(src, dst):  # the other process renames its copy in just before ours
        if Path(dst) == entry and not entry.exists():
            entry.mkdir()
            (entry / "tokens").write_text("theirs")
        return real_replace(src, dst)

    monkeypatch.setattr(taide.artifacts.os, "replace", other_process_first)
    with atomic_dir(entry) as tmp:
        (tmp / "tokens").write_text("ours")
    assert (entry / "tokens").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_atomic_dir_replace_takes_the_place_of_what_is_there(tmp_path):
    entry = tmp_path / "entry"
    entry.mkdir()
    (entry / "old").write_text("old")
    with atomic_dir(entry, replace=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in entry.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_write_manifest_has_the_one_schema(tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"x" * 3_000_000)  # more than one 1 MiB chunk
    assert file_digest(source) == hashlib.sha256(source.read_bytes()).hexdigest()
    path = write_manifest(tmp_path / "manifest.json", "taide export", Settings(tmp_path / "model"),
                          inputs={"source": file_digest(source)}, counts={"parameters": 7}, verified=True)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert list(data) == ["command", "config", "inputs", "counts", "versions", "created", "verified"]
    assert data["command"] == "taide export" and data["verified"] is True
    assert data["config"] == {"out": str(tmp_path / "model"), "quant": "q8_0"}
    assert data["inputs"]["source"] == file_digest(source) and data["counts"] == {"parameters": 7}
    assert "taide" in data["versions"]
    assert datetime.fromisoformat(data["created"]).utcoffset().total_seconds() == 0
    assert manifest("x")["config"] is None and manifest("x", {"a": 1})["config"] == {"a": 1}
    with pytest.raises(TypeError, match="versions"):
        manifest("x", versions={})


def test_read_resumable_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "resp.jsonl"
    path.write_text('{"qid": "a"}\n{"qid": "b"}\n{"qid": "c", "re', encoding="utf-8")
    assert [row["qid"] for _, row in read_resumable(path)] == ["a", "b"]
    assert path.read_text(encoding="utf-8") == '{"qid": "a"}\n{"qid": "b"}\n'


def test_a_bad_line_inside_an_output_file_is_an_error_not_a_silent_drop(tmp_path):
    path = tmp_path / "resp_en2zh.jsonl"
    damaged = b'{"qid": "a", "resp": "x"}\nnot json\n{"qid": "b", "resp": "y"}\n'
    path.write_bytes(damaged)
    with pytest.raises(InputError, match="resp_en2zh.jsonl:2"):
        read_resumable(path)
    assert path.read_bytes() == damaged  # nothing is cut or repaired


def test_a_whole_last_row_without_its_newline_gets_one(tmp_path):
    path = tmp_path / "resp.jsonl"
    path.write_text('{"qid": "a", "resp": "x"}', encoding="utf-8")
    assert [row["qid"] for _, row in read_resumable(path)] == ["a"]
    assert path.read_text(encoding="utf-8") == '{"qid": "a", "resp": "x"}\n'
    assert read_resumable(tmp_path / "missing.jsonl") == []
