"""Readers: every format and charset the corpus arrives in becomes documents, or a counted problem."""

from __future__ import annotations

import codecs
import gzip
import json

import pytest

from taide.data import DataError
from taide.data.readers import Unreadable, detect_encoding, input_files, read_inputs, to_document

TEXT = "臺灣的夜市是觀光客必訪的地方，從士林夜市到六合夜市，每個地方都有自己的特色小吃與人情味。"


def _docs(*paths, text_field="text"):
    files, _ = input_files(list(paths))
    return [to_document(r, text_field) if not isinstance(r, Unreadable) else r
            for r in read_inputs(files, text_field)]


def test_jsonl_in_big5_and_compressed_forms(tmp_path):
    record = json.dumps({"id": "x", "text": TEXT, "year": 2024}, ensure_ascii=False)
    (tmp_path / "big5.jsonl").write_bytes(((record + "\n") * 3).encode("cp950"))
    (tmp_path / "plain.jsonl.gz").write_bytes(gzip.compress((record + "\n").encode()))
    import zstandard

    (tmp_path / "z.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress((record + "\n").encode()))
    docs = _docs(tmp_path / "big5.jsonl", tmp_path / "plain.jsonl.gz", tmp_path / "z.jsonl.zst")
    assert [d.text for d in docs] == [TEXT] * 5
    assert docs[0].record["year"] == 2024 and docs[0].source == "big5.jsonl"


def test_text_files_in_any_charset(tmp_path):
    (tmp_path / "big5.txt").write_bytes(TEXT.encode("cp950"))
    (tmp_path / "utf16.txt").write_bytes(codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"))
    (tmp_path / "gb.txt").write_bytes("软件和视频信息都在这里，欢迎大家下载使用，我们会持续更新内容。".encode("gb18030"))
    docs = {d.id: d.text for d in _docs(tmp_path)}
    assert docs["big5.txt"] == TEXT and docs["utf16.txt"] == TEXT
    assert docs["gb.txt"].startswith("软件和视频")


def test_html_file_declared_big5(tmp_path):
    page = f'<html><head><meta charset="big5"><title>t</title></head><body><p>{TEXT}</p></body></html>'
    (tmp_path / "page.html").write_bytes(page.encode("cp950"))
    (doc,) = _docs(tmp_path / "page.html")
    assert doc.is_html and TEXT in doc.text


def test_csv_parquet_and_json_array(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "r.csv").write_text(f'id,title,body\n1,標題,"{TEXT}"\n2,第二,"多行\n內容"\n', encoding="utf-8")
    pq.write_table(pa.table({"id": ["p1", "p2"], "body": [TEXT, "英文 text"], "n": [1, 2]}), tmp_path / "t.parquet")
    (tmp_path / "a.json").write_text(json.dumps([{"id": "j", "body": TEXT}], ensure_ascii=False), encoding="utf-8")
    docs = _docs(tmp_path / "r.csv", tmp_path / "t.parquet", tmp_path / "a.json", text_field="body")
    assert [d.id for d in docs] == ["1", "2", "p1", "p2", "j"]
    assert docs[1].text == "多行\n內容" and docs[2].record["n"] == 1


def test_problems_are_counted_with_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "text": "好"}\n{"id": 2,\n[1]\n{"id": 3}\n', encoding="utf-8")
    docs = _docs(tmp_path / "bad.jsonl")
    problems = [d.problem for d in docs if isinstance(d, Unreadable)]
    assert len(docs) == 4 and len(problems) == 3
    assert "bad.jsonl:2: not valid JSON" in problems[0]
    assert "bad.jsonl:3: expected a JSON object" in problems[1]
    assert "bad.jsonl:4: field 'text' missing" in problems[2]


def test_unknown_or_missing_inputs_fail_before_work(tmp_path):
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"x\.docx: unknown format"):
        input_files([tmp_path / "x.docx"])
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        input_files([tmp_path / "nope.jsonl"])
    (tmp_path / "d").mkdir()
    (tmp_path / "d/a.jsonl").write_text("")
    (tmp_path / "d/_SUCCESS").write_text("")
    (tmp_path / "d/html").mkdir()
    (tmp_path / "d/html/p.html").write_text("<p>x</p>")
    files, skipped = input_files([tmp_path / "d"])
    assert [(f.path, f.source) for f in files] == [(tmp_path / "d/a.jsonl", "a.jsonl"),
                                                   (tmp_path / "d/html/p.html", "html/")]
    assert skipped == [tmp_path / "d/_SUCCESS"]
    (tmp_path / "t.csv").write_text("id,content\n1,x\n")
    with pytest.raises(DataError, match=r"t\.csv: no column 'text'; columns are id, content"):
        _docs(tmp_path / "t.csv")


def test_encoding_detection():
    assert detect_encoding(TEXT.encode()) == "utf_8"
    assert detect_encoding(TEXT.encode("cp950")) in ("cp950", "big5", "big5hkscs")
    assert detect_encoding(codecs.BOM_UTF8 + b"x") == "utf_8_sig"
