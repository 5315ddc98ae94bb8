"""The result of a power simulation: power per design point with its Monte Carlo SE.

At each point, with n successful replicates of which k reject at level alpha,

    power = k / n,    mc_se = sqrt(power (1 - power) / n),

and the 95% Monte Carlo band of the plots is power +- 1.96 mc_se (clipped to [0, 1]).
Failed replicates (the fit raised) are counted in ``failed`` and left out of n.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hlm.errors import OptionError
from hlm.simulate.design import Design

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TABLE_COLUMNS = ["power", "mc_se", "reps", "failed", "mean_estimate", "method"]


@dataclass(frozen=True, eq=False)
class PowerSimulation:
    """Simulated power of a test of one fixed effect, at one or more design points."""

    term: str
    test: str
    alpha: float
    reps: int
    seed: int
    model: str
    design: Design
    vary: tuple[tuple[str, tuple[Any, ...]], ...]  # design path -> its values
    rows: tuple[tuple[Any, ...], ...]  # per point: vary values, then TABLE_COLUMNS
    replicates: tuple[tuple[int, int, float, float, str | None], ...]  # point, rep, estimate, p-value, error
    seconds: float

    @classmethod
    def build(
        cls,
        *,
        term: str,
        test: str,
        alpha: float,
        reps: int,
        seed: int,
        model: str,
        design: Design,
        vary_keys: Sequence[str],
        vary_values: list[tuple[Any, ...]],
        methods: list[str],
        replicates: list[tuple[int, int, float, float, str | None]],
        seconds: float,
    ) -> PowerSimulation:
        rows = []
        for j, values in enumerate(vary_values):
            p = np.array([r[3] for r in replicates if r[0] == j], dtype=float)
            est = np.array([r[2] for r in replicates if r[0] == j], dtype=float)
            ok = np.isfinite(p)
            n = int(ok.sum())
            power = float(np.mean(p[ok] < alpha)) if n else math.nan
            mc_se = math.sqrt(power * (1.0 - power) / n) if n else math.nan
            mean_est = float(est[ok].mean()) if n else math.nan
            rows.append((*values, power, mc_se, n, int(len(p) - n), mean_est, methods[j]))
        vary = tuple((k, tuple(dict.fromkeys(v[i] for v in vary_values))) for i, k in enumerate(vary_keys))
        return cls(term, test, alpha, reps, seed, model, design, vary, tuple(rows), tuple(replicates), seconds)

    @property
    def table(self) -> pd.DataFrame:
        """One row per design point: the varied values, power, mc_se, successful reps, failed
        replicates, the mean estimate of the term and the route (``sufficient`` or ``rows``)."""
        return pd.DataFrame(list(self.rows), columns=[k for k, _ in self.vary] + TABLE_COLUMNS)

    def _single(self, column: str) -> Any:
        values = [r[len(self.vary) + TABLE_COLUMNS.index(column)] for r in self.rows]
        return values[0] if len(values) == 1 else np.array(values)

    @property
    def power(self) -> float | np.ndarray:
        """The power (one number; an array over the design points when ``vary`` was given)."""
        return self._single("power")

    @property
    def mc_se(self) -> float | np.ndarray:
        """The Monte Carlo SE of the power (as :attr:`power`)."""
        return self._single("mc_se")

    @property
    def failed(self) -> int | np.ndarray:
        """Replicates whose fit failed (as :attr:`power`)."""
        return self._single("failed")

    def plot(self, file: str | os.PathLike | None = None, *, overwrite: bool = False) -> Figure:
        """The power curve over the first varied path with its 95% Monte Carlo band
        (:func:`hlm.power.plots.power_curve`)."""
        from hlm.power.plots import power_curve

        return power_curve(self, file=file, overwrite=overwrite)

    def report(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """A self-contained HTML report (:func:`hlm.power.report.write_report`)."""
        from hlm.power.report import write_report

        return write_report(self, path, overwrite=overwrite)

    def __str__(self) -> str:
        head = (
            f"power of the {self.test} test of {self.term} (alpha {self.alpha:g}), "
            f"{self.reps:,} replicates per point, seed {self.seed}, {self.seconds:.1f} s"
        )
        return head + "\n" + self.table.to_string(index=False, float_format=lambda x: f"{x:.4g}")

    def curve(self) -> tuple[str, np.ndarray]:
        """The first varied path and its values (refused without ``vary``)."""
        if not self.vary:
            raise OptionError("a power curve needs vary= (e.g. {'levels.district.n': [5, 10, 20]})")
        key = self.vary[0][0]
        return key, np.array([r[0] for r in self.rows], dtype=object)
