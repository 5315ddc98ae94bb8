"""Plots of power and design (matplotlib with the Agg canvas, no pyplot state).

* :func:`power_curve`: simulated power against the first varied design path, with the 95%
  Monte Carlo band power +- 1.96 mc_se (one line per value of a second varied path);
* :func:`mdes_cost`: the analytic MDES of the cheapest allocations against their cost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hlm.errors import OptionError
from hlm.outputs import output_file
from hlm.report.plots import IMAGE_FORMATS, save_figure

if TYPE_CHECKING:
    from hlm.power.result import PowerSimulation

Z95 = 1.959963984540054


def _finish(fig: Figure, file: str | os.PathLike | None, overwrite: bool) -> Figure:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    if file is not None:
        save_figure(fig, file, overwrite=overwrite)
    return fig


def power_curve(result: PowerSimulation, *, file: str | os.PathLike | None = None, overwrite: bool = False) -> Figure:
    """Power against the first varied path with its Monte Carlo band; saved to ``file`` when given."""
    if file is not None:
        output_file(file, IMAGE_FORMATS, overwrite=overwrite)
    key, _ = result.curve()
    table = result.table
    fig = Figure(figsize=(5.0, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    second = result.vary[1][0] if len(result.vary) > 1 else None
    groups = table.groupby(second, sort=False) if second else [(None, table)]
    for value, part in groups:
        x = part[key].to_numpy(dtype=float)
        p = part["power"].to_numpy(dtype=float)
        half = Z95 * part["mc_se"].to_numpy(dtype=float)
        shown = value[0] if isinstance(value, tuple) else value
        label = f"{second} = {shown!s}" if second else None
        line = ax.plot(x, p, marker="o", label=label)[0]
        ax.fill_between(x, np.clip(p - half, 0, 1), np.clip(p + half, 0, 1), color=line.get_color(), alpha=0.2)
    ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    ax.axhline(result.alpha, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel(key)
    ax.set_ylabel("power")
    ax.set_title(f"{result.test} test of {result.term}, {result.reps:,} replicates per point", fontsize=9)
    if second:
        ax.legend(fontsize=8)
    return _finish(fig, file, overwrite)


def mdes_cost(
    design: str,
    costs: Sequence[float],
    icc: Sequence[float],
    budgets: Sequence[float],
    *,
    file: str | os.PathLike | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Figure:
    """The MDES of the best integer allocation (:func:`hlm.power.allocate`) at each budget, with the
    continuous optimum (Raudenbush 1997) where the design has one; saved to ``file`` when given."""
    from hlm.power.allocation import allocate

    if file is not None:
        output_file(file, IMAGE_FORMATS, overwrite=overwrite)
    if len(budgets) < 2:
        raise OptionError("give at least two budgets for an MDES-against-cost plot")
    best = [allocate(design, costs, icc, budget=b, **options) for b in budgets]
    fig = Figure(figsize=(5.0, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([a.cost for a in best], [a.mdes for a in best], marker="o", label="best integer allocation")
    cont = [(a.continuous_cost, a.continuous_mdes) for a in best if a.continuous is not None]
    if cont:
        ax.plot(*zip(*cont), linestyle="--", label="continuous optimum")
    for a in best:
        ax.annotate(" x ".join(f"{v:g}" for v in a.sizes), (a.cost, a.mdes), fontsize=6, alpha=0.7)
    ax.set_xlabel("cost")
    ax.set_ylabel("MDES")
    ax.set_title(f"{design}: MDES against cost", fontsize=9)
    ax.legend(fontsize=8)
    return _finish(fig, file, overwrite)
