"""Decontamination quality and speed: exam questions planted in the Taiwan law corpus, found (or not) by the
``decontaminate`` stage and by datatrove's n-gram decontamination in the same run.

Evaluation items: the TMMLU questions of ``../shared/data/tmmlu`` (25 subjects), split in two halves by question
(every copy of a question in the same half). The first half is indexed; questions of the second half are planted
too, as **boilerplate negatives**: exam questions in the same style, with the same stock phrases (下列何者正確,
依…規定, (A)…(D)), that the index does not hold, so a method that fires on them fires on boilerplate.

Each indexed question is planted four times, each time into another law (at a line break), as

- **verbatim**: TMMLU's own text (numbering and options inline);
- **re-punctuated**: half-width punctuation for full-width and back, spaces and a line break inside the stem,
  options on lines of their own as ``A.`` / ``Ｂ、`` / ``C)``;
- **Simplified**: OpenCC ``t2s`` of the verbatim text;
- **reordered**: the options shuffled and lettered anew;

and, reported apart, as **Simplified with mainland vocabulary** (OpenCC ``tw2sp``: 軟體→软件, 資訊→信息), which
changes words, not only characters. The remaining laws are the **clean** documents: any flag on them is a false
positive (or a law that does hold an exam question's text; the flagged ones are listed to be read).

Recall: the share of planted copies whose question the method names (datatrove names no question: any flag counts
for it). Questions too short to check (their n-grams weigh less than ``min_weight``) count as misses in "all
questions" and are left out of "checkable questions". The sweep runs every n-gram length, threshold and minimum
weight over the same documents; the chosen default is the row marked in the table.

Speed: the stage alone over the corpus, one process, best of ``--runs`` (MB/s of UTF-8 text), against datatrove's
``NGramsDecontFilter`` over the same documents with a character tokenizer and the same n (its index built by its
own ``compute_hashes``; datatrove's indexer itself only reads lighteval tasks, which need the network). And the
index's size and build time for the whole Open TW LLM Leaderboard: the leaderboard's exams are not in ../shared,
so items with their sizes are drawn from TMMLU's length distribution, with law text as their content.

    .venv/bin/python -m bench.decontamination [--runs 3] [--no-datatrove] [--no-write]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np

from bench.report import write_section

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CORPUS = SHARED / "tw-laws" / "laws-zh.jsonl.gz"
EXAMS = SHARED / "tmmlu"
SEED = 20241207
VARIANTS = ("verbatim", "re-punctuated", "Simplified", "reordered")
EXTRA = ("Simplified, mainland words",)
# The leaderboard's exams, by their published sizes (test splits): TMMLU+ 22,690, TMLU 2,981, TMMLU 3,000 (about),
# TTQA 64, TW Legal 124.
LEADERBOARD_ITEMS = 22_690 + 2_981 + 3_000 + 64 + 124
GRID = {"ngram": (5, 6, 8, 10, 13), "threshold": (0.5, 0.7, 0.9), "min_weight": (3.0, 5.0, 8.0)}


# --- items and planting -------------------------------------------------------------------------------

def exam_items():
    """(EvalItem, raw question text as TMMLU writes it) for every usable TMMLU question."""
    import csv

    from taide.decontam.items import read_eval_items
    from taide.eval.mc import find_exam_files

    raw = {}
    for path in find_exam_files(EXAMS):
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            end = 0
            for row in reader:
                raw[f"{path}:{end + 1}"] = row[-1]
                end = reader.line_num
    return [(item, raw[item.source]) for item in read_eval_items([EXAMS]).items]


def split_halves(items, rng):
    """Two halves with no question in both: items grouped by their folded stem (and by content)."""
    from taide.decontam.keys import folded

    groups: dict[str, list] = {}
    for entry in items:
        groups.setdefault(folded(entry[0].parts[0]), []).append(entry)
    order = list(groups)
    rng.shuffle(order)
    indexed = [e for k in order[: len(order) // 2] for e in groups[k]]
    held = [e for k in order[len(order) // 2:] for e in groups[k]]
    return indexed, held


_SWAP = str.maketrans({"，": ",", "。": ".", "？": "?", "：": ":", "；": ";", "（": "(", "）": ")", "、": ",",
                       ",": "，", "?": "？", ":": "：", "(": "（", ")": "）"})


def repunctuate(item, rng) -> str:
    stem = item.parts[0].translate(_SWAP)
    chars = list(stem)
    for i in sorted(rng.choice(len(chars), size=max(1, len(chars) // 10), replace=False).tolist(), reverse=True):
        chars.insert(i, " ")
    cut = len(chars) // 2
    stem = "".join(chars[:cut]) + "\n" + "".join(chars[cut:])
    marks = ("{}.", "{}、", "{})", "（{}）")
    lines = [f"{marks[k % 4].format(chr(0xFF21 + k) if k % 2 else 'ABCDEFGH'[k])} {o.translate(_SWAP)}"
             for k, o in enumerate(item.parts[1:])]
    return stem + "\n" + "\n".join(lines)


def reorder(item, rng) -> str:
    options = list(item.parts[1:])
    order = list(range(len(options)))
    while order == sorted(order) and len(order) > 1:
        rng.shuffle(order)
    return item.parts[0] + "".join(f"({'ABCDEFGH'[k]}){options[i]}" for k, i in enumerate(order))


def plant_into(host: str, insert: str, rng) -> str:
    breaks = [m.end() for m in re.finditer("\n", host)] or [len(host)]
    at = breaks[int(rng.integers(len(breaks)))]
    return host[:at] + "\n" + insert + "\n" + host[at:]


def build_documents(laws, indexed, held, rng):
    """(texts, kinds, planted entry label or None): clean laws, planted copies, boilerplate negatives."""
    import opencc

    t2s, tw2sp = opencc.OpenCC("t2s"), opencc.OpenCC("tw2sp")
    copies = []  # (kind, item, text)
    for item, raw in indexed:
        copies += [("verbatim", item, raw), ("re-punctuated", item, repunctuate(item, rng)),
                   ("Simplified", item, t2s.convert(raw)), ("reordered", item, reorder(item, rng)),
                   ("Simplified, mainland words", item, tw2sp.convert(raw))]
    copies += [("boilerplate negative", item, raw) for item, raw in held]
    hosts = rng.choice(len(laws), size=len(copies), replace=len(copies) > len(laws))
    texts, kinds, planted = [], [], []
    hosted = set(hosts.tolist())
    for i, law in enumerate(laws):
        if i not in hosted:
            texts.append(law)
            kinds.append("clean")
            planted.append(None)
    for (kind, item, text), host in zip(copies, hosts.tolist()):
        texts.append(plant_into(laws[host], text, rng))
        kinds.append(kind)
        planted.append(item.key if kind != "boilerplate negative" else None)
    return texts, kinds, planted


# --- scoring ------------------------------------------------------------------------------------------

def sweep(items, texts, kinds, planted):
    """Per n-gram length: every document's hits (entry key, share, entry weight) at the loosest settings; then
    recall and false positives for every threshold and minimum weight."""
    from taide.decontam.index import EvalIndex

    rows = []
    for n in GRID["ngram"]:
        index = EvalIndex(items, ngram=n, threshold=min(GRID["threshold"]), min_weight=min(GRID["min_weight"]))
        keys = [index.items[index.entry_items[e][0]].key for e in range(index.entries)]
        hits = [[(keys[h.entry], h.share, index.total[h.entry]) for h in index.search(t)] for t in texts]
        weight = {keys[e]: index.total[e] for e in range(index.entries)}
        for threshold in GRID["threshold"]:
            for min_weight in GRID["min_weight"]:
                rows.append(score(hits, kinds, planted, weight, n, threshold, min_weight))
    return rows


def score(hits, kinds, planted, weight, n, threshold, min_weight, extra: dict | None = None):
    found = Counter()
    total = Counter()
    checkable = Counter()
    found_checkable = Counter()
    flagged = Counter()
    flagged_ids = []
    for i, (doc_hits, kind, key) in enumerate(zip(hits, kinds, planted)):
        names = {k for k, share, w in doc_hits if share >= threshold - 1e-9 and w >= min_weight}
        total[kind] += 1
        if key is not None:
            ok = key in names
            found[kind] += ok
            if weight.get(key, 0) >= min_weight:
                checkable[kind] += 1
                found_checkable[kind] += ok
        elif names:
            flagged[kind] += 1
            flagged_ids.append(i)
    return {"ngram": n, "threshold": threshold, "min_weight": min_weight, "total": dict(total),
            "found": dict(found), "checkable": dict(checkable), "found_checkable": dict(found_checkable),
            "flagged": dict(flagged), "flagged_ids": flagged_ids, **(extra or {})}


def recall(row, kinds=VARIANTS, checkable=False):
    found = sum(row["found_checkable" if checkable else "found"].get(k, 0) for k in kinds)
    total = sum(row["checkable" if checkable else "total"].get(k, 0) for k in kinds)
    return found / total if total else float("nan")


def false_positive(row, kind="clean"):
    total = row["total"].get(kind, 0)
    return row["flagged"].get(kind, 0) / total if total else float("nan")


# --- datatrove ----------------------------------------------------------------------------------------

def datatrove_hashes(items, n: int) -> dict[str, set[int]]:
    """datatrove's n-gram index of the same items, by benchmark: each part's character n-grams (a question's stem
    and each option, as ours), normalized and hashed by datatrove's own ``NGramsDecontIndexer.compute_hashes`` with
    its default text normalization. (Its indexer's ``run`` reads lighteval tasks only, which need the network.)"""
    import types

    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontIndexer

    from bench.data_pipeline import _character_tokenizer, _xxh64_utf8

    config = NGramsDecontConfig(n_grams=n, find_query_ngrams=False, find_overlap_ngrams=False)
    indexer = types.SimpleNamespace(tokenizer=_character_tokenizer(), config=config, hash_func=_xxh64_utf8)
    hashes: dict[str, set[int]] = {}
    for item in items:
        for part in item.parts:
            hashes.setdefault(item.benchmark, set()).update(NGramsDecontIndexer.compute_hashes(indexer, part))
    return hashes


def datatrove_filter(hashes: dict[str, set[int]] | None, n: int, index_folder: Path | None = None):
    """datatrove's ``NGramsDecontFilter`` at n, with the character tokenizer: ``hashes`` given in memory, or an index
    folder of ``<task>.index.hashes`` files as its indexer writes them (:func:`write_datatrove_index`)."""
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
    from loguru import logger

    from bench.data_pipeline import _character_tokenizer, _xxh64_utf8

    logger.remove()
    config = NGramsDecontConfig(n_grams=n, find_query_ngrams=False, find_overlap_ngrams=False)
    decont = NGramsDecontFilter(str(index_folder or "/nonexistent"), config=config, language=_character_tokenizer())
    decont.hash_func = _xxh64_utf8  # datatrove 0.10.1 hands xxhash a str, which xxhash 4 refuses
    if hashes is not None:
        decont._index_hashes = {h: task for task, values in hashes.items() for h in values}
    return decont


def write_datatrove_index(hashes: dict[str, set[int]], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for task, values in hashes.items():
        np.array(sorted(values), dtype="<u8").tofile(folder / f"{task.replace(' ', '_')}.index.hashes")
    return folder


def run_datatrove(decont, texts):
    from datatrove.data import Document

    return [decont.filter(Document(text=text, id=str(i))) is not True for i, text in enumerate(texts)]


# --- speed and size -----------------------------------------------------------------------------------

def stage_speed(index, texts, runs):
    from taide.data.base import Document
    from taide.data.decontaminate import Decontaminate

    stage = Decontaminate(index=index)
    docs = [Document(str(i), t, "bench", {}) for i, t in enumerate(texts)]
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        for doc in docs:
            stage.process(doc)
        best = min(best, time.perf_counter() - started)
    return best


def leaderboard_index(exam, laws, rng, count):
    """An index of ``count`` items shaped like TMMLU's (stem and option lengths drawn from them), their characters
    drawn one by one with the law corpus's character frequencies (so their n-grams are as varied as exam text's,
    and, like a clean corpus's relation to the exams, the laws do not hold them): its size, build time and search
    speed stand for the whole leaderboard's."""
    from taide.decontam.index import EvalIndex
    from taide.decontam.items import EvalItem, keyed

    shapes = [[len(p) for p in item.parts] for item, _ in exam]
    frequency = Counter("".join("".join(law.split()) for law in laws[:3000]))
    chars, weights = zip(*frequency.items())
    p = np.array(weights, dtype=np.float64) / sum(weights)
    chosen = [shapes[int(i)] for i in rng.integers(len(shapes), size=count)]
    drawn = "".join(np.array(chars)[rng.choice(len(chars), size=sum(map(sum, chosen)), p=p)].tolist())
    items, at = [], 0
    for k, lengths in enumerate(chosen):
        parts = []
        for length in lengths:
            parts.append(drawn[at: at + length])
            at += length
        items.append(EvalItem("synthetic", "s", str(k), tuple(parts), "-", "question"))
    items = keyed(items)
    tracemalloc.start()
    started = time.perf_counter()
    index = EvalIndex(items)
    index.bitmap()
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return index, seconds, peak


# --- driver -------------------------------------------------------------------------------------------

def folding_tables():
    """Key tables that differ only in how they treat the script: ours (each Traditional character to its Simplified
    form), none, and Simplified→Traditional character by character (OpenCC s2t, one character at a time)."""
    from taide.data.script import cjk_conversions
    from taide.decontam.keys import key_table

    ours = key_table()
    chars, to_simp, to_trad = cjk_conversions()
    plain = ours.copy()
    for ch, simp in zip(chars, to_simp):
        if len(simp) == 1 and ours[ord(ch)] == ord(simp):
            plain[ord(ch)] = ord(ch)
    s2t = plain.copy()
    for ch, trad in zip(chars, to_trad):
        if len(trad) == 1:
            s2t[ord(ch)] = ord(trad)
    return {"ours": ours, "none": plain, "s2t": s2t}


def compare_foldings(items, texts, kinds, planted):
    """Recall on the Simplified copies, and clean laws flagged, for each way to fold the script; and OpenCC's word
    converter (the `simplified` stage's, s2twp) run on the documents first, with no folding in the keys."""
    from taide.data.script import Simplified
    from taide.decontam.index import EvalIndex

    tables = folding_tables()
    rows = {}
    for name, table in tables.items():
        index = EvalIndex(items, table=table)
        keys = [index.key_of(e) for e in range(index.entries)]
        hits = [[(keys[h.entry], h.share, index.total[h.entry]) for h in index.search(t)] for t in texts]
        rows[name] = score(hits, kinds, planted, {k: index.total[e] for e, k in enumerate(keys)}, index.ngram,
                           index.threshold, index.min_weight)
    stage = Simplified()
    simplified = [i for i, k in enumerate(kinds) if k in ("Simplified", *EXTRA)]
    # The stage converts a document only when it is mostly Simplified; a Simplified question inside a Traditional
    # law is not, so its own decision would leave nearly all of them as they are. Here every one is converted.
    started = time.perf_counter()
    converted = {i: stage.convert(texts[i]) for i in simplified}
    seconds = time.perf_counter() - started
    detected = sum(stage.is_simplified(texts[i])[0] for i in simplified)
    index = EvalIndex(items, table=tables["none"])
    keys = [index.key_of(e) for e in range(index.entries)]
    hits = [[(keys[h.entry], h.share, index.total[h.entry]) for h in index.search(converted.get(i, t))]
            for i, t in enumerate(texts)]
    rows["word converter"] = score(hits, kinds, planted, {k: index.total[e] for e, k in enumerate(keys)}, index.ngram,
                                   index.threshold, index.min_weight)
    megabytes = sum(len(texts[i].encode("utf-8")) for i in simplified) / 1e6
    return rows, megabytes / seconds, detected / len(simplified)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="speed: best of this many passes")
    parser.add_argument("--laws", type=int, default=0, help="use only the first N laws (0: all)")
    parser.add_argument("--no-datatrove", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    if not CORPUS.is_file() or not EXAMS.is_dir():
        print(f"this benchmark needs {CORPUS} and {EXAMS} (the shared data folder beside the checkout)")
        return 1
    from taide.decontam.index import MIN_WEIGHT, NGRAM, THRESHOLD, EvalIndex

    rng = np.random.default_rng(SEED)
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        laws = [json.loads(line)["text"] for line in f]
    if args.laws:
        laws = laws[: args.laws]
    exam = exam_items()
    indexed, held = split_halves(exam, rng)
    texts, kinds, planted = build_documents(laws, indexed, held, rng)
    items = [item for item, _ in indexed]
    counts = Counter(kinds)
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    print(f"{len(exam)} TMMLU questions: {len(indexed)} indexed, {len(held)} held out as boilerplate negatives; "
          f"{len(texts):,} documents, {megabytes:.1f} MB ({', '.join(f'{k} {v:,}' for k, v in counts.items())})",
          flush=True)

    rows = sweep(items, texts, kinds, planted)
    chosen = next(r for r in rows if (r["ngram"], r["threshold"], r["min_weight"]) == (NGRAM, THRESHOLD, MIN_WEIGHT))
    index = EvalIndex(items)
    foldings, convert_speed, detected = compare_foldings(items, texts, kinds, planted)

    dt_rows, dt_seconds = [], None
    if not args.no_datatrove:
        try:
            import datatrove  # noqa: F401
        except ImportError:
            print("datatrove is not installed: its rows are left out")
            args.no_datatrove = True
    if not args.no_datatrove:
        for n in GRID["ngram"]:
            decont = datatrove_filter(datatrove_hashes(items, n), n)
            started = time.perf_counter()
            flags = run_datatrove(decont, texts)
            seconds = time.perf_counter() - started
            hits = [[(key, 1.0, 1e9)] if flag and key else ([("?", 1.0, 1e9)] if flag else [])
                    for flag, key in zip(flags, planted)]
            dt_rows.append(score(hits, kinds, planted, {}, n, 1.0, 0.0, {"seconds": seconds}))
            print(f"  datatrove n={n}: recall {recall(dt_rows[-1]):.1%}, clean flagged "
                  f"{false_positive(dt_rows[-1]):.2%} ({seconds:.1f} s)", flush=True)
            if n == NGRAM:
                started = time.perf_counter()
                run_datatrove(decont, laws)
                dt_seconds = time.perf_counter() - started

    # The corpus as it is, against every TMMLU question: what a user checking this corpus would be shown.
    everything = EvalIndex([item for item, _ in exam])
    as_is = []
    for text in laws:
        hits = everything.search(text)
        if hits:
            hit = max(hits, key=lambda h: h.share)
            start, end = max(everything.spans(text, [hit]), key=lambda span: span[1] - span[0])
            as_is.append(f"- {everything.items[everything.entry_items[hit.entry][0]].label} ({hit.share:.0%}): "
                         f"「{' '.join(text[start:end].split())[:60]}」")
    law_megabytes = sum(len(t.encode("utf-8")) for t in laws) / 1e6
    seconds = stage_speed(index, laws, args.runs)
    started = time.perf_counter()
    EvalIndex(items)
    build_seconds = time.perf_counter() - started
    big, big_seconds, big_peak = leaderboard_index(exam, laws, rng, LEADERBOARD_ITEMS)
    big_speed = stage_speed(big, laws, args.runs)

    # --- tables ---
    def pct(x):
        return "–" if x != x else f"{x:.1%}"

    def checkable_share(r):
        return sum(r["checkable"].get(k, 0) for k in VARIANTS) / sum(r["total"].get(k, 0) for k in VARIANTS)

    def line(label, r, checkable=True, share="–"):
        negatives = r["flagged"].get("boilerplate negative", 0)
        return (f"| {label} | {pct(recall(r))} | {pct(recall(r, checkable=True)) if checkable else '–'} | {share} | "
                + " | ".join(pct(recall(r, (k,), checkable)) for k in (*VARIANTS, *EXTRA))
                + f" | {r['flagged'].get('clean', 0)} ({false_positive(r):.2%}) | "
                f"{negatives} ({false_positive(r, 'boilerplate negative'):.1%}) |")

    header = ["| method | recall: all questions | recall: checkable questions | checkable share | verbatim | "
              "re-punctuated | Simplified | reordered | mainland words | clean laws flagged | boilerplate negatives "
              "flagged |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    shown = [r for r in rows if r["min_weight"] == MIN_WEIGHT or (r["ngram"], r["threshold"]) == (NGRAM, THRESHOLD)]
    table = header + [line(("**" if r is chosen else "") + f"taide, {r['ngram']}-grams, threshold {r['threshold']:g}, "
                           f"min weight {r['min_weight']:g}" + ("** (default)" if r is chosen else ""), r,
                           share=pct(checkable_share(r))) for r in shown]
    table += [line(f"datatrove `NGramsDecontFilter`, character {r['ngram']}-grams (any one)", r, checkable=False)
              for r in dt_rows]
    folding = ["| script folding (default settings) | recall: all questions | recall: checkable questions | checkable "
               "share | verbatim | re-punctuated | Simplified | reordered | mainland words | clean laws flagged | "
               "boilerplate negatives flagged |", header[1]]
    names = {"ours": "Traditional → Simplified, per character (taide's)", "none": "none",
             "s2t": "Simplified → Traditional, per character (OpenCC s2t)",
             "word converter": "none, each document converted first with OpenCC s2twp word by word (the "
                               "`simplified` stage's converter)"}
    folding += [line(names[name], r) for name, r in foldings.items()]
    c = chosen
    found = sum(c["found_checkable"].get(k, 0) for k in VARIANTS)
    total = sum(c["checkable"].get(k, 0) for k in VARIANTS)
    headline = (f"**Default (character {NGRAM}-grams, threshold {THRESHOLD:g}, min weight {MIN_WEIGHT:g}): recall "
                f"{recall(c, checkable=True):.1%} of the planted copies of checkable questions ({found:,} of {total:,}; "
                f"goal ≥ 99%), {recall(c):.1%} of all planted copies; clean laws flagged {c['flagged'].get('clean', 0)} "
                f"of {c['total'].get('clean', 0):,} ({false_positive(c):.2%}; goal ≤ 0.1%); boilerplate negatives flagged "
                f"{c['flagged'].get('boilerplate negative', 0)} of {c['total']['boilerplate negative']:,}.** "
                f"{1 - checkable_share(c):.1%} of the questions are too short to check (their n-grams weigh less than "
                f"{MIN_WEIGHT:g}, as in 一年有幾個月？ (A)十 (B)十一 (C)十二 (D)十三): the report counts them apart, and "
                f"`taide eval mc --seen` scores them as unchecked.")
    flagged = []
    for i in c["flagged_ids"][:8]:
        hit = max(index.search(texts[i]), key=lambda h: h.share)
        start, end = max(index.spans(texts[i], [hit]), key=lambda span: span[1] - span[0])
        flagged.append(f"- {kinds[i]}: {index.items[index.entry_items[hit.entry][0]].label} ({hit.share:.0%} of its "
                       f"n-grams' weight): 「{' '.join(texts[i][start:end].split())[:60]}」")
    speed = ["| what | documents | seconds | MB/s | vs taide |", "|---|---|---:|---:|---:|",
             f"| taide `decontaminate` stage (index of {index.entries:,} questions, {len(index.hashes):,} n-grams) | "
             f"the {len(laws):,} laws as they are | {seconds:.2f} | {law_megabytes / seconds:.1f} | 1.00× |",
             f"| the same, leaderboard-sized index ({big.entries:,} items, {len(big.hashes):,} n-grams) | the laws as "
             f"they are | {big_speed:.2f} | {law_megabytes / big_speed:.1f} | – |"]
    if dt_seconds:
        speed.append(f"| datatrove `NGramsDecontFilter` (character {NGRAM}-grams, the same questions) | the laws as "
                     f"they are, once | {dt_seconds:.2f} | {law_megabytes / dt_seconds:.1f} | {seconds / dt_seconds:.2f}× |")
    body = "\n".join([
        "## Decontamination: exam questions planted in the Taiwan law corpus",
        "",
        f"{len(exam):,} TMMLU questions (../shared/data/tmmlu, 25 subjects) split by question: {len(indexed):,} indexed, "
        f"{len(held):,} held out. Each indexed question planted into four laws, at a line break: verbatim (TMMLU's "
        f"text); re-punctuated (half-width for full-width punctuation and back, spaces and a line break in the stem, "
        f"options one a line as A. / Ｂ、 / C) / （Ｄ）); Simplified (OpenCC t2s); options reordered and lettered anew; "
        f"and, reported apart, a fifth with mainland vocabulary (OpenCC tw2sp: 軟體→软件, 資訊→信息). Each held-out "
        f"question is planted into one law as a boilerplate negative: an exam question in the same style, with the "
        f"same stock phrases, that the index does not hold. The other {counts['clean']:,} laws are the clean "
        f"documents. {len(texts):,} documents, {megabytes:.1f} MB. Recall per variant is over checkable questions.",
        "",
        headline,
        "",
        *table,
        "",
        "Documents flagged at the default that hold no planted copy of the question named (a law that holds an exam "
        "question's own text, such as the regulation a question quotes, is flagged rightly):",
        "",
        *(flagged or ["- none"]),
        "",
        f"The {len(laws):,} laws as they are, against all {len(exam):,} TMMLU questions at the default: {len(as_is)} "
        f"flagged ({len(as_is) / len(laws):.2%}), each with the text that matched (a law may rightly hold the "
        f"provision a question quotes):",
        "",
        *(as_is or ["- none"]),
        "",
        f"Folding the script: keys compare each Traditional character's Simplified form, so 頭髮 and 头发 (t2s: 髮 → "
        f"发, 發 → 发) meet; folding the other way, character by character, must pick one reading of 发 and misses "
        f"them. Converting each document with the `simplified` stage's word converter first runs at "
        f"{convert_speed:.1f} MB/s, and the stage itself converts only documents that are mostly Simplified: it took "
        f"{detected:.0%} of these laws with a Simplified question inside for Simplified, so in the pipeline the "
        f"question would stay Simplified whatever the keys' folding. The keys' table costs nothing beyond the lookup "
        f"every key needs:",
        "",
        *folding,
        "",
        f"Speed, one process, best of {args.runs} (the index of {index.entries:,} questions built in "
        f"{build_seconds:.2f} s):",
        "",
        *speed,
        "",
        f"The whole Open TW LLM Leaderboard ({LEADERBOARD_ITEMS:,} items: TMMLU+ 22,690, TMLU 2,981, TMMLU about 3,000, "
        f"TTQA 64, TW Legal 124) in one index: built in {big_seconds:.1f} s, {big.nbytes() / 1e6:.0f} MB to search "
        f"with (and the 4.4 MB folding table), {big_peak / 1e6:.0f} MB at the peak of building. Its items are drawn "
        f"with TMMLU's stem and option lengths and the law corpus's character frequencies (the leaderboard's exams are "
        f"not in ../shared), so the laws hold none of them, as a clean corpus holds none of the real ones.",
        "",
        "Reproduce: `.venv/bin/python -m bench.decontamination --runs 3`.",
    ])
    print()
    print(body)
    if not args.no_write:
        write_section("decontamination", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
