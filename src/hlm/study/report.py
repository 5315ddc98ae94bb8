"""A study as text (the CLI's output) and as one self-contained HTML file.

The HTML report holds everything inline: a stylesheet, the design (TOML), the models,
the per-fit and per-parameter tables, and the plots of :mod:`hlm.study.plots` as base64
PNG ``<img>`` tags; it needs no network, script or other file to open.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hlm.outputs import output_file
from hlm.study.columns import SUMMARY_COLUMNS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hlm.study.result import StudyResult

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.6em 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; } td.text, th.text { text-align: left; }
td.text { white-space: normal; min-width: 14em; }
h3 { font-size: 1.02em; margin: 1.2em 0 0.2em; }
div.scroll { overflow-x: auto; max-width: 100%; }
td.warn { background: #fde8e8; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
dl dt { font-weight: 600; } dl dd { margin: 0 0 0.4em 1.2em; }
"""

_TEXT_COLUMNS = {"model", "parameter", "kind"}
_ESTIMATE_COLUMNS = [
    c for c in SUMMARY_COLUMNS[SUMMARY_COLUMNS.index("parameter") : SUMMARY_COLUMNS.index("n_ci") + 1] if c != "kind"
]
"""The summary's columns of one parameter's estimates (:data:`SUMMARY_COLUMNS`, less its kind)."""


def _criterion(reml: bool | None) -> str:
    """How the mixed models were fitted: REML, ML, or as each model string says."""
    return "each model's own criterion (REML unless its string says ML)" if reml is None else "REML" if reml else "ML"


def _fmt(v: Any) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if not math.isfinite(x):
            return ""
        if x == 0:
            return "0"
        if abs(x) >= 1e5 or abs(x) < 1e-3:
            return f"{x:.3g}"
        return f"{x:.4g}"
    return str(v)


