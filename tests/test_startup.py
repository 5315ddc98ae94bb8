"""Instant start: ``import hlm`` and ``hlm --help`` load no numerical library, each public
name loads its module on first use, and ``hlm --version`` / ``hlm.__version__`` give the
installed package's version.  Every check runs in a fresh interpreter (this one's modules
are long loaded)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

import hlm

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("numba", "duckdb", "pyspark", "matplotlib", "scipy", "formulaic", "pandas", "numpy", "pyarrow", "polars")
LOADED = f"import sys; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
HELP = "import sys; from hlm.cli import main; sys.argv[0] = 'hlm'; main()"


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120, check=True
    )


def test_import_hlm_loads_no_heavy_library():
    assert json.loads(_python(f"import json, hlm; {LOADED}").stdout) == []


def test_help_loads_no_heavy_library():
    code = f"import json; from hlm.cli import run; assert run(['--help']) == 0; {LOADED}"
    out = _python(code).stdout
    assert json.loads(out.splitlines()[-1]) == []
    assert "xtreg" in out and "--version" in out


def test_import_time_is_short():
    """A generous bound (the target is 0.3 s; benchmarks/bench_startup.py records the figure)."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        _python("import hlm")
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 1.0, times


def test_version_from_package_metadata():
    assert hlm.__version__ == version("hlm")
    assert _python(HELP, "--version").stdout == f"hlm {version('hlm')}\n"


def test_public_names_resolve_lazily():
    code = (
        "import hlm, sys; assert 'hlm.api' not in sys.modules; "
        "print(all(getattr(hlm, n) is not None for n in hlm.__all__)); print('hlm.api' in sys.modules)"
    )
    assert _python(code).stdout.split() == ["True", "True"]
    assert set(hlm.__all__) == {*hlm._WHERE, "power"}  # the lazy table and the public list agree
    assert set(hlm.__all__) <= set(dir(hlm))
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        hlm.nonesuch  # noqa: B018


def test_study_stays_the_function_when_its_package_loads_first():
    code = "import hlm.study.run, hlm; print(callable(hlm.study), hlm.study.__module__)"
    assert _python(code).stdout.split() == ["True", "hlm.study.run"]


def test_anova_is_compare():
    assert hlm.anova is hlm.compare
