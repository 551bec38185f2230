"""What a contamination check found, per benchmark and subject, and where: ``decontamination.json`` and
``decontamination.md``, written beside ``stats.md`` by ``taide data clean`` and into the run directory by
``taide train sft``. And the other way round: which exam items a model may have seen (``taide eval mc --seen``),
from such a report or by searching a corpus.

An item is *seen* when a training text that holds it stayed in the training data (action ``tag``); with ``drop`` or
``cut`` the text left, so the item was checked and is *unseen*. An item the check could not search (too short, or
not among the evaluation data it was given) is *unchecked*.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from taide.artifacts import atomic_write, write_json
from taide.decontam.index import EvalIndex
from taide.errors import InputError

REPORT = "decontamination.json"
LISTED_PER_ITEM = 5  # documents shown per item in the Markdown report (the JSON lists all)


def build_report(index: EvalIndex, findings: list[dict], what: str = "documents") -> dict:
    """The report of one check: ``findings`` are the per-document records of the decontaminate stage (or of the
    SFT screen): ``{id, source, action, items: [[key, share], ...], text: [matched text, ...]}``."""
    entry_of = {index.key_of(e): e for e in range(index.entries)}
    benchmarks: dict = {}
    for e, members in enumerate(index.entry_items):
        for i in members:
            item = index.items[i]
            bench = benchmarks.setdefault(item.benchmark, {"items": 0, "checked": 0, "too_short": 0, "found": 0,
                                                           "documents": 0, "subjects": {}})
            subject = bench["subjects"].setdefault(item.subject, {"items": 0, "checked": 0, "too_short": 0,
                                                                  "found": 0, "documents": 0})
            for counts in (bench, subject):
                counts["items"] += 1
                counts["checked" if index.checkable[e] else "too_short"] += 1
    by_entry: dict[int, list[dict]] = defaultdict(list)
    docs_per = {"benchmark": defaultdict(set), "subject": defaultdict(set)}
    actions = defaultdict(int)
    for n, finding in enumerate(findings):
        actions[finding["action"]] += 1
        for key, share in finding["items"]:
            e = entry_of[key]
            by_entry[e].append({"id": finding["id"], "source": finding["source"], "share": share,
                                "action": finding["action"], "text": finding.get("text", [])})
            for i in index.entry_items[e]:
                item = index.items[i]
                docs_per["benchmark"][item.benchmark].add(n)
                docs_per["subject"][(item.benchmark, item.subject)].add(n)
    found = []
    for e, documents in sorted(by_entry.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        for i in index.entry_items[e]:
            item = index.items[i]
            benchmarks[item.benchmark]["found"] += 1
            benchmarks[item.benchmark]["subjects"][item.subject]["found"] += 1
            found.append({"item": item.label, "benchmark": item.benchmark, "subject": item.subject, "qid": item.qid,
                          "field": item.field, "source": item.source, "key": item.key, "documents": documents})
    for name, bench in benchmarks.items():
        bench["documents"] = len(docs_per["benchmark"][name])
        for subject, counts in bench["subjects"].items():
            counts["documents"] = len(docs_per["subject"][(name, subject)])
    seen = sorted({f["key"] for f in found if any(d["action"] == "tag" for d in f["documents"])})
    return {"what": what, "settings": {"ngram": index.ngram, "threshold": index.threshold,
                                       "min_weight": index.min_weight, "max_df": index.max_df,
                                       "boilerplate_ngrams": index.boilerplate},
            "evaluation_files": index.files, "benchmarks": benchmarks, "documents": len(findings),
            "removed": actions["drop"], "cut": actions["cut"], "tagged": actions["tag"], "found": found,
            "unreadable_rows": index.problems,
            "checked_keys": sorted({index.key_of(e) for e in range(index.entries) if index.checkable[e]}),
            "seen_keys": seen}


def summary(report: dict) -> dict:
    """The report without its lists: what a manifest or a model card shows."""
    return {"what": report["what"], "documents": report["documents"], "removed": report["removed"],
            "cut": report["cut"], "tagged": report["tagged"], "settings": report["settings"],
            "unreadable_rows": len(report["unreadable_rows"]),
            "benchmarks": {name: {k: v for k, v in b.items() if k != "subjects"}
                           for name, b in report["benchmarks"].items()}}


def counted(n: int, things: str) -> str:
    """``1 document``, ``2 documents``."""
    return f"{n:,} {things[:-1] if n == 1 else things}"


def write_report(directory: str | Path, report: dict) -> dict[str, Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    what = report["what"]
    s = report["settings"]
    total = sum(b["items"] for b in report["benchmarks"].values())
    lines = ["# Decontamination report", "",
             f"Training {what} checked against {total:,} evaluation items of {len(report['benchmarks'])} benchmark(s): "
             f"character {s['ngram']}-grams of text folded by NFKC, width, case and script (Simplified = Traditional), "
             f"punctuation and whitespace left out, options in any order; an item is found where at least "
             f"{s['threshold']:.0%} of its n-grams' weight is (an n-gram shared by k items weighs 1/k; "
             f"{s['boilerplate_ngrams']:,} shared by more than {s['max_df']} items are left out).", "",
             f"{counted(report['documents'], what)} held evaluation items: {report['removed']:,} removed, {report['cut']:,} "
             f"cut, {report['tagged']:,} tagged and kept.", "",
             f"| benchmark | subject | items | checked | too short to check | found | {what} |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, b in sorted(report["benchmarks"].items()):
        lines.append(f"| **{name}** | | {b['items']:,} | {b['checked']:,} | {b['too_short']:,} | {b['found']:,} | "
                     f"{b['documents']:,} |")
        for subject, c in sorted(b["subjects"].items()):
            lines.append(f"| | {subject} | {c['items']:,} | {c['checked']:,} | {c['too_short']:,} | {c['found']:,} | "
                         f"{c['documents']:,} |")
    if report["found"]:
        lines += ["", "## Items found", ""]
        for f in report["found"]:
            docs = f["documents"]
            lines.append(f"- **{f['item']}** ({f['source']}): {counted(len(docs), what)}")
            for d in docs[:LISTED_PER_ITEM]:
                quoted = "; ".join(" ".join(t.split())[:80] for t in d["text"][:1])
                lines.append(f"  - `{d['id']}` ({d['source']}, {d['share']:.0%} of its n-grams, {d['action']})"
                             + (f": 「{quoted}」" if quoted else ""))
            if len(docs) > LISTED_PER_ITEM:
                lines.append(f"  - … {len(docs) - LISTED_PER_ITEM} more in {REPORT}")
    if report["unreadable_rows"]:
        lines += ["", f"## Evaluation rows that could not be read ({len(report['unreadable_rows'])})", ""]
        lines += [f"- {p}" for p in report["unreadable_rows"][:50]]
    atomic_write(directory / "decontamination.md", "\n".join(lines) + "\n")
    return {"markdown": directory / "decontamination.md", "json": write_json(directory / REPORT, report)}


# --- seen and unseen items -----------------------------------------------------------------------------

def _report_of(path: Path) -> dict | None:
    candidate = path / REPORT if path.is_dir() else path
    if candidate.name == REPORT and candidate.is_file():
        try:
            report = json.loads(candidate.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(candidate, None, f"not valid JSON ({e})") from e
        if not isinstance(report, dict) or "checked_keys" not in report:
            raise InputError(candidate, None, "not a decontamination report (no checked_keys)")
        return report
    return None


def seen_items(items, sources) -> tuple[dict[str, str], list[dict]]:
    """``seen``, ``unseen`` or ``unchecked`` for each item key of ``items`` (EvalItems), from ``sources``: each a
    decontamination report (its file, or a directory holding one) or a training corpus to search (files or a
    directory that `taide data clean` reads). Seen in any source: seen; checked by every source and seen in none:
    unseen; else unchecked. Also what each source was."""
    from taide.data.readers import Unreadable, input_files, read_inputs, to_document

    status: dict[str, str] = {}
    described = []
    checked_by_all: set[str] | None = None
    seen: set[str] = set()
    index = None
    for source in map(Path, sources):
        report = _report_of(source)
        if report is not None:
            checked, found = set(report["checked_keys"]), set(report["seen_keys"])
            described.append({"source": str(source), "kind": "report", "what": report["what"],
                              "checked": len(checked & {i.key for i in items}), "seen": len(found)})
        else:
            if index is None:
                index = EvalIndex(items)
            files, _ = input_files([source])
            found, read, unreadable = set(), 0, []
            for raw in read_inputs(files):
                doc = raw if isinstance(raw, Unreadable) else to_document(raw)
                if isinstance(doc, Unreadable):
                    unreadable.append(doc.problem)
                    continue
                read += 1
                found.update(index.key_of(h.entry) for h in index.search(doc.text))
            checked = {index.key_of(e) for e in range(index.entries) if index.checkable[e]}
            described.append({"source": str(source), "kind": "corpus", "documents": read,
                              "unreadable": len(unreadable), "unreadable_examples": unreadable[:5],
                              "checked": len(checked), "seen": len(found)})
        seen |= found
        checked_by_all = checked if checked_by_all is None else checked_by_all & checked
    for item in items:
        status[item.key] = ("seen" if item.key in seen else
                            "unseen" if checked_by_all is not None and item.key in checked_by_all else "unchecked")
    return status, described