def html_table(frame: pd.DataFrame, *, flag: pd.Series | None = None, flag_column: str | None = None) -> str:
    cols = list(frame.columns)
    head = "".join(f'<th class="{"text" if c in _TEXT_COLUMNS else ""}">{html.escape(str(c))}</th>' for c in cols)
    body = []
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        cells = []
        for c, v in zip(cols, row):
            cls = "text" if c in _TEXT_COLUMNS else ""
            if flag is not None and c == flag_column and bool(flag.iloc[i]):
                cls += " warn"
            cells.append(f'<td class="{cls.strip()}">{html.escape(_fmt(v))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _coverage_flags(summary: pd.DataFrame, level: float) -> pd.Series:
    """Coverage more than 2 Monte Carlo SEs (at the nominal level) away from nominal."""
    n = summary["n_ci"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mcse = np.sqrt(level * (1 - level) / n)
    c = summary["coverage"].to_numpy(dtype=float)
    return pd.Series(np.isfinite(c) & (np.abs(c - level) > 2 * mcse), index=summary.index)


def _estimate_tables(result: StudyResult, summ: pd.DataFrame) -> list[str]:
    """One table per model: the grid values, then the parameter rows."""
    cols = [*result.grid, *_ESTIMATE_COLUMNS]
    out = []
    for k, model in enumerate(result.models, 1):
        sub = summ[summ["model"] == model].reset_index(drop=True)
        out.append(f"<h3>Model {k}: <code>{html.escape(model)}</code></h3>")
        out.append(html_table(sub[cols], flag=_coverage_flags(sub, result.level), flag_column="coverage"))
    return out


def report_html(result: StudyResult, *, title: str | None = None) -> str:
    """The report as one HTML document (see the module docstring)."""
    from hlm.study.plots import plot

    title = title or f"Monte Carlo study: {result.design.response}, {result.reps:,} replicates"
    summ = result.summary()
    fits = result.fit_summary()
    npts = len(result.designs)
    grid_text = (
        "; ".join(f"{html.escape(k)} = {', '.join(html.escape(str(v)) for v in vs)}" for k, vs in result.grid.items())
        or "none (one design)"
    )
    rate = result.reps * npts / result.seconds if result.seconds > 0 else float("nan")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{result.reps:,} replicate(s) at each of {npts} design point(s), '
        f"{len(result.models)} model(s); "
        f"seed {result.seed}; {result.n_jobs} worker process(es); {result.seconds:,.1f} s "
        f"({_fmt(rate)} replicates/s); {_criterion(result.reml)}; "
        f"{'Wald' if result.intervals else 'no'} intervals for variance components at {result.level:.0%}. "
        f"Written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by hlm.</p>",
        "<h2>Set-up</h2>",
        f"<p><b>Grid:</b> {grid_text}</p>",
        "<p><b>Models:</b></p><ol>"
        + "".join(f"<li><code>{html.escape(m)}</code></li>" for m in result.models)
        + "</ol>",
        "<details><summary><b>Design</b> (TOML; the grid overrides its values)</summary>"
        f"<pre>{html.escape(result.design.to_toml())}</pre></details>",
        "<h2>Fits</h2>",
        "<p>Per design point and model: fits attempted, the shares that converged, were singular "
        "(a variance at zero) or failed, and mean seconds per fit (and for the variance-component "
        "intervals, and per simulated data set).</p>",
        html_table(fits.drop(columns=["point"]) if npts == 1 else fits),
        "<h2>Estimates</h2>",
        "<p>Per design point, model and parameter. <i>truth</i>: the design's value (levels a model "
        "leaves out are collapsed into the nearest modelled level, see <code>hlm.study.truth</code>); "
        "<i>bias</i> = mean &minus; truth; <i>rel_bias</i> = bias / truth; <i>rmse</i> = root mean squared "
        "error; <i>sd</i>: the SD of the estimates across replicates, to compare with <i>mean_se</i>, the mean "
        f"reported SE; <i>coverage</i>: share of the {result.level:.0%} CIs that contain the truth "
        "(<i>coverage_mcse</i>: its Monte Carlo SE; shaded when more than 2 Monte Carlo SEs from nominal).</p>",
        *_estimate_tables(result, summ),
        "<h2>Sampling distributions</h2>",
        '<img alt="sampling distributions of the estimates" '
        f'src="data:image/png;base64,{png_base64(plot(result, "distributions"))}">',
    ]
    if summ["coverage"].notna().any():
        parts += [
            "<h2>Coverage</h2>",
            '<img alt="coverage of the confidence intervals" '
            f'src="data:image/png;base64,{png_base64(plot(result, "coverage"))}">',
        ]
    parts += [
        "<h2>RMSE</h2>",
        f'<img alt="root mean squared error" src="data:image/png;base64,{png_base64(plot(result, "rmse"))}">',
    ]
    errors = result.fits["error"].dropna()
    if len(errors):
        counts = errors.value_counts().head(10)
        parts += (
            ["<h2>Errors</h2><ul>"]
            + [f"<li>{n} &times; <code>{html.escape(str(e))}</code></li>" for e, n in counts.items()]
            + ["</ul>"]
        )
    parts += [
        "<h2>Reproduce</h2>",
        "<p>Replicate <i>r</i> at design point <i>j</i> is "
        "<code>hlm.simulate.simulate(design, seed=s)</code> with the seed <i>s</i> in the replicates "
        f"(<code>result.replicates</code>); the study as a whole: <code>hlm.study(design, models, reps={result.reps}, "
        f"seed={result.seed}, grid=...)</code>, whatever the number of processes.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    result: StudyResult, path: str | os.PathLike, *, title: str | None = None, overwrite: bool = False
) -> Path:
    """Write :func:`report_html` to ``path`` (.html; an existing file only with ``overwrite=True``)."""
    target = output_file(path, {".html": "html", ".htm": "html"}, overwrite=overwrite)[0]
    target.write_text(report_html(result, title=title), encoding="utf-8")
    return target


def text_summary(result: StudyResult) -> str:
    """A plain-text summary: one block per design point and model."""
    summ = result.summary()
    fits = result.fit_summary()
    npts = len(result.designs)
    rate = result.reps * npts / result.seconds if result.seconds > 0 else float("nan")
    lines = [
        f"Monte Carlo study: {result.reps:,} replicate(s) x {npts} design point(s), {len(result.models)} model(s), "
        f"seed {result.seed}; {result.seconds:,.1f} s on {result.n_jobs} process(es) ({_fmt(rate)} replicates/s)"
    ]
    cols = [c for c in _ESTIMATE_COLUMNS[: _ESTIMATE_COLUMNS.index("coverage") + 1] if c != "n"]
    for (pt, model), g in summ.groupby(["point", "model"], sort=False):
        f = fits[(fits["point"] == pt) & (fits["model"] == model)].iloc[0]
        where = ", ".join(f"{k}={g[k].iloc[0]}" for k in result.grid)
        reason = f"; most common failure: {f['reason']}" if isinstance(f["reason"], str) else ""
        lines += [
            "",
            f"{model}" + (f"   [{where}]" if where else ""),
            f"  fits {int(f['n_fits'])}: converged {f['converged']:.1%}, singular {f['singular']:.1%}, "
            f"failed {f['failed']:.1%}; {f['seconds']:.3f} s per fit{reason}",
        ]
        g = g[g["parameter"].notna()]
        if g.empty:
            lines.append("  no estimates: every fit failed")
            continue
        table = [
            [_fmt(v) if c != "parameter" else str(v) for c, v in zip(cols, row)]
            for row in g[cols].itertuples(index=False, name=None)
        ]
        widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
        lines.append(
            "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))
        )
        for r in table:
            lines.append(
                "  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
            )
    return "\n".join(lines)
