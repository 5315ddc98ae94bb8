"""The result of a study: tidy replicates, per-fit records, summaries and exports.

``replicates``: one row per grid point, replicate, model and parameter (columns
:data:`PARAM_COLUMNS` with the grid's design paths after ``point``, the ``covered`` flag
and ``error``), and one row without a parameter for every fit that failed, its reason in
``error`` -- so a grid point where every fit failed is still there.  ``fits``: one row per
grid point, replicate and model (:data:`FIT_COLUMNS`), including fits that failed.

Summary per grid point, model and parameter, over the R replicates whose fit gave an
estimate (theta-hat_r, truth theta):

    bias = mean(theta-hat) - theta,   rel_bias = bias / theta,
    rmse = sqrt(mean((theta-hat - theta)^2)),   sd = SD of theta-hat (n - 1),
    mean_se = mean of the reported SEs (compare with sd),
    coverage = share of the CIs with conf_low <= theta <= conf_high,
    coverage_mcse = sqrt(coverage (1 - coverage) / n_ci),

and per grid point and model, over all attempted fits: shares converged (a failed fit
counts as not converged), singular and failed, mean seconds per fit and the most common
reason of the failures; a point and model without any estimate has one summary row with no
parameter.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from hlm.errors import OptionError
from hlm.outputs import output_file
from hlm.simulate.design import Design
from hlm.study.columns import FIT_SUMMARY_COLUMNS, SUMMARY_COLUMNS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIT_COLUMNS = [
    "point",
    "rep",
    "seed",
    "model",
    "converged",
    "singular",
    "seconds",
    "seconds_ci",
    "seconds_simulate",
    "error",
]
PARAM_COLUMNS = [
    "point",
    "rep",
    "seed",
    "model",
    "parameter",
    "kind",
    "term",
    "truth",
    "estimate",
    "std_error",
    "conf_low",
    "conf_high",
    "converged",
    "singular",
]


@dataclass(frozen=True, eq=False)
class StudyResult:
    """A finished study (see the module docstring); build it with :func:`hlm.study`."""

    design: Design
    models: tuple[str, ...]
    reps: int
    seed: int
    grid: dict[str, list[Any]]
    designs: tuple[Design, ...] = field(repr=False)  # one per grid point
    replicates: pd.DataFrame = field(repr=False)
    fits: pd.DataFrame = field(repr=False)
    seconds: float = 0.0
    n_jobs: int = 1
    reml: bool | None = None
    intervals: bool = True
    level: float = 0.95

    @classmethod
    def build(
        cls,
        *,
        design: Design,
        models: tuple[str, ...],
        reps: int,
        seed: int,
        grid_keys: tuple[str, ...],
        grid_values: list[tuple[Any, ...]],
        designs: list[Design],
        fits: list[tuple],
        params: list[tuple],
        seconds: float,
        n_jobs: int,
        reml: bool | None,
        intervals: bool,
        level: float,
    ) -> StudyResult:
        grid = {k: list(dict.fromkeys(v[i] for v in grid_values)) for i, k in enumerate(grid_keys)}
        fit_frame = _with_grid(pd.DataFrame(fits, columns=FIT_COLUMNS), grid_keys, grid_values)
        failed = [
            (pt, rep, sd, model, None, None, None, np.nan, np.nan, np.nan, np.nan, np.nan, conv, sing, err)
            for pt, rep, sd, model, conv, sing, *_, err in fits
            if _is_failure(err)
        ]
        par = pd.DataFrame([(*row, None) for row in params] + failed, columns=[*PARAM_COLUMNS, "error"])
        par = par.sort_values(["point", "rep"], kind="stable").reset_index(drop=True)
        for col in ("truth", "estimate", "std_error", "conf_low", "conf_high"):
            par[col] = par[col].astype(float)
        has_ci = par["conf_low"].notna() & par["conf_high"].notna()
        covered = (par["conf_low"] <= par["truth"]) & (par["truth"] <= par["conf_high"])
        par.insert(PARAM_COLUMNS.index("conf_high") + 1, "covered", covered.astype("boolean").where(has_ci, pd.NA))
        par = _with_grid(par, grid_keys, grid_values)
        return cls(
            design, models, reps, seed, grid, tuple(designs), par, fit_frame, seconds, n_jobs, reml, intervals, level
        )

    # ---- summaries ------------------------------------------------------------------------
    @property
    def group_keys(self) -> list[str]:
        """``point`` and the grid's design paths."""
        return ["point", *self.grid]

    def fit_summary(self) -> pd.DataFrame:
        """Per grid point and model: fits attempted, shares converged / singular / failed,
        seconds, and the most common reason of the failures (None when none failed)."""
        f = self.fits
        keys = self.group_keys + ["model"]
        g = f.groupby(keys, sort=False, dropna=False)
        out = g.agg(
            n_fits=("rep", "size"),
            converged=("converged", "mean"),
            singular=("singular", "mean"),
            failed=("error", lambda e: float(np.mean([_is_failure(x) for x in e]))),
            seconds=("seconds", "mean"),
            seconds_ci=("seconds_ci", "mean"),
            seconds_simulate=("seconds_simulate", "mean"),
            reason=("error", _most_common_failure),
        ).reset_index()
        return _order(out, self.group_keys + FIT_SUMMARY_COLUMNS, self.models)

    def summary(self) -> pd.DataFrame:
        """Per grid point, model and parameter: truth, mean, bias, relative bias, RMSE, SD of
        the estimates against the mean SE, CI coverage, shares converged / singular /
        failed and seconds per fit (see the module docstring)."""
        p = self.replicates
        p = p[p["parameter"].notna()]
        keys = self.group_keys + ["model", "parameter"]
        rows = []
        for key, g in p.groupby(keys, sort=False, dropna=False):
            est = g["estimate"].to_numpy(dtype=float)
            ok = np.isfinite(est)
            est = est[ok]
            truth = float(g["truth"].iloc[0])
            n = int(ok.sum())
            cov = g["covered"].dropna()
            n_ci = int(len(cov))
            c = float(cov.astype(float).mean()) if n_ci else float("nan")
            se = g["std_error"].to_numpy(dtype=float)
            se = se[np.isfinite(se)]
            mean = float(est.mean()) if n else float("nan")
            bias = mean - truth
            rows.append(
                (
                    *key,
                    g["kind"].iloc[0],
                    truth,
                    n,
                    mean,
                    bias,
                    bias / truth if truth != 0 else float("nan"),
                    float(np.sqrt(np.mean((est - truth) ** 2))) if n else float("nan"),
                    float(est.std(ddof=1)) if n > 1 else float("nan"),
                    float(se.mean()) if len(se) else float("nan"),
                    c,
                    math.sqrt(c * (1 - c) / n_ci) if n_ci else float("nan"),
                    n_ci,
                )
            )
        cols = keys + SUMMARY_COLUMNS[2 : SUMMARY_COLUMNS.index("n_ci") + 1]
        out = pd.DataFrame(rows, columns=cols)
        fs = self.fit_summary()[self.group_keys + ["model", "converged", "singular", "failed", "seconds", "reason"]]
        out = out.merge(fs, on=self.group_keys + ["model"], how="right", sort=False)  # every point, even all failed
        out["n"] = out["n"].fillna(0).astype(int)
        out["n_ci"] = out["n_ci"].fillna(0).astype(int)
        return _order(out, self.group_keys + SUMMARY_COLUMNS, self.models)

    # ---- exports --------------------------------------------------------------------------
    def to_csv(
        self,
        path: str | os.PathLike,
        *,
        table: Literal["replicates", "summary", "fits"] = "replicates",
        overwrite: bool = False,
    ) -> Path:
        """Write the replicates (default), the summary or the per-fit records as CSV (an
        existing file only with ``overwrite=True``)."""
        frames = {"replicates": lambda: self.replicates, "summary": self.summary, "fits": lambda: self.fits}
        if table not in frames:
            raise OptionError(f"table must be 'replicates', 'summary' or 'fits', not {table!r}")
        target = output_file(path, {".csv": "csv"}, overwrite=overwrite)[0]
        frames[table]().to_csv(target, index=False)
        return target

    def settings(self) -> dict[str, Any]:
        """The study's inputs and run facts, JSON-ready."""
        return {
            "design": self.design.to_dict(),
            "models": list(self.models),
            "reps": self.reps,
            "seed": self.seed,
            "grid": {k: [_plain(v) for v in vs] for k, vs in self.grid.items()},
            "n_jobs": self.n_jobs,
            "reml": self.reml,
            "intervals": self.intervals,
            "level": self.level,
            "seconds": self.seconds,
            "replicates_per_second": self.reps * len(self.designs) / self.seconds if self.seconds > 0 else None,
        }

    def to_dict(self, *, replicates: bool = False) -> dict[str, Any]:
        """Settings, per-fit summary and summary (and the replicates) as plain data."""
        out = {"settings": self.settings(), "fits": _records(self.fit_summary()), "summary": _records(self.summary())}
        if replicates:
            out["replicates"] = _records(self.replicates)
        return out

    def to_json(
        self, path: str | os.PathLike | None = None, *, replicates: bool = False, overwrite: bool = False
    ) -> str:
        """The :meth:`to_dict` data as JSON text (NaN as null); also written to ``path`` (an
        existing file only with ``overwrite=True``)."""
        text = json.dumps(self.to_dict(replicates=replicates), indent=2, allow_nan=False)
        if path is not None:
            output_file(path, {".json": "json"}, overwrite=overwrite)[0].write_text(text + "\n")
        return text

    # ---- plots and report -----------------------------------------------------------------
    def plot(
        self,
        kind: Literal["distributions", "coverage", "rmse"] = "distributions",
        *,
        file: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> Figure:
        """A matplotlib Figure (saved to ``file`` when given), see :mod:`hlm.study.plots`."""
        from hlm.study.plots import plot

        return plot(self, kind, file=file, **kwargs)

    def report(self, path: str | os.PathLike, *, title: str | None = None, overwrite: bool = False) -> Path:
        """Write a self-contained HTML report (tables, plots as embedded PNG), see
        :mod:`hlm.study.report`."""
        from hlm.study.report import write_report

        return write_report(self, path, title=title, overwrite=overwrite)

    def __str__(self) -> str:
        from hlm.study.report import text_summary

        return text_summary(self)


def _is_failure(err: Any) -> bool:
    return isinstance(err, str) and not err.startswith("intervals:")


def _most_common_failure(errors: pd.Series) -> str | None:
    failures = [e for e in errors if _is_failure(e)]
    return pd.Series(failures).value_counts().index[0] if failures else None


def _with_grid(frame: pd.DataFrame, keys: Sequence[str], values: list[tuple[Any, ...]]) -> pd.DataFrame:
    for i, k in enumerate(keys):
        col = [values[p][i] for p in frame["point"]]
        frame.insert(1 + i, k, pd.Series(col, index=frame.index, dtype=object if _mixed_types(col) else None))
    return frame


def _mixed_types(col: list[Any]) -> bool:
    return len({type(v) for v in col}) > 1 and not all(isinstance(v, (int, float)) for v in col)


def _order(frame: pd.DataFrame, columns: list[str], models: Sequence[str]) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(models)}
    frame = frame.assign(_m=frame["model"].map(rank)).sort_values(["point", "_m"], kind="stable")
    return frame[columns].reset_index(drop=True)


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if v is pd.NA or v is None:
        return None
    if isinstance(v, (int, str, bool)):
        return v
    return str(v)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = list(frame.columns)
    return [{c: _plain(v) for c, v in zip(cols, row)} for row in frame.itertuples(index=False, name=None)]
