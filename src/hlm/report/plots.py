"""Plots of a fit (matplotlib, no pyplot state: figures are built with the Agg canvas).

* ``caterpillar``: conditional modes of every level of every grouping factor and term,
  sorted, with +-z conditional-SD intervals (lme4's ``dotplot(ranef(., condVar=TRUE))``;
  :mod:`hlm.report.caterpillar`, GLMMs' plot too).
* ``variance``: share of the unexplained variance per level with its CI (``fit.icc()``).
* ``profile``: the signed square root of the change in the criterion, zeta, against each
  parameter (SDs, correlations, sigma, fixed effects) from the profile likelihood
  (:func:`hlm.inference.profile.profile`; lme4's ``xyplot(profile(fit))``), with the
  profile confidence limits where zeta crosses -+z for each of ``levels``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from hlm.errors import OptionError
from hlm.outputs import IMAGE_FORMATS, output_file, save_figure
from hlm.report.caterpillar import caterpillar

if TYPE_CHECKING:
    from hlm.api import Fit

PROFILE_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)  # lme4's xyplot(profile) marks these intervals


def variance_shares(fit: Fit, *, level: float = 0.95, at: Mapping[str, float] | None = None) -> Figure:
    """Bar chart of each level's share of the unexplained variance with CIs."""
    icc = fit.icc(None if at is None else dict(at), level=level)
    share = icc["share"].to_numpy()
    lo = np.nan_to_num(share - icc["share_low"].to_numpy(), nan=0.0)
    hi = np.nan_to_num(icc["share_high"].to_numpy() - share, nan=0.0)
    fig = Figure(figsize=(1.2 * len(icc) + 2.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(icc))
    ax.bar(x, share, color="C0", alpha=0.8)
    ax.errorbar(x, share, yerr=[lo, hi], fmt="none", ecolor="black", capsize=4)
    ax.set_xticks(x, list(icc["level"]), rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of unexplained variance")
    ax.set_title(f"Variance share per level ({level:.0%} CI)")
    note = icc.attrs.get("note", "")
    if note:
        fig.text(0.01, 0.0, note, fontsize=6, wrap=True, va="bottom")
    return fig


def _profile_label(row: Any) -> str:
    if row.kind == "sd":
        return f"sd({row.var1} | {row.group})"
    if row.kind == "cor":
        return f"cor({row.var1}, {row.var2} | {row.group})"
    if row.kind == "sigma":
        return "sigma"
    return str(row.parameter)


def profile_zeta(
    fit: Fit,
    *,
    levels: tuple[float, ...] = PROFILE_LEVELS,
    parm: list[str] | None = None,
    npoints: int = 6,
    ncol: int = 4,
) -> Figure:
    """One panel per parameter: zeta against the parameter, traced out to the largest of
    ``levels``, with the profile interval of each level drawn where zeta crosses -+z."""
    from hlm.inference.profile import profile

    if not levels or not all(0 < lv < 1 for lv in levels):
        raise OptionError(f"levels must be between 0 and 1, not {levels!r}")
    prof = profile(fit, alphamax=1.0 - max(levels), parm=parm, npoints=npoints)
    if prof.empty:
        raise OptionError(f"no parameter to profile among {parm!r}")
    names = list(dict.fromkeys(prof["parameter"]))
    ncol = max(1, min(ncol, len(names)))
    nrow = -(-len(names) // ncol)
    fig = Figure(figsize=(3.2 * ncol, 2.9 * nrow), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrow, ncol, squeeze=False, sharey=True).ravel()
    zs = [float(stats.norm.ppf(0.5 + lv / 2)) for lv in levels]
    for ax, name in zip(axes, names):
        sub = prof[prof["parameter"] == name]
        x, zeta = sub["value"].to_numpy(), sub["zeta"].to_numpy()
        ax.plot(x, zeta, color="C0", linewidth=1.2, marker="o", markersize=2.5)
        ax.axhline(0.0, color="0.6", linewidth=0.6)
        for z in zs:
            for sign in (-1.0, 1.0):
                side = sign * zeta >= 0
                zz, xx = zeta[side], x[side]
                if len(zz) < 2 or not zz.min() <= sign * z <= zz.max():
                    continue  # the profile ends (an SD at 0, a correlation at -+1) before this level
                order = np.argsort(zz)
                xz = float(np.interp(sign * z, zz[order], xx[order]))
                ax.plot([xz, xz], [0.0, sign * z], color="0.45", linewidth=0.7, linestyle=":")
        ax.set_title(_profile_label(next(sub.itertuples())), fontsize=9)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for ax in axes[::ncol]:
        ax.set_ylabel("zeta")
    refit = "; REML fit profiled on its ML refit, as lme4" if fit.reml else ""
    fig.suptitle(
        "Profile zeta (dotted: " + ", ".join(f"{lv:.0%}" for lv in levels) + f" intervals{refit})", fontsize=10
    )
    return fig


PLOT_KINDS = ("caterpillar", "variance", "profile")


def plot(fit: Fit, kind: str = "caterpillar", *, file: Any = None, overwrite: bool = False, **kwargs: Any) -> Figure:
    """``fit.plot``: build the figure and save it to ``file`` if given (checked first; an
    existing file is replaced only with ``overwrite=True``)."""
    if kind not in PLOT_KINDS:
        raise OptionError(f"plot kind must be one of {', '.join(PLOT_KINDS)}, not {kind!r}")
    if isinstance(file, (str, os.PathLike)) or (file is not None and not hasattr(file, "write")):
        output_file(file, IMAGE_FORMATS, overwrite=overwrite)
    if kind == "caterpillar":
        fig = caterpillar(fit, **kwargs)
    elif kind == "variance":
        fig = variance_shares(fit, **kwargs)
    elif kind == "profile":
        fig = profile_zeta(fit, **kwargs)
    else:
        raise OptionError(f"plot kind must be one of {', '.join(PLOT_KINDS)}, not {kind!r}")
    if file is not None:
        save_figure(fig, file, overwrite=overwrite)
    return fig
