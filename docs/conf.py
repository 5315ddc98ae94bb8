"""Sphinx configuration of hlm's documentation (``make docs``).

Pages are MyST markdown notebooks executed at build time by myst-nb (cached under
``_build/.jupyter_cache``, so a rebuild re-runs only the pages that changed); the
validation page is regenerated on every build from the reference fixtures in tests/.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the executed pages' kernels inherit it
os.environ.setdefault("OMP_NUM_THREADS", "1")

import hlm  # noqa: E402

project = "hlm"
author = "the hlm developers"
copyright = "hlm developers"
release = version = hlm.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
source_suffix = {".md": "myst-nb"}
myst_enable_extensions = ["colon_fence"]  # no $math$: MathJax would be fetched from a CDN
myst_heading_anchors = 3
# benchmarks/RESULTS.md (included as it stands) skips heading levels; that is its layout, not an error
suppress_warnings = ["myst.header"]

# execution: every page is run; outputs are cached by notebook content in _build
nb_execution_mode = "cache"
nb_execution_cache_path = str(HERE / "_build" / ".jupyter_cache")
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = True
napoleon_use_ivar = True  # a dataclass's Attributes section documents fields, not second attribute entries

html_theme = "pydata_sphinx_theme"
html_title = f"hlm {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": {"**": ["page-toc"], "validation": []},  # its tables need the width
    "footer_start": ["copyright"],
    "footer_end": [],
}
# the left navigation lists a section's pages: only the user guide has several
html_sidebars = {page: [] for page in ("index", "getting-started", "from-stata", "from-lme4", "validation")}
html_sidebars |= {page: [] for page in ("performance", "api", "search", "genindex", "py-modindex")}
html_context = {"default_mode": "auto"}  # an explicit mode: the theme logs a console error without one
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_css_files = ["hlm.css"]
html_last_updated_fmt = None


# hlm's docstrings write numpydoc entries as ``name : description`` (the types live in the typed
# signatures); napoleon would read the description as a type, so it moves to its own line first.
ENTRY = re.compile(r"^(\s*)([A-Za-z_][\w, *]*) : (\S.*)$")
SECTION = re.compile(r"^\s*(Parameters|Returns|Yields|Raises|Attributes|Other Parameters)\s*$")
SUBSTITUTION = re.compile(r"(?<![`\\])\|(\w+)\|")  # |corr| is an absolute value, not an RST substitution


def numpydoc_entries(app: object, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    out: list[str] = []
    in_section = False
    for i, line in enumerate(lines):
        line = SUBSTITUTION.sub(r"\\|\1\\|", line)
        if SECTION.match(line) and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            in_section = True
        elif line and not line[0].isspace() and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            in_section = False
        entry = ENTRY.match(line) if in_section else None
        if entry:
            indent, names, text = entry.groups()
            out += [f"{indent}{names}", f"{indent}    {text}"]
        else:
            out.append(line)
    lines[:] = out


def always_validate(app: object, env: object, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """Re-read (and so re-execute) the validation page on every build, changed or not."""
    return ["validation"]


def setup(app: object) -> None:
    app.connect("autodoc-process-docstring", numpydoc_entries, priority=100)  # before napoleon
    app.connect("env-get-outdated", always_validate)
