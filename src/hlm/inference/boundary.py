"""The record of a likelihood-ratio test, and the test of variance parameters against the
model without random effects: with one parameter the null puts it on the boundary and the
statistic x is ``chibar2(01)`` = 0.5 chi2_0 + 0.5 chi2_1, p = 0.5 P(chi2_1 > x) for x > 0 (1 at
x = 0, as Stata); with k > 1 Stata reports chi2(k), p = P(chi2_k > x), noting that this is
conservative.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class LRTest:
    """A likelihood-ratio test: statistic, df and p-value, with how p was computed."""

    statistic: float
    df: int
    p_value: float
    distribution: str  # "chibar2(01)", "chi2(k)", "chibar2 mixture"
    loglik0: float
    loglik1: float
    note: str = ""
    p_value_naive: float = float("nan")

    def __str__(self) -> str:
        if self.distribution == "chibar2(01)":
            return (
                f"LR test vs. linear model: chibar2(01) = {self.statistic:.2f}   Prob >= chibar2 = {self.p_value:.4f}"
            )
        if "mixture" in self.distribution:
            head = (
                f"LR test: chibar2 = {self.statistic:.2f}   Prob >= chibar2 = {self.p_value:.4f}"
                f"   ({self.distribution})"
            )
        else:
            head = f"LR test: {self.distribution} = {self.statistic:.2f}   Prob > chi2 = {self.p_value:.4f}"
        return head + (f"\nNote: {self.note}" if self.note else "")


def boundary_test(crit0: float, crit1: float, k: int) -> LRTest:
    """The test of k variance parameters against the model without random effects, from the
    two -2 log L: chibar2(01) for one, Stata's conservative chi2(k) for more."""
    x = max(crit0 - crit1, 0.0)
    if k == 1:
        p = 0.5 * float(stats.chi2.sf(x, 1)) if x > 0 else 1.0  # P(chibar2(01) >= 0) = 1
        return LRTest(x, 1, p, "chibar2(01)", -0.5 * crit0, -0.5 * crit1, p_value_naive=float(stats.chi2.sf(x, 1)))
    return LRTest(
        x,
        k,
        float(stats.chi2.sf(x, k)),
        f"chi2({k})",
        -0.5 * crit0,
        -0.5 * crit1,
        note="LR test is conservative and provided only for reference.",
        p_value_naive=float(stats.chi2.sf(x, k)),
    )
