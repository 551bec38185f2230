"""The wheel is complete: built from this tree and installed into a fresh environment, `taide build --dry-run`
and `taide info` work from another directory, and every file `taide build` and `taide eval` read at run time
(the default recipe, the samples, the taide-bench sample, the web page) is inside the installed package.

The fresh environment is a venv whose only taide is the wheel's: the dependencies come from this venv's
site-packages through a .pth file (a .pth file in a directory added that way is not read, so this venv's
editable install of the source tree is not seen), it runs with no PYTHONPATH and its working directory
outside the repository, and the test checks where ``taide`` was imported from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import REPO

CHECK = """
import json, taide
from taide.builder.recipe import DEFAULT_RECIPE, SAMPLES
from taide.eval.bench import SAMPLE_BENCH
package = __import__("pathlib").Path(taide.__file__).parent
print(json.dumps({"file": taide.__file__, "default_recipe": str(DEFAULT_RECIPE),
                  "missing": [str(p) for p in [DEFAULT_RECIPE, *SAMPLES.values(), SAMPLE_BENCH,
                                               package / "serve/static/index.html"] if not p.exists()],
                  "bench_files": sorted(p.name for p in SAMPLE_BENCH.iterdir()),
                  "sample_files": sum(1 for p in SAMPLES["data"].rglob("*") if p.is_file())}))
"""


def _run(command: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run(command, cwd=cwd, env={**env, "COLUMNS": "200"}, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_the_installed_wheel_has_what_build_and_eval_read(tmp_path):
    import json
    import zipfile

    # The wheel, built from a copy of the tree (setuptools' build/ directory would otherwise keep old files).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
          str(tmp_path / "dist"), str(source)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("taide-*.whl"))
    packaged = set(zipfile.ZipFile(wheel).namelist())
    tree = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src/taide").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}
    assert sorted(tree - packaged) == [], "files of src/taide that the wheel leaves out (pyproject's package-data)"

    # A fresh venv with the wheel and, through a .pth file, this venv's dependencies.
    env_dir = tmp_path / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=tmp_path)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
         cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    found = json.loads(_run([str(python), "-c", CHECK], cwd=elsewhere).stdout)
    assert Path(found["file"]).is_relative_to(site), f"taide imported from {found['file']}, not the installed wheel"
    assert Path(found["default_recipe"]).is_relative_to(site) and found["missing"] == []
    assert {f"{task}.jsonl" for task in ("essay", "letter", "summary", "zh2en", "en2zh")} <= set(found["bench_files"])
    assert found["sample_files"] >= 40  # the raw sample corpus with its html/ and txt/ documents

    taide = str(env_dir / "bin" / "taide")
    plan = _run([taide, "build", "--dry-run"], cwd=elsewhere)
    assert "cp" in plan.stdout and "sft" in plan.stdout
    info = _run([taide, "info", "smollm2-135m"], cwd=elsewhere)
    assert "smollm2" in info.stdout.lower()
