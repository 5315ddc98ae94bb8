"""The documentation's own tools: the link checker of docs/check_site.py finds a missing page and a
missing anchor on a small site written here, and docs/validation.py's Check applies pytest.approx's rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from support import ROOT


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_link_checker_finds_missing_files_and_anchors(tmp_path: Path) -> None:
    site = load("check_site")
    (tmp_path / "guide").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="guide/a.html#there">ok</a> <a href="guide/a.html#nowhere">bad anchor</a>'
        '<a href="missing.html">bad file</a> <img src="_images/x.png"> <a href="https://example.org">ext</a>'
        '<a href="#top">self</a><h1 id="top">t</h1>'
    )
    (tmp_path / "guide" / "a.html").write_text('<section id="there"><a href="../index.html">up</a></section>')
    broken = sorted(site.broken_links(tmp_path))
    assert broken == [
        "index.html: _images/x.png (no such file)",
        "index.html: guide/a.html#nowhere (no element with that id)",
        "index.html: missing.html (no such file)",
    ]
    assert site.external_links(tmp_path) == {"https://example.org"}


def test_check_uses_pytest_approx_rule() -> None:
    validation = load("validation")

    def check(r: float, ours: float, rel: float, abs_: float, one_sided: bool = False) -> bool:
        return validation.Check("s", "f", "q", r, ours, rel, abs_, "t", one_sided).passed

    for r, ours, rel, abs_ in [(100.0, 100.00009, 1e-6, 0), (0.0, 5e-5, 1e-4, 1e-4), (2.0, 2.0011, 1e-3, 0)]:
        assert check(r, ours, rel, abs_) == (ours == pytest.approx(r, rel=rel, abs=abs_))
    assert check(10.0, 9.0, 1e-6, 0, one_sided=True) and not check(10.0, 10.1, 1e-6, 0, one_sided=True)
    assert not check(1.0, float("nan"), 1e-3, 0)
