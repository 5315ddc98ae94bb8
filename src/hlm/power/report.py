"""A power simulation as one self-contained HTML file, in the style of ``hlm study``'s report
(:mod:`hlm.study.report`: its stylesheet, tables and inline PNG plots)."""

from __future__ import annotations

import datetime as _dt
import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hlm.outputs import output_file
from hlm.study.report import CSS, html_table, png_base64

if TYPE_CHECKING:
    from hlm.power.result import PowerSimulation


def report_html(result: PowerSimulation) -> str:
    """The report: the set-up, the power table, the power curve (when a path was varied), the
    design (TOML) and how to reproduce it."""
    from hlm.power.plots import power_curve

    title = f"Power of the {result.test} test of {result.term}"
    table = result.table
    failed = int(table["failed"].sum())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="lead">{result.reps:,} replicate(s) at each of {len(table)} design point(s); '
        f"two-sided at alpha {result.alpha:g}; seed {result.seed}; {result.seconds:,.1f} s; "
        f"{failed} failed fit(s). Written {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by hlm.</p>",
        "<h2>Set-up</h2>",
        f"<p><b>Model:</b> <code>{html.escape(result.model)}</code></p>",
        "<p><b>Varied:</b> "
        + (
            "; ".join(f"{html.escape(k)} = {', '.join(html.escape(str(v)) for v in vs)}" for k, vs in result.vary)
            or "nothing (one design)"
        )
        + "</p>",
        "<h2>Power</h2>",
        "<p><i>power</i>: share of the successful replicates that reject; <i>mc_se</i>: its Monte Carlo SE "
        "sqrt(power (1 &minus; power) / reps); <i>method</i>: <code>sufficient</code> (statistics drawn "
        "directly, layout fixed per point) or <code>rows</code> (every replicate simulated row by row).</p>",
        html_table(table),
    ]
    if result.vary:
        parts += [
            "<h2>Power curve</h2>",
            f'<img alt="power curve" src="data:image/png;base64,{png_base64(power_curve(result))}">',
        ]
    parts += [
        "<details><summary><b>Design</b> (TOML; the varied paths override its values)</summary>"
        f"<pre>{html.escape(result.design.to_toml())}</pre></details>",
        "<h2>Reproduce</h2>",
        f"<p><code>hlm.power.simulate(design, {html.escape(repr(result.model))}, {html.escape(repr(result.term))}, "
        f"reps={result.reps}, seed={result.seed}, test={result.test!r}, alpha={result.alpha:g}, vary=...)</code> "
        "gives the same numbers whatever the number of processes.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(result: PowerSimulation, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write :func:`report_html` to ``path`` (.html; an existing file only with ``overwrite=True``)."""
    target = output_file(path, {".html": "html", ".htm": "html"}, overwrite=overwrite)[0]
    target.write_text(report_html(result), encoding="utf-8")
    return target
