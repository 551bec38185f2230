"""The raw sample corpus that ships with taide (``data/sample``): 315 documents written for the project (news,
letters, forum posts, reviews, HTML pages, Big5/UTF-16/GB18030 files) with PII, spam, Simplified text, mojibake,
layout breaks and near-duplicates planted, and a MANIFEST.json saying what each needs."""

from __future__ import annotations

import shutil
from pathlib import Path

from taide.data.base import DataError

SAMPLE_CORPUS = Path(__file__).resolve().parent / "sample"  # raw/ and MANIFEST.json


def copy_sample_corpus(target: str | Path) -> Path:
    """Copy the sample corpus into ``target`` (new or empty) and return where its raw documents are."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise DataError(f"{target}: not empty; choose a new directory")
    shutil.copytree(SAMPLE_CORPUS, target, dirs_exist_ok=True)
    return target / "raw"
