"""The caterpillar plot (matplotlib, no pyplot state): conditional modes of every level of every
grouping factor and term, sorted, with +-z conditional-SD intervals from ``fit.ranef()`` (lme4's
``dotplot(ranef(., condVar=TRUE))``), for linear fits and GLMMs alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

if TYPE_CHECKING:
    from hlm.api import Fit
    from hlm.glmm.result import GlmmResult

BAND_LIMIT = 5000  # above this many levels the intervals are drawn as one band
LABEL_LIMIT = 40  # label levels on the axis up to this many


def caterpillar(fit: Fit | GlmmResult, *, level: float = 0.95) -> Figure:
    """One panel per (grouping factor, term): sorted conditional modes with intervals."""
    re = fit.ranef()
    z = stats.norm.ppf(0.5 + level / 2)
    panels = list(dict.fromkeys(zip(re["group"], re["term"])))
    fig = Figure(figsize=(4.0 * len(panels), 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (group, term) in zip(axes, panels):
        sub = re[(re["group"] == group) & (re["term"] == term)].sort_values("estimate")
        y = np.arange(len(sub))
        est, se = sub["estimate"].to_numpy(), sub["std_error"].to_numpy()
        if len(sub) <= BAND_LIMIT:
            ax.hlines(y, est - z * se, est + z * se, color="0.55", linewidth=0.8 if len(sub) < 500 else 0.3)
        else:  # one polygon instead of a line per level (matplotlib builds a Path for each)
            ax.fill_betweenx(y, est - z * se, est + z * se, color="0.75", linewidth=0)
        ax.scatter(est, y, s=12 if len(sub) < 500 else 2, color="C0", zorder=3, rasterized=len(sub) > BAND_LIMIT)
        ax.axvline(0.0, color="0.3", linewidth=0.8, linestyle="--")
        ax.set_title(f"{group}: {term}")
        ax.set_xlabel(f"conditional mode, {level:.0%} interval")
        if len(sub) <= LABEL_LIMIT:
            ax.set_yticks(y, [str(v) for v in sub["level"]], fontsize=7)
        else:
            ax.set_yticks([])
            ax.set_ylabel(f"{len(sub):,} levels, sorted")
    return fig
