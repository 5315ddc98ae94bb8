"""Plots of a study (matplotlib with the Agg canvas, no pyplot state).

* ``distributions``: per model and parameter, the sampling distribution of the estimates
  (a histogram per grid point) against the truth (dashed line);
* ``coverage``: per parameter, the CI coverage (with +-2 Monte Carlo SEs) against the
  first grid value, a line per model, and the nominal level;
* ``rmse``: per parameter, the RMSE against the first grid value (log scales when the
  values span a factor of 10 or more), a line per model.

Without a grid, ``coverage`` and ``rmse`` show one point per model.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hlm.errors import OptionError
from hlm.outputs import output_file
from hlm.report.plots import IMAGE_FORMATS, save_figure

if TYPE_CHECKING:
    from hlm.study.result import StudyResult

Kind = Literal["distributions", "coverage", "rmse"]
MAX_PANELS = 36
NCOLS = 4


def plot(
    result: StudyResult,
    kind: Kind = "distributions",
    *,
    file: str | os.PathLike | None = None,
    models: Sequence[str] | None = None,
    parameters: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Figure:
    """Build the ``kind`` figure (see the module docstring); save it to ``file`` when given
    (checked first, see :func:`hlm.report.plots.save_figure`)."""
    makers = {"distributions": distributions, "coverage": coverage, "rmse": rmse}
    if kind not in makers:
        raise OptionError(f"kind must be one of {', '.join(makers)}, not {kind!r}")
    if isinstance(file, (str, os.PathLike)) or (file is not None and not hasattr(file, "write")):
        output_file(file, IMAGE_FORMATS, overwrite=overwrite)
    fig = makers[kind](result, models=models, parameters=parameters)
    if file is not None:
        save_figure(fig, file, overwrite=overwrite)
    return fig


def _figure(n: int, *, width: float = 3.4, height: float = 2.5, legend_rows: int = 0) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels in rows of up to :data:`NCOLS`, spaced by hand (constrained
    layout costs seconds for a few dozen panels)."""
    ncols = min(NCOLS, max(n, 1))
    nrows = max(1, math.ceil(n / ncols))
    top_in, bottom_in = 0.55, 0.45 + 0.2 * legend_rows
    fig_h = height * nrows + top_in + bottom_in
    fig = Figure(figsize=(width * ncols, fig_h))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=0.06 if ncols > 1 else 0.15,
        right=0.98,
        top=1 - top_in / fig_h,
        bottom=bottom_in / fig_h,
        wspace=0.28,
        hspace=0.75,
    )
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(max(n, 1))]
    return fig, axes[:n]


def _select(frame: pd.DataFrame, models: Sequence[str] | None, parameters: Sequence[str] | None) -> pd.DataFrame:
    if models is not None:
        frame = frame[frame["model"].isin(list(models))]
    if parameters is not None:
        frame = frame[frame["parameter"].isin(list(parameters))]
    return frame


def _empty(fig: Figure, message: str) -> Figure:
    ax = fig.axes[0]
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    return fig


def _short(label: str, limit: int = 48) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _point_label(result: StudyResult, point: int) -> str:
    sub = result.replicates.loc[result.replicates["point"] == point, list(result.grid)]
    if sub.empty:
        return f"point {point}"
    return ", ".join(
        f"{k.split('.')[-2] if k.count('.') >= 1 else k}.{k.split('.')[-1]}={sub[k].iloc[0]}" for k in result.grid
    )


def distributions(
    result: StudyResult, *, models: Sequence[str] | None = None, parameters: Sequence[str] | None = None
) -> Figure:
    """Histograms of the estimates per model and parameter, one per grid point, and the truth."""
    reps = _select(result.replicates, models, parameters)
    reps = reps[np.isfinite(reps["estimate"].to_numpy(dtype=float))]
    panels = list(dict.fromkeys(zip(reps["model"], reps["parameter"])))
    shown = panels[:MAX_PANELS]
    fig, axes = _figure(len(shown))
    if not shown:
        return _empty(fig, "no estimates to show")
    points = sorted(reps["point"].unique())
    for ax, (model, param) in zip(axes, shown):
        sub = reps[(reps["model"] == model) & (reps["parameter"] == param)]
        lo, hi = np.nanpercentile(sub["estimate"], [0.5, 99.5])
        truths = sub["truth"].to_numpy(dtype=float)
        lo, hi = min(lo, np.nanmin(truths)), max(hi, np.nanmax(truths))
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(lo) * 0.05, 0.05)
        bins = np.linspace(lo - pad, hi + pad, 31)
        for k, pt in enumerate(points):
            s = sub[sub["point"] == pt]
            if s.empty:
                continue
            colour = f"C{k % 10}"
            label = _point_label(result, pt) if len(points) > 1 else None
            ax.hist(
                np.clip(s["estimate"], bins[0], bins[-1]),
                bins=bins,
                histtype="step" if len(points) > 1 else "stepfilled",
                color=colour,
                alpha=1.0 if len(points) > 1 else 0.6,
                linewidth=1.2,
                label=label,
            )
            ax.axvline(
                float(s["truth"].iloc[0]), color="black" if len(points) == 1 else colour, linestyle="--", linewidth=1.2
            )
        ax.set_title(f"{param}\n{_short(model)}", fontsize=8.5)
        ax.set_yticks([])
        ax.tick_params(labelsize=7.5)
    if len(points) > 1:
        axes[0].legend(fontsize=6.5, title="grid point", title_fontsize=7, loc="upper right")
    note = "dashed: the true value"
    if len(panels) > len(shown):
        note += f"; first {len(shown)} of {len(panels)} panels shown"
    fig.suptitle(f"Sampling distributions of the estimates ({note})", fontsize=10, y=0.995)
    return fig


