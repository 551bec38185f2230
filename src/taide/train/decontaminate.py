"""The SFT side of decontamination: conversations that hold evaluation items (exam questions, bench prompts or
answers) are left out of training, or tagged, and reported (``OUT/decontamination.md`` / ``.json``)."""

from __future__ import annotations

import sys
from pathlib import Path

from taide.train.config import TrainConfig


def decontaminate_sft(config: TrainConfig, examples: list, tokenizer, write: bool) -> tuple[list, dict | None]:
    """``examples`` (SFTExample) without those holding an item of ``config.decontaminate`` (action drop), or all of
    them (tag: reported, still trained on), and the report's summary (None: no check). A conversation is checked as
    the model is trained on it: its rendered tokens decoded, every message in the chat format. ``write``: this
    process writes the report."""
    if not config.decontaminate:
        return examples, None
    from taide.decontam.index import EvalIndex
    from taide.decontam.report import build_report, summary, write_report

    index = EvalIndex.from_paths(config.decontaminate)
    kept, findings = [], []
    for example in examples:
        text = tokenizer.decode(example.input_ids)
        hits = index.search(text)
        if hits:
            findings.append({"id": example.origin, "source": example.origin.rsplit(":", 1)[0],
                             "action": config.decontaminate_action,
                             "items": [[index.key_of(h.entry), round(h.share, 3)] for h in hits],
                             "text": [text[s:e][:120] for s, e in index.spans(text, hits)[:3]]})
            if config.decontaminate_action == "drop":
                continue
        kept.append(example)
    report = build_report(index, findings, "conversations")
    found = summary(report)
    if write:
        write_report(Path(config.out), report)
        print(f"taide train: decontamination: {found['documents']} of {len(examples)} conversations held evaluation "
              f"items ({found['removed']} left out, {found['tagged']} tagged): {Path(config.out) / 'decontamination.md'}",
              file=sys.stderr, flush=True)
    return kept, found
