"""Throughput of ``taide data clean`` (the current default pipeline) on the Taiwan law corpus, against the
comparable chain assembled from datatrove in the same run; what the default pipeline removes from that
(clean) corpus; and where taide's time goes, stage by stage.

Contenders, all on the same input (the corpus cut into 4 gzipped JSONL shards, so that 2 datatrove tasks
both have files to read; taide gets the same shards), each run in a fresh process and a fresh output
directory, rounds interleaved so drift in machine speed hits them alike, best of ``--runs``:

- taide ``run_clean(CleanConfig(shards, out, workers=N))``: the default pipeline, N = 1 and N = every core;
- datatrove A: JsonlReader → PIIFormatter → FTFYFormatter → LambdaFilter(len(text) ≥ 50) → JsonlWriter;
- datatrove B: MinHash dedup over character 5-grams, all four stages (signatures, buckets, cluster,
  filter + JsonlWriter), datatrove's default 14 bands × 8 rows. Its ``language="zh"`` would shingle
  space-separated clauses, so it gets a character tokenizer (5 "words" = 5 characters) and no text
  simplification, and xxhash64 of the UTF-8 bytes (datatrove 0.10.1 hands xxhash 4 a str, which it
  refuses);
- datatrove end to end: time A + time B on the same input, with the same number of tasks;
- with decontamination (unless ``--no-decontaminate``): taide's ``run_clean(CleanConfig(...,
                                                                                        decontaminate=EVAL))`` against
  datatrove A with its ``NGramsDecontFilter`` after the length filter (its index holds the same evaluation items'
  character n-grams, part by part, at taide's n-gram length; written as its indexer writes it), + B. EVAL: the
  TMMLU questions of ../shared and the taide-bench sample and Taiwan prompts that ship with taide.

Both write uncompressed JSONL. MB/s is uncompressed input bytes (10^6) over wall seconds, from the call to
its return (worker start-up included, interpreter start-up and imports of the calling process not).

    .venv/bin/python -m bench.data_pipeline [--runs 3] [--no-datatrove] [--no-decontaminate] [--cprofile] [--no-write]
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.report import write_section

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "tw-laws" / "laws-zh.jsonl.gz"
WORKDIR = Path("/tmp/bench-data/data_pipeline")
PACKAGE = ROOT / "src" / "taide"
EVAL = [p for p in (ROOT.parent / "shared" / "data" / "tmmlu", PACKAGE / "eval/data/taide-bench",
                    PACKAGE / "eval/data/taiwan-prompts.jsonl") if p.exists()]
SHARDS = 4
MIN_CHARS = 50


# --- input ------------------------------------------------------------------------------------------

def make_shards(corpus: Path, directory: Path, count: int) -> tuple[list[Path], int, int]:
    """The corpus cut into ``count`` contiguous gzipped shards of about equal bytes: (paths, documents,
    uncompressed bytes)."""
    with gzip.open(corpus, "rb") as f:
        lines = [line for line in f if line.strip()]
    total = sum(len(line) for line in lines)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    paths, start, done = [], 0, 0
    for k in range(count):
        end = start
        while end < len(lines) and (k == count - 1 or done + len(lines[end]) <= total * (k + 1) / count):
            done += len(lines[end])
            end += 1
        path = directory / f"laws-{k:02d}.jsonl.gz"
        with gzip.open(path, "wb", compresslevel=6) as out:
            out.writelines(lines[start:end])
        paths.append(path)
        start = end
    return paths, len(lines), total


# --- contenders (each runs in a process of its own: ``--worker``) -----------------------------------

def run_taide(shards: list[Path], out: Path, workers: int, decontaminate: list[Path] | None = None) -> dict:
    from taide.data import CleanConfig, run_clean

    started = time.perf_counter()
    report = run_clean(CleanConfig([str(p) for p in shards], str(out), workers=workers,
                                   decontaminate=decontaminate)).report
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "read": report["read"], "kept": report["kept"], "removed": report["removed"],
            "unreadable": report["unreadable"], "stages": report["stages"]}


def _count_lines(folder: Path) -> int:
    return sum(sum(1 for _ in p.open("rb")) for p in sorted(folder.glob("*.jsonl")))


# datatrove's default start method is forkserver, whose workers are not children of the run's process, so
# their CPU time would not show in its accounting (see ``measured``); fork spares them re-importing too.
START = "fork"


def _quiet_datatrove():
    from loguru import logger

    logger.remove()


def _length_filter(doc) -> bool:
    return len(doc.text) >= MIN_CHARS


def run_datatrove_a(shards: list[Path], out: Path, tasks: int, decont_index: Path | None = None) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    _quiet_datatrove()
    decont = []
    if decont_index is not None:
        from bench.decontamination import datatrove_filter
        from taide.decontam.index import NGRAM

        decont = [datatrove_filter(None, NGRAM, decont_index)]
    pipeline = [JsonlReader(str(shards[0].parent)), PIIFormatter(), FTFYFormatter(), LambdaFilter(_length_filter),
                *decont, JsonlWriter(str(out / "output"), compression=None)]
    executor = LocalPipelineExecutor(pipeline, tasks=tasks, workers=tasks, logging_dir=str(out / "logs"),
                                     start_method=START)
    started = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "kept": _count_lines(out / "output")}


def _xxh64_utf8(text: str) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(text.encode("utf-8"))


def _character_tokenizer():
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Characters(WordTokenizer):
        def word_tokenize(self, text):
            return [c for c in text if not c.isspace()]

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]

    return Characters()


def run_datatrove_b(shards: list[Path], out: Path, tasks: int) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.text import TextNormConfig

    _quiet_datatrove()
    config = MinhashConfig(n_grams=5, norm_config=TextNormConfig(
        lowercase=False, norm_whitespace=False, remove_punctuation=False, norm_unicode_diacritics=False,
        norm_numbers=False))
    signature = MinhashDedupSignature(output_folder=str(out / "sigs"), config=config, language=_character_tokenizer())
    signature._hash_func = _xxh64_utf8
    def executor(steps, tasks_, workers, logs):
        return LocalPipelineExecutor(steps, tasks=tasks_, workers=workers, logging_dir=str(out / logs),
                                     start_method=START)

    steps = {
        "signatures": executor([JsonlReader(str(shards[0].parent)), signature], tasks, tasks, "logs1"),
        "buckets": executor([MinhashDedupBuckets(input_folder=str(out / "sigs"), output_folder=str(out / "buckets"),
                                                 config=config)], config.num_buckets, tasks, "logs2"),
        "cluster": executor([MinhashDedupCluster(input_folder=str(out / "buckets"), output_folder=str(out / "remove"),
                                                 config=config)], 1, 1, "logs3"),
        "filter": executor([JsonlReader(str(shards[0].parent)), MinhashDedupFilter(input_folder=str(out / "remove")),
                            JsonlWriter(str(out / "output"), compression=None)], tasks, tasks, "logs4"),
    }
    times = {}
    for name, step in steps.items():
        started = time.perf_counter()
        step.run()
        times[name] = time.perf_counter() - started
    return {"seconds": sum(times.values()), "steps": times, "kept": _count_lines(out / "output"),
            "bands": config.num_buckets, "rows": config.hashes_per_bucket}


def profile_taide(corpus: Path, limit: int, decontaminate: list[Path] | None = None) -> dict:
    """Each step of the default pipeline (with the decontaminate stage, given evaluation data) timed on its own, in
    one process, over the corpus (or its first ``limit`` documents), in the order ``process_batch`` runs them."""
    from taide.data.base import DedupStage, Document
    from taide.data.pipeline import build_pipeline, with_decontamination
    from taide.data.readers import Unreadable, read_raw, to_document

    config = with_decontamination(None, decontaminate) if decontaminate else None
    stages = build_pipeline(config)
    per_doc = [s for s in stages if not isinstance(s, DedupStage)]
    dedup = [s for s in stages if isinstance(s, DedupStage)]
    seconds: Counter = Counter()
    docs_in: Counter = Counter()
    bytes_in: Counter = Counter()
    clock = time.perf_counter

    started = clock()
    raws = []
    for raw in read_raw(corpus):
        raws.append(raw)
        if limit and len(raws) >= limit:
            break
    seconds["read"] = clock() - started
    docs_in["read"] = len(raws)
    bytes_in["read"] = sum(len(r.payload) for r in raws)

    signatures = {s.name: [] for s in dedup}
    kept_texts = []
    for raw in raws:
        t0 = clock()
        doc = to_document(raw)
        seconds["parse"] += clock() - t0
        docs_in["parse"] += 1
        bytes_in["parse"] += len(raw.payload)
        if isinstance(doc, Unreadable):
            continue
        for stage in per_doc:
            docs_in[stage.name] += 1
            bytes_in[stage.name] += len(doc.text.encode("utf-8"))
            t0 = clock()
            result = stage.process(doc)
            seconds[stage.name] += clock() - t0
            if not isinstance(result, Document):
                break
            doc = result
        else:
            n = len(doc.text.encode("utf-8"))
            t0 = clock()
            json.dumps(doc.output("text"), ensure_ascii=False)
            seconds["serialize"] += clock() - t0
            docs_in["serialize"] += 1
            bytes_in["serialize"] += n
            kept_texts.append(doc.text)
            for stage in dedup:
                t0 = clock()
                signatures[stage.name].append(stage.signature(doc))
                seconds[f"{stage.name} signature"] += clock() - t0
                docs_in[f"{stage.name} signature"] += 1
                bytes_in[f"{stage.name} signature"] += n

    removed: set[int] = set()
    for stage in dedup:
        items = [(i, str(i), sig) for i, sig in enumerate(signatures[stage.name]) if i not in removed]
        kwargs = {}
        if "texts" in inspect.signature(stage.duplicates).parameters:
            kwargs["texts"] = lambda positions: {p: kept_texts[p] for p in positions}
        t0 = clock()
        removed |= set(stage.duplicates(iter(items), **kwargs))
        seconds[f"{stage.name} decision"] += clock() - t0
        docs_in[f"{stage.name} decision"] = len(items)
        bytes_in[f"{stage.name} decision"] = 0

    where = {"read": "driver", **{f"{s.name} decision": "driver" for s in dedup}}
    order = ["read", "parse", *[s.name for s in per_doc], "serialize", *[f"{s.name} signature" for s in dedup],
             *[f"{s.name} decision" for s in dedup]]
    rows = [{"step": name, "where": where.get(name, "worker"), "seconds": seconds[name], "docs": docs_in[name],
             "bytes": bytes_in[name]} for name in order]
    return {"rows": rows, "pipeline": [s.name for s in stages], "docs": len(raws)}


def cprofile_taide(shards: list[Path], out: Path, top: int) -> dict:
    """cProfile of a 1-worker ``clean``: the functions with the most time of their own."""
    import cProfile
    import io
    import pstats

    from taide.data import CleanConfig, run_clean

    profiler = cProfile.Profile()
    profiler.enable()
    run_clean(CleanConfig([str(p) for p in shards], str(out), workers=1))
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(top)
    return {"text": text.getvalue()}


def worker(kind: str, shards: list[Path], out: Path, n: int) -> None:
    if kind == "taide":
        result = run_taide(shards, out, n)
    elif kind == "taide+decont":
        result = run_taide(shards, out, n, EVAL)
    elif kind == "datatrove-a":
        result = run_datatrove_a(shards, out, n)
    elif kind == "datatrove-a+decont":
        result = run_datatrove_a(shards, out, n, shards[0].parent.parent / "datatrove-index")
    elif kind == "datatrove-b":
        result = run_datatrove_b(shards, out, n)
    elif kind == "profile":
        result = profile_taide(shards[0], n)
    elif kind == "profile+decont":
        result = profile_taide(shards[0], n, EVAL)
    elif kind == "cprofile":
        result = cprofile_taide(shards, out, n)
    else:
        raise SystemExit(f"unknown worker {kind}")
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")


ISA_ENV: dict[str, str] = {}  # --isa avx2: every contender's process runs as an AVX2-only CPU would


def in_subprocess(kind: str, shards: list[Path], out: Path | None, n: int) -> dict:
    if out is not None and out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "bench.data_pipeline", "--worker", kind, "--n", str(n),
               "--out", str(out or "-"), *map(str, shards)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **ISA_ENV})
    if out is not None and out.exists():
        shutil.rmtree(out)
    if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"the {kind} run (n={n}) failed with exit status {proc.returncode}")
    return json.loads(proc.stdout.rsplit("@@RESULT@@", 1)[1])


# --- driver ------------------------------------------------------------------------------------------

def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(seconds: float = 2.0) -> float:
    """How many cores the machine kept busy over the next ``seconds``."""
    b0, t0 = _cpu_jiffies()
    time.sleep(seconds)
    b1, t1 = _cpu_jiffies()
    return (b1 - b0) / max(1, t1 - t0) * (os.cpu_count() or 1)


def wait_for_quiet(max_busy: float, patience: float) -> float:
    """Wait (at most ``patience`` seconds) until other processes keep less than ``max_busy`` cores busy."""
    deadline = time.monotonic() + patience
    busy = busy_cores()
    while busy >= max_busy and time.monotonic() < deadline:
        print(f"    others keep {busy:.2f} cores busy (load {os.getloadavg()[0]:.2f}): waiting", flush=True)
        time.sleep(10)
        busy = busy_cores()
    return busy


def measured(kind: str, shards: list[Path], out: Path, n: int, max_busy: float, patience: float,
             retries: int) -> dict:
    """One run, timed, with the CPU that other processes took meanwhile (machine busy time less this run's
    own CPU time, over its wall time, in cores). A run that others disturbed by more than ``max_busy`` cores
    is repeated, up to ``retries`` times; the least disturbed one is returned."""
    tries = []
    for attempt in range(retries + 1):
        wait_for_quiet(max_busy, patience)
        own0 = os.times()
        b0, t0 = _cpu_jiffies()
        wall0 = time.monotonic()
        result = in_subprocess(kind, shards, out, n)
        wall = time.monotonic() - wall0
        b1, t1 = _cpu_jiffies()
        own1 = os.times()
        ticks = os.sysconf("SC_CLK_TCK")
        own = sum(own1[i] - own0[i] for i in range(4))  # this process and its (waited-for) children
        machine = (b1 - b0) / ticks
        result["others"] = max(0.0, (machine - own) / wall)
        tries.append(result)
        if result["others"] < max_busy:
            break
        print(f"    {kind} x{n}: {result['seconds']:.2f} s, but others took {result['others']:.2f} cores: again",
              flush=True)
    return min(tries, key=lambda r: r["others"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds; the best of each is reported")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the all-cores figure's workers")
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="shards and run outputs (wiped)")
    parser.add_argument("--profile-docs", type=int, default=0, help="documents to profile (0: all)")
    parser.add_argument("--max-busy", type=float, default=0.25,
                        help="cores other processes may keep busy during a run before it is repeated")
    parser.add_argument("--patience", type=float, default=600, help="seconds to wait for quiet before a run")
    parser.add_argument("--retries", type=int, default=4, help="repeats of a run that others disturbed")
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions (1 worker)")
    parser.add_argument("--no-datatrove", action="store_true")
    parser.add_argument("--no-decontaminate", action="store_true", help="leave out the runs with decontamination")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--isa", choices=["native", "avx2"], default="native",
                        help="avx2: every contender as an AVX2-only CPU runs it (bench/isa.py), in a section of its own")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("shards", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.shards, Path(args.out), args.n)
        return 0
    if not args.corpus.is_file():
        print(f"the Taiwan law corpus {args.corpus} is absent: this benchmark needs it (it ships in the shared "
              f"data folder, not in the repository); pass --corpus to point at it")
        return 1
    datatrove = not args.no_datatrove
    if datatrove:
        try:
            import datatrove as _dt
            version = _dt.__version__ if hasattr(_dt, "__version__") else ""
        except ImportError:
            print("datatrove is not installed: its rows are left out")
            datatrove = False
    if datatrove and not version:
        from importlib.metadata import version as _version

        version = _version("datatrove")

    if args.isa == "avx2":
        from bench.isa import AVX2_ENV

        ISA_ENV.update(AVX2_ENV)
    shards, docs, total = make_shards(args.corpus, args.workdir / "shards", SHARDS)
    megabytes = total / 1e6
    print(f"{docs:,} laws, {megabytes:.1f} MB uncompressed, cut into {len(shards)} shards under {args.workdir}")
    runs = args.workdir / "runs"
    cores = args.workers
    decont = not args.no_decontaminate and bool(EVAL)
    contenders = [("taide", 1), ("taide", cores)] + ([("taide+decont", 1), ("taide+decont", cores)] if decont else [])
    if datatrove:
        contenders += [("datatrove-a", 1), ("datatrove-a", cores), ("datatrove-b", 1), ("datatrove-b", cores)]
    if datatrove and decont:
        from bench.decontamination import datatrove_hashes, write_datatrove_index
        from taide.decontam.index import NGRAM
        from taide.decontam.items import read_eval_items

        eval_items = read_eval_items(EVAL).items
        write_datatrove_index(datatrove_hashes(eval_items, NGRAM), args.workdir / "datatrove-index")
        contenders += [("datatrove-a+decont", 1), ("datatrove-a+decont", cores)]
    results: dict[tuple[str, int], list[dict]] = {c: [] for c in contenders}
    for r in range(args.runs):
        print(f"round {r + 1}/{args.runs} (load {os.getloadavg()[0]:.2f})", flush=True)
        for kind, n in contenders:
            result = measured(kind, shards, runs / f"{kind}-{n}", n, args.max_busy, args.patience, args.retries)
            results[(kind, n)].append(result)
            extra = ""
            if "steps" in result:
                extra = " (" + ", ".join(f"{k} {v:.1f} s" for k, v in result["steps"].items()) + ")"
            print(f"  {kind:12s} x{n}: {result['seconds']:6.2f} s  {megabytes / result['seconds']:5.1f} MB/s  "
                  f"kept {result['kept']:,}  others {result['others']:.2f} cores{extra}", flush=True)

    best = {c: min(rs, key=lambda x: x["seconds"]) for c, rs in results.items()}
    worst_others = max(b["others"] for b in best.values())
    secs = {c: b["seconds"] for c, b in best.items()}
    median = {c: statistics.median(x["seconds"] for x in rs) for c, rs in results.items()}
    for n in (1, cores):
        for a, e2e in (("datatrove-a", "datatrove-e2e"), ("datatrove-a+decont", "datatrove-e2e+decont")):
            if (a, n) in secs:
                secs[(e2e, n)] = secs[(a, n)] + secs[("datatrove-b", n)]
                median[(e2e, n)] = median[(a, n)] + median[("datatrove-b", n)]

    # what the default pipeline removed
    report = best[("taide", cores)]
    other = best[("taide", 1)]
    if (report["kept"], report["removed"]) != (other["kept"], other["removed"]):
        print(f"WARNING: 1 worker and {cores} workers removed different documents: "
              f"{other['removed']} vs {report['removed']}")
    from taide.data.base import DedupStage
    from taide.data.pipeline import build_pipeline

    stages = build_pipeline(None)
    dedup_names = {s.name for s in stages if isinstance(s, DedupStage)}
    read = report["read"]
    removed_rows = sorted(report["removed"].items(), key=lambda kv: -kv[1])
    outside = sum(v for k, v in report["removed"].items() if k.split(":", 1)[0] not in dedup_names)
    inside = sum(v for k, v in report["removed"].items() if k.split(":", 1)[0] in dedup_names)

    # profile
    profile = measured("profile+decont" if decont else "profile", [args.corpus], None, args.profile_docs,
                       args.max_busy, args.patience, args.retries)
    prof_total = sum(row["seconds"] for row in profile["rows"])
    cprof = in_subprocess("cprofile", shards, runs / "cprofile", 30)["text"] if args.cprofile else None

    # --- tables ---
    def row(label, key, n):
        s = secs[key]
        mbs, dps = megabytes / s, docs / s
        anchor = secs.get(("datatrove-e2e+decont" if "decont" in key[0] else "datatrove-e2e", n))
        ratio = f"{anchor / s:.2f}×" if anchor else "n/a"
        return (f"| {label} | {n} | {s:.2f} ({median[key]:.2f}) | {mbs:.1f} | {dps:,.0f} | {ratio} |")

    pipeline_names = " → ".join(s.name for s in stages)
    table = ["| pipeline | workers / tasks | seconds: best (median) | MB/s | docs/s | vs datatrove A + B (with its "
             "decontamination when ours is on), same cores |", "|---|---:|---:|---:|---:|---:|"]
    for n in (1, cores):
        table.append(row("taide `clean`, default pipeline", ("taide", n), n))
    if decont:
        for n in (1, cores):
            table.append(row("taide `clean --decontaminate EVAL`", ("taide+decont", n), n))
    if datatrove:
        for n in (1, cores):
            table.append(row("datatrove A: read → PII → ftfy → length ≥ 50 → write", ("datatrove-a", n), n))
        for n in (1, cores):
            table.append(row("datatrove B: MinHash, char 5-grams, 14 × 8 (4 stages)", ("datatrove-b", n), n))
        for n in (1, cores):
            table.append(row("**datatrove end to end (A + B)**", ("datatrove-e2e", n), n))
    if datatrove and decont:
        for n in (1, cores):
            table.append(row("datatrove A with `NGramsDecontFilter` before the writer", ("datatrove-a+decont", n), n))
        for n in (1, cores):
            table.append(row("**datatrove end to end with decontamination (A + decont, B)**",
                             ("datatrove-e2e+decont", n), n))
    headline = ""
    if datatrove:
        ratio_all = secs[("datatrove-e2e", cores)] / secs[("taide", cores)]
        ratio_one = secs[("datatrove-e2e", 1)] / secs[("taide", 1)]
        headline = (f"**taide / datatrove end to end on all {cores} cores: {ratio_all:.2f}×** "
                    f"(goal ≥ 3×); on 1 core {ratio_one:.2f}×. taide's scaling from 1 to {cores} workers: "
                    f"{secs[('taide', 1)] / secs[('taide', cores)]:.2f}×; datatrove's: "
                    f"{secs[('datatrove-e2e', 1)] / secs[('datatrove-e2e', cores)]:.2f}×.")
        b_steps = best[("datatrove-b", cores)]["steps"]
        headline += (f" datatrove B's stages at {cores} tasks: " +
                     ", ".join(f"{k} {v:.1f} s" for k, v in b_steps.items()) + ".")
        kept_a, kept_b = best[("datatrove-a", cores)]["kept"], best[("datatrove-b", cores)]["kept"]
        headline += (f" Documents removed: datatrove A {docs - kept_a:,}, datatrove B {docs - kept_b:,}; "
                     f"taide {read - report['kept']:,}.")
    if decont:
        on = best[("taide+decont", cores)]
        headline += (f"\n\nWith the decontaminate stage on (against {len(EVAL)} evaluation sets: "
                     f"{', '.join(p.name for p in EVAL)}): taide {secs[('taide+decont', cores)]:.2f} s on {cores} cores, "
                     f"{secs[('taide+decont', cores)] / secs[('taide', cores)] - 1:+.1%} against the default pipeline; it "
                     f"removed {on['removed'].get('decontaminate:contaminated', 0):,} laws.")
        if datatrove:
            with_dt = secs[("datatrove-e2e+decont", cores)] / secs[("taide+decont", cores)]
            without = secs[("datatrove-e2e", cores)] / secs[("taide+decont", cores)]
            dropped = docs - best[("datatrove-a+decont", cores)]["kept"]
            headline += (f" **taide with decontamination / datatrove end to end with its decontamination, all {cores} "
                         f"cores: {with_dt:.2f}×** (goal ≥ 3×); against datatrove without any: {without:.2f}×. "
                         f"datatrove's filter (any one n-gram of an item, the same character {NGRAM}-grams) removed "
                         f"{dropped - (docs - kept_a):,} laws.")

    removals = ["| removed by | reason | documents | share of read |", "|---|---|---:|---:|"]
    for key, v in removed_rows:
        stage, reason = key.split(":", 1)
        removals.append(f"| {stage}{' (dedup)' if stage in dedup_names else ''} | {reason} | {v:,} | "
                        f"{100 * v / read:.2f}% |")
    if not removed_rows:
        removals.append("| (none) | | 0 | 0% |")
    removals.append(f"| **outside dedup** | | **{outside:,}** | **{100 * outside / read:.2f}%** (goal ≤ 1%) |")
    removals.append(f"| dedup | | {inside:,} | {100 * inside / read:.2f}% |")
    stage_counts = ["| stage | counters |", "|---|---|"]
    for name, counters in report["stages"].items():
        stage_counts.append(f"| {name} | {', '.join(f'{k} {v:,}' for k, v in sorted(counters.items()) if v)} |")

    prof = ["| step | runs in | seconds | share | µs/doc | MB/s of its input |", "|---|---|---:|---:|---:|---:|"]
    for r in sorted(profile["rows"], key=lambda r: -r["seconds"]):
        us = 1e6 * r["seconds"] / max(1, r["docs"])
        mbs = f"{r['bytes'] / 1e6 / r['seconds']:.1f}" if r["bytes"] and r["seconds"] else "–"
        prof.append(f"| {r['step']} | {r['where']} | {r['seconds']:.2f} | {100 * r['seconds'] / prof_total:.1f}% | "
                    f"{us:.0f} | {mbs} |")
    prof.append(f"| **sum** | | **{prof_total:.2f}** | 100% | {1e6 * prof_total / profile['docs']:.0f} | "
                f"{megabytes / prof_total:.1f} |")
    rest = ""
    if not args.profile_docs or args.profile_docs >= docs:
        profiled = ("taide+decont", 1) if decont else ("taide", 1)
        left = secs[profiled] - prof_total
        rest = (f" The 1-worker `clean` took {secs[profiled]:.2f} s: {left:.2f} s "
                f"({100 * left / secs[profiled]:.0f}%) beyond these steps goes to the driver's batching, "
                f"saving batches under `.work/` (JSONL + npz), reading them back and writing the shards.")

    capped = args.isa == "avx2"
    reproduce = f".venv/bin/python -m bench.data_pipeline --runs {args.runs}" + (" --isa avx2" if capped else "")
    body = "\n".join([
        "## Data pipeline: `taide data clean` vs datatrove on the Taiwan law corpus"
        + (", as an AVX2-only CPU runs it" if capped else ""),
        "",
        *([f"Every contender ran with {', '.join(f'`{k}={v}`' for k, v in ISA_ENV.items())}: PyTorch, oneDNN, MKL and "
           "numpy without their AVX-512 kernels, as on most laptops and CI runners.", ""] if capped else []),
        f"{docs:,} laws, {megabytes:.1f} MB of UTF-8 JSONL uncompressed, cut into {len(shards)} gzipped shards "
        f"that every contender reads (two datatrove tasks on one file would leave one idle). taide: "
        f"`run_clean(CleanConfig(shards, out, workers=N))` with the default pipeline ({pipeline_names}). "
        + (f"Anchor, the comparable chain from datatrove {version}: A = JsonlReader → PIIFormatter → "
           f"FTFYFormatter → LambdaFilter(len ≥ 50) → JsonlWriter; B = MinHash dedup (signatures, buckets, "
           f"cluster, filter + JsonlWriter; default 14 bands × 8 rows) over character 5-grams (a character "
           f"tokenizer, no text simplification, xxhash64 of the UTF-8 bytes), A and B on the same input; end "
           f"to end = time A + time B. datatrove's executors start their workers by fork (its default, "
           f"forkserver, costs each pool about a second of re-imports, and its workers' CPU time would escape "
           f"the accounting below), which can only favour it. " if datatrove else "")
        + f"Both write uncompressed JSONL. Each run in a fresh process and output directory, {args.runs} rounds "
        f"interleaved; the machine is shared, so a run during which other processes took more than {args.max_busy} "
        f"cores is repeated (the most others took during a reported run: {worst_others:.2f} cores). MB/s = "
        f"uncompressed input MB / wall seconds.",
        "",
        *table,
        "",
        headline,
        "",
        "What the default pipeline removed from the law corpus (a clean, curated corpus: removals outside "
        "dedup are false positives, or near enough):",
        "",
        *removals,
        "",
        *stage_counts,
        "",
        "Where taide's time goes: each step of the default pipeline"
        + (" with the decontaminate stage (the same evaluation sets)" if decont else "")
        + f" timed on its own in one process over "
        f"{profile['docs']:,} documents, in `process_batch`'s order (a step sees the documents the steps "
        f"before it kept).{rest}",
        "",
        *prof,
        "",
        f"Reproduce: `{reproduce}` (add `--cprofile` for cProfile's top functions of a 1-worker run).",
    ])
    print()
    print(body)
    if cprof:
        print("\ncProfile, 1-worker clean, top functions by own time:\n" + cprof)
    if not args.no_write:
        write_section("data-pipeline-avx2" if capped else "data-pipeline", body)
    shutil.rmtree(runs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