def _x_axis(result: StudyResult, summary: pd.DataFrame) -> tuple[str | None, np.ndarray, list[str] | None, bool]:
    """The x column, positions, tick labels (categorical) and whether to use log scale."""
    if not result.grid:
        return None, np.zeros(len(summary)), None, False
    key = next(iter(result.grid))
    vals = summary[key].tolist()
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in vals):
        x = np.asarray(vals, dtype=float)
        log = bool(np.all(x > 0) and x.max() / x.min() >= 10)
        return key, x, None, log
    cats = list(dict.fromkeys(str(v) for v in result.grid[key]))
    return key, np.array([cats.index(str(v)) for v in vals], dtype=float), cats, False


def _series(result: StudyResult, sub: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One line per model and combination of the grid's other keys."""
    others = list(result.grid)[1:]
    out = []
    for model in result.models:
        s = sub[sub["model"] == model]
        if s.empty:
            continue
        if not others:
            out.append((_short(model, 40), s))
            continue
        for combo, g in s.groupby(others, sort=False):
            combo = combo if isinstance(combo, tuple) else (combo,)
            label = ", ".join(f"{k.split('.')[-2]}.{k.split('.')[-1]}={v}" for k, v in zip(others, combo))
            out.append((f"{_short(model, 32)} ({label})", g))
    return out


def _against_grid(
    result: StudyResult,
    column: str,
    *,
    models: Sequence[str] | None,
    parameters: Sequence[str] | None,
    title: str,
    ylabel: str,
    nominal: float | None = None,
    error: str | None = None,
) -> Figure:
    summ = _select(result.summary(), models, parameters)
    summ = summ[np.isfinite(summ[column].to_numpy(dtype=float))]
    params = list(dict.fromkeys(summ["parameter"]))[:MAX_PANELS]
    nseries = max(1, len(_series(result, summ)))
    fig, axes = _figure(len(params), legend_rows=math.ceil(nseries / 3))
    if not params:
        return _empty(
            fig, f"no {ylabel.lower()} to show" + (" (the study has no intervals)" if column == "coverage" else "")
        )
    key, _, cats, log = _x_axis(result, summ)
    for ax, param in zip(axes, params):
        sub = summ[summ["parameter"] == param]
        for k, (label, s) in enumerate(_series(result, sub)):
            if key is None:
                x = np.array([list(result.models).index(m) for m in s["model"]], dtype=float)
            else:
                _, x, _, _ = _x_axis(result, s)
            y = s[column].to_numpy(dtype=float)
            order = np.argsort(x, kind="stable")
            yerr = 2 * s[error].to_numpy(dtype=float)[order] if error else None
            ax.errorbar(
                x[order],
                y[order],
                yerr=yerr,
                marker="o",
                markersize=3.5,
                linewidth=1.2,
                capsize=2,
                color=f"C{k % 10}",
                label=label,
            )
        if nominal is not None:
            ax.axhline(nominal, color="black", linestyle="--", linewidth=1.0)
        if key is None:
            ax.set_xticks(
                range(len(result.models)), [_short(m, 18) for m in result.models], fontsize=6.5, rotation=20, ha="right"
            )
            ax.set_xlim(-0.5, len(result.models) - 0.5)
        else:
            if cats is not None:
                ax.set_xticks(range(len(cats)), cats, fontsize=7)
            if log:
                ax.set_xscale("log")
                ax.set_xticks(
                    sorted(set(float(v) for v in result.grid[key])),
                    [str(v) for v in sorted(set(result.grid[key]))],
                    fontsize=7,
                )
                ax.minorticks_off()
            ax.set_xlabel(key, fontsize=8)
        if log and column == "rmse" and np.all(sub[column] > 0):
            ax.set_yscale("log")
        ax.set_title(param, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7.5)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncols=min(3, len(labels)), fontsize=7.5, frameon=False)
    fig.suptitle(title, fontsize=10, y=0.995)
    return fig


def coverage(
    result: StudyResult, *, models: Sequence[str] | None = None, parameters: Sequence[str] | None = None
) -> Figure:
    """Coverage of the CIs per parameter against the grid (bars: +-2 Monte Carlo SEs)."""
    return _against_grid(
        result,
        "coverage",
        models=models,
        parameters=parameters,
        title=f"Coverage of the {result.level:.0%} CIs (dashed: nominal; bars: \u00b12 MC SE)",
        ylabel="coverage",
        nominal=result.level,
        error="coverage_mcse",
    )


def rmse(
    result: StudyResult, *, models: Sequence[str] | None = None, parameters: Sequence[str] | None = None
) -> Figure:
    """RMSE of the estimates per parameter against the grid."""
    return _against_grid(
        result,
        "rmse",
        models=models,
        parameters=parameters,
        title="Root mean squared error of the estimates",
        ylabel="RMSE",
    )
