"""Each benchmark owns one marked section of BENCHMARKS.md and rewrites only that section."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = ("# Benchmarks\n\nEvery figure here is printed by a script in `bench/`, with a ratio against an anchor "
          "measured in the same run on the same machine (these machines are noisy: compare ratios, not "
          "absolute numbers across runs). What the benchmarks compare against (datatrove, ...) is installed by "
          "`bash scripts/install.sh --bench`; then each section's command reproduces it.\n")


def cpu_class(flags: set[str]) -> str:
    """The CPU class a figure belongs to: AMX (bf16 matmuls fast), AVX-512 without AMX, or AVX2 only."""
    if "amx_tile" in flags:
        return "AMX"
    return "AVX-512, no AMX" if "avx512f" in flags else "AVX2 only, no AVX-512 or AMX"


def machine() -> str:
    """The CPU, its class (:func:`cpu_class`), the cores and Python, for a section's stamp."""
    import os

    name, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():  # the first core's lines are enough
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name is None:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    cpu = name or platform.processor() or platform.machine()
    return f"{cpu} ({cpu_class(flags)}), {os.cpu_count()} cores, Python {platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=BENCHMARKS.parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = f"_Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC at commit {commit()} on {machine()}._\n\n"
    block = f"{start}\n{stamp}{body.rstrip()}\n{end}"
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text, encoding="utf-8")
    print(f"wrote the '{name}' section of {BENCHMARKS.name}")


def publish(name: str, text: str, write: bool = True) -> None:
    """Print a benchmark's section and, unless told not to, write it into BENCHMARKS.md."""
    print(text)
    if write:
        write_section(name, text)
