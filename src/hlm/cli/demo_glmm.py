"""``hlm demo``'s pass/fail step: the seed's ``pass = perform > 0`` fitted by a four-level
logistic GLMM (Stata's ``melogit``, Laplace), and how much of the variance in passing sits at
each level on the latent scale.

A logistic GLMM is a threshold of a latent y* = eta + e with e standard logistic (variance
pi^2/3), so level l's latent share is

    share_l = v_l / (sum_k v_k + pi^2/3),     residual share = (pi^2/3) / (sum_k v_k + pi^2/3)

(Stata's ``estat icc`` denominators).  The seed's pass is exactly a threshold of the Gaussian
perform, a probit model whose latent shares are perform's own variance shares; logistic and
normal latent variables differ mainly by a scale, which cancels in a share, so the logit's
shares estimate nearly the same numbers.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import pandas as pd

import hlm
from hlm.simulate import Design

MELOGIT = "melogit pass tutoring || dist_id: || school_id: || teach_id: || student_id:, laplace"
SUBSAMPLE_DISTRICTS = 5  # 8,000 rows: the 4-level Laplace fit stays at a few seconds
LATENT_LOGISTIC = math.pi**2 / 3


def latent_shares(varcorr: pd.DataFrame, levels: dict[str, str]) -> pd.DataFrame:
    """Each level's random-intercept variance and latent share (module docstring), outermost
    first as ``levels`` (id column -> level name) lists them, then the latent residual."""
    variance = {str(g): float(v) for g, v, v2 in zip(varcorr["group"], varcorr["vcov"], varcorr["var2"]) if v2 is None}
    rows = [(name, variance[group]) for group, name in levels.items()] + [("residual (logistic)", LATENT_LOGISTIC)]
    total = sum(v for _, v in rows)
    return pd.DataFrame([(name, v, v / total) for name, v in rows], columns=["level", "variance", "share"])


def design_shares(design: Design) -> list[float]:
    """The threshold model's latent shares: perform's variance shares, levels then the residual."""
    variances = [lv.sd**2 for lv in design.levels] + [design.residual_sd**2]
    return [v / sum(variances) for v in variances]


def show_pass_fail(frame: pd.DataFrame, design: Design, echo: Callable[[str], None]) -> pd.DataFrame:
    """Fit the four-level logistic model of pass = perform > 0 on the first districts and print the
    latent-scale variance shares next to the threshold model's true ones; returns the shares."""
    sub = frame[frame["dist_id"] <= SUBSAMPLE_DISTRICTS].assign(pass_=lambda f: (f["perform"] > 0).astype(int))
    sub = sub.rename(columns={"pass_": "pass"})
    districts = int(sub["dist_id"].nunique())
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hlm.fit(MELOGIT, sub)
    seconds = time.perf_counter() - start
    odds = math.exp(float(fit.fixef["tutoring"]))
    echo(
        f"{MELOGIT}\n(Laplace, on a subsample: the first {districts} districts, {len(sub):,} rows; "
        f"fitted in {seconds:.1f} s, converged: {fit.converged})\n"
        f"Pass rate {sub['pass'].mean():.3f}; tutoring's odds ratio {odds:.2f} "
        f"(log-odds {float(fit.fixef['tutoring']):.3f}, SE {float(fit.se['tutoring']):.3f})."
    )
    levels = {str(lv.id): lv.name for lv in design.levels}
    table = latent_shares(fit.varcorr, levels)
    table["true share"] = design_shares(design)
    echo("How much of the variance in passing sits at each level (latent scale, residual pi^2/3):")
    echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    echo(
        f"\nThe true shares are perform's (pass is a cut of it). With {districts} districts the district share "
        "is barely estimable, and with two binary semesters per student the Laplace approximation is known to "
        "understate the student variance (Breslow & Lin 1995): the teacher share is the best determined."
    )
    return table
