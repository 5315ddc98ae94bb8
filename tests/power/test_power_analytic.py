"""Analytic power, MDES and sample size against the published formulas and worked examples.

The formulas are written out below, design by design, from the papers (not from hlm's code):
Dong & Maynard (2013) "PowerUp!", J. Res. Educ. Effectiveness 6(1), 24-67: models 2.3 (bira2,
their BIRA2_1r), 2.4 (bira3, BIRA3_1r), 3.1 (cra2, CRA2_2r; = Raudenbush 1997 with
covariates), 3.2 (cra3, CRA3_3r), 3.3 (cra4, CRA4_4r); the MDES multiplier and the power from
the noncentral t as in PowerUpR's ``.mdes.fun`` / ``.power.fun`` (Bulus, Dong, Kelcey & Spybrook).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import integrate, stats

import hlm
from hlm.errors import DataError, HLMError, OptionError

# --- the papers' formulas, written out -------------------------------------------------------


def paper_se(design, sizes, icc, r2, p, omega=None):
    """Standard error of the standardised effect, Dong & Maynard (2013) models 2.3-3.3."""
    pq = p * (1 - p)
    if design == "cra2":
        J, n = sizes
        (rho2,), (r22, r21) = icc, r2
        return (rho2 * (1 - r22) / (pq * J) + (1 - rho2) * (1 - r21) / (pq * J * n)) ** 0.5
    if design == "cra3":
        K, J, n = sizes
        (rho3, rho2), (r23, r22, r21) = icc, r2
        return (
            rho3 * (1 - r23) / (pq * K)
            + rho2 * (1 - r22) / (pq * J * K)
            + (1 - rho3 - rho2) * (1 - r21) / (pq * J * K * n)
        ) ** 0.5
    if design == "cra4":
        L, K, J, n = sizes
        (rho4, rho3, rho2), (r24, r23, r22, r21) = icc, r2
        return (
            rho4 * (1 - r24) / (pq * L)
            + rho3 * (1 - r23) / (pq * K * L)
            + rho2 * (1 - r22) / (pq * J * K * L)
            + (1 - rho4 - rho3 - rho2) * (1 - r21) / (pq * J * K * L * n)
        ) ** 0.5
    if design == "bira2":
        J, n = sizes
        (rho2,), (omega2,), (r2t2, r21) = icc, omega, r2
        return (rho2 * omega2 * (1 - r2t2) / J + (1 - rho2) * (1 - r21) / (pq * J * n)) ** 0.5
    K, J, n = sizes
    (rho3, rho2), (omega3, omega2), (r2t3, r2t2, r21) = icc, omega, r2
    return (
        rho3 * omega3 * (1 - r2t3) / K
        + rho2 * omega2 * (1 - r2t2) / (J * K)
        + (1 - rho3 - rho2) * (1 - r21) / (pq * J * K * n)
    ) ** 0.5


def paper_df(design, sizes, g):
    """df = K - g - 2 for cluster assignment, K - g - 1 for random-block individual assignment."""
    return sizes[0] - g - (2 if design.startswith("cra") else 1)


def paper_mdes(design, sizes, icc, r2, p, alpha, power, g, two_sided, omega=None):
    df = paper_df(design, sizes, g)
    t1 = stats.t.ppf(1 - alpha / 2, df) if two_sided else stats.t.ppf(1 - alpha, df)
    return (t1 + stats.t.ppf(power, df)) * paper_se(design, sizes, icc, r2, p, omega)


def paper_power(design, sizes, icc, r2, p, alpha, effect, g, two_sided, omega=None):
    """Power from the noncentral t, P(T > c) = E[1 - Phi(c sqrt(V / df) - lambda)], V ~ chi^2(df),
    computed by quadrature (independent of scipy's noncentral t series)."""
    df = paper_df(design, sizes, g)
    ncp = effect / paper_se(design, sizes, icc, r2, p, omega)
    chi2 = stats.chi2(df)
    span = {"a": chi2.ppf(1e-15), "b": chi2.isf(1e-15), "points": [df], "epsabs": 1e-13, "limit": 500}

    def above(c):
        return integrate.quad(lambda v: stats.norm.sf(c * (v / df) ** 0.5 - ncp) * chi2.pdf(v), **span)[0]

    if not two_sided:
        return above(stats.t.ppf(1 - alpha, df))
    crit = stats.t.ppf(1 - alpha / 2, df)
    below = integrate.quad(lambda v: stats.norm.cdf(-crit * (v / df) ** 0.5 - ncp) * chi2.pdf(v), **span)[0]
    return above(crit) + below


GRID = {
    "cra2": {
        "sizes": [(10, 5), (40, 20), (123, 7.5)],
        "icc": [(0.05,), (0.3,)],
        "r2": [(0, 0), (0.53, 0.4)],
        "omega": [None],
    },
    "cra3": {
        "sizes": [(12, 3, 15), (66, 2, 20)],
        "icc": [(0.06, 0.17), (0.38, 0.1)],
        "r2": [(0, 0, 0), (0.87, 0.53, 0.37)],
        "omega": [None],
    },
    "cra4": {
        "sizes": [(20, 3, 2, 10), (9, 4, 5, 25)],
        "icc": [(0.05, 0.05, 0.1), (0.1, 0.2, 0.2)],
        "r2": [(0,) * 4, (0.5, 0.4, 0.3, 0.2)],
        "omega": [None],
    },
    "bira2": {
        "sizes": [(20, 15), (480, 80)],
        "icc": [(0.17,), (0.35,)],
        "r2": [(0, 0), (0.3, 0.5)],
        "omega": [(0.0,), (0.5,)],
    },
    "bira3": {
        "sizes": [(100, 10, 69), (8, 4, 30)],
        "icc": [(0.2, 0.15), (0.05, 0.3)],
        "r2": [(0, 0, 0), (0.5, 0.2, 0.6)],
        "omega": [(0.1, 0.1), (0.0, 0.8)],
    },
}


def _cases():
    for design, grid in GRID.items():
        for sizes, icc, r2, omega, (p, g, two_sided) in itertools.product(
            grid["sizes"], grid["icc"], grid["r2"], grid["omega"], [(0.5, 0, True), (0.3, 2, False)]
        ):
            yield design, sizes, icc, r2, omega, p, g, two_sided


CASES = list(_cases())


@pytest.mark.parametrize("design,sizes,icc,r2,omega,p,g,two_sided", CASES)
def test_mdes_and_power_match_the_papers(design, sizes, icc, r2, omega, p, g, two_sided):
    for alpha, power in [(0.05, 0.8), (0.01, 0.9), (0.1, 0.4)]:
        want = paper_mdes(design, sizes, icc, r2, p, alpha, power, g, two_sided, omega)
        got = hlm.power.mdes(
            design, sizes, icc, r2=r2, p=p, alpha=alpha, power=power, covariates=g, two_sided=two_sided, omega=omega
        )
        assert got == pytest.approx(want, abs=1e-6, rel=1e-9)
    for effect in (0.1, 0.3, -0.2):
        want = paper_power(design, sizes, icc, r2, p, 0.05, effect, g, two_sided, omega)
        got = hlm.power.power(design, sizes, icc, effect, r2=r2, p=p, covariates=g, two_sided=two_sided, omega=omega)
        assert got == pytest.approx(want, abs=1e-6)


def test_power_at_the_mdes_is_near_the_target():
    """At the MDES the noncentral-t power is the target up to M's central-t approximation."""
    for design, sizes, icc, r2, omega, p, g, two_sided in CASES:
        m = hlm.power.mdes(design, sizes, icc, r2=r2, p=p, covariates=g, two_sided=two_sided, omega=omega)
        got = hlm.power.power(design, sizes, icc, m, r2=r2, p=p, covariates=g, two_sided=two_sided, omega=omega)
        assert got == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("design,sizes,icc,r2,omega,p,g,two_sided", CASES[::3])
def test_sample_size_is_the_smallest_reaching_the_power(design, sizes, icc, r2, omega, p, g, two_sided):
    effect = 0.35
    for at in range(len(sizes)):
        query = tuple(None if i == at else s for i, s in enumerate(sizes))
        try:
            m = hlm.power.sample_size(
                design, query, icc, effect, r2=r2, p=p, covariates=g, two_sided=two_sided, omega=omega
            )
        except DataError as exc:  # a lower level cannot reach the power: check the limit really is short
            assert at > 0 and "tends to" in str(exc)
            big = tuple(1e9 if i == at else s for i, s in enumerate(sizes))
            assert paper_power(design, big, icc, r2, p, 0.05, effect, g, two_sided, omega) < 0.8
            continue
        at_m = tuple(m if i == at else s for i, s in enumerate(sizes))
        assert paper_power(design, at_m, icc, r2, p, 0.05, effect, g, two_sided, omega) >= 0.8
        smallest = (g + (3 if design.startswith("cra") else 2)) if at == 0 else 1
        if m > smallest:
            below = tuple(m - 1 if i == at else s for i, s in enumerate(sizes))
            assert paper_power(design, below, icc, r2, p, 0.05, effect, g, two_sided, omega) < 0.8


# --- worked examples -------------------------------------------------------------------------

# PowerUpR's documented cross-checks (man/cra2r2.Rd, cra3r3.Rd, cra4r4.Rd, bira2r1.Rd, bira3r1.Rd of
# PowerUpR 1.1.0, CRAN): mdes.<design>(...) gives the MDES that power.<design>(es=MDES, ...) is
# then run with; the pages print the MDES to three decimals.
POWERUPR_MAN = [
    ("cra2", (20, 15), 0.17, None, 0.629),  # mdes.cra2r2(rho2=.17, n=15, J=20)
    ("cra3", (60, 3, 15), (0.06, 0.17), None, 0.269),  # mdes.cra3r3(rho3=.06, rho2=.17, n=15, J=3, K=60)
    ("cra4", (20, 3, 2, 10), (0.05, 0.05, 0.10), None, 0.412),  # mdes.cra4r4(rho4=.05, rho3=.05, rho2=.10, ...)
    ("bira2", (20, 15), 0.17, 0.5, 0.366),  # mdes.bira2r1(rho2=.17, omega2=.50, n=15, J=20)
    ("bira3", (100, 10, 69), (0.20, 0.15), (0.10, 0.10), 0.045),  # mdes.bira3r1(rho3=.20, rho2=.15, omega=.10, ...)
]


@pytest.mark.parametrize("design,sizes,icc,omega,documented", POWERUPR_MAN)
def test_powerupr_documented_cross_checks(design, sizes, icc, omega, documented):
    assert round(hlm.power.mdes(design, sizes, icc, omega=omega), 3) == documented
    assert hlm.power.power(design, sizes, icc, documented, omega=omega) == pytest.approx(0.80, abs=0.006)


def test_powerupr_bira2_power_values():
    """PowerUpR::power.bira2 values quoted in BACpowr's tests (winniewytse/BACpowr,
    tests/testthat/test-pow_msrt2.R, "Verying with PowerUpR"), four decimals."""
    assert round(hlm.power.power("bira2", (30, 10), 0.2, 0.3, omega=0), 4) == 0.8016
    assert round(hlm.power.power("bira2", (50, 20), 0.2, 0.2, omega=0.5), 4) == 0.776


# Values of the PowerUp! Excel workbook (Dong & Maynard 2013's companion tool) as recorded in a
# public pypowerup parity test suite ("cross-checked against the Excel workbook"): MDES to three
# decimals, sample sizes exact.
EXCEL_MDES = [
    ("cra2", (40, 100), 0.15, (0.53, 0.40), None, 1, 0.250),
    ("cra3", (66, 2, 20), (0.38, 0.10), (0.87, 0.53, 0.37), None, 1, 0.199),
    ("cra4", (20, 3, 2, 10), (0.05, 0.05, 0.10), (0.5,) * 4, None, 1, 0.292),
    ("bira2", (480, 80), 0.35, None, 0.1, 0, 0.033),
    ("bira2", (500, 10), 0.35, None, 0.1, 0, 0.068),
    ("bira3", (100, 10, 80), (0.2, 0.15), None, (0.1, 0.1), 0, 0.045),
    ("bira3", (200, 100, 40), (0.2, 0.15), None, (0.1, 0.1), 0, 0.029),
]


@pytest.mark.parametrize("design,sizes,icc,r2,omega,g,documented", EXCEL_MDES)
def test_powerup_excel_mdes(design, sizes, icc, r2, omega, g, documented):
    assert round(hlm.power.mdes(design, sizes, icc, r2=r2, covariates=g, omega=omega), 3) == documented


EXCEL_SAMPLE_SIZE = [
    ("cra2", (None, 60), 0.02, (0.13, 0.01), None, 4, 0.45, 10),
    ("cra3", (None, 2, 20), (0.38, 0.10), (0.87, 0.53, 0.37), None, 1, 0.20, 66),
    ("bira2", (None, 10), 0.25, (0, 0.5), 0.5, 1, 0.5, 11),
    ("bira2", (None, 4), 0.25, (0, 0.5), 0.5, 2, 0.5, 18),
    ("bira3", (None, 30, 20), (0.1, 0.15), (0, 0, 0.5), (0.1, 0.1), 0, 0.15, 7),
    ("bira3", (None, 10, 10), (0.1, 0.15), (0, 0, 0.5), (0.1, 0.1), 1, 0.15, 12),
]


@pytest.mark.parametrize("design,sizes,icc,r2,omega,g,effect,documented", EXCEL_SAMPLE_SIZE)
def test_powerup_excel_sample_size(design, sizes, icc, r2, omega, g, effect, documented):
    assert hlm.power.sample_size(design, sizes, icc, effect, r2=r2, covariates=g, omega=omega) == documented


def test_excel_power_and_a_rounded_sample_size():
    # PowerUp! BIRA3_1r sheet: power 0.70 for es = .04, n = 69, J = 10, K = 100.
    assert round(hlm.power.power("bira3", (100, 10, 69), (0.2, 0.15), 0.04, omega=(0.1, 0.1)), 2) == 0.70
    # PowerUp!'s MRSS rounds a continuous fixed point: it reports L = 45 for this cra4 design, where the
    # MDES is 0.2006 > 0.20 (power 0.798); the smallest L that reaches the power is 46.
    kw = {"r2": (0.5,) * 4, "covariates": 1}
    icc = (0.05, 0.05, 0.10)
    assert hlm.power.sample_size("cra4", (None, 3, 2, 5), icc, 0.2, **kw) == 46
    assert paper_power("cra4", (45, 3, 2, 5), icc, (0.5,) * 4, 0.5, 0.05, 0.2, 1, True) < 0.8
    assert paper_mdes("cra4", (45, 3, 2, 5), icc, (0.5,) * 4, 0.5, 0.05, 0.8, 1, True) > 0.2


# --- refusals --------------------------------------------------------------------------------

BAD = [
    (lambda: hlm.power.mdes("cra5", (10, 10), 0.1), OptionError, "unknown design"),
    (lambda: hlm.power.mdes("cra2", (10, 10, 3), 0.1), OptionError, "must list 2"),
    (lambda: hlm.power.mdes("cra2", (10, 0), 0.1), OptionError, ">= 1"),
    (lambda: hlm.power.mdes("cra3", (10, 3, 5), 0.1), OptionError, "icc must list 2"),
    (lambda: hlm.power.mdes("cra3", (10, 3, 5), (0.6, 0.5)), OptionError, "sum to less than 1"),
    (lambda: hlm.power.mdes("cra2", (10, 5), 0.1, r2=(1.0, 0)), OptionError, "r2"),
    (lambda: hlm.power.mdes("cra2", (10, 5), 0.1, p=1), OptionError, "p (the treated proportion)"),
    (lambda: hlm.power.mdes("cra2", (10, 5), 0.1, power=1.2), OptionError, "power"),
    (lambda: hlm.power.mdes("cra2", (10, 5), 0.1, alpha=0), OptionError, "alpha"),
    (lambda: hlm.power.mdes("cra2", (4, 5), 0.1, covariates=2), OptionError, "degrees of freedom"),
    (lambda: hlm.power.mdes("cra2", (10, 5), 0.1, covariates=-1), OptionError, "covariates"),
    (lambda: hlm.power.mdes("cra2", (10, 5), 0.1, omega=0.1), OptionError, "omega"),
    (lambda: hlm.power.mdes("bira2", (10, 5), 0.1), OptionError, "needs omega"),
    (lambda: hlm.power.mdes("bira2", (10, 5), 0.1, omega=-1), OptionError, "omega must be >= 0"),
    (lambda: hlm.power.power("cra2", (10, 5), 0.1, float("nan")), OptionError, "effect"),
    (lambda: hlm.power.sample_size("cra2", (10, 5), 0.1, 0.3), OptionError, "exactly one None"),
    (lambda: hlm.power.sample_size("cra2", (None, None), 0.1, 0.3), OptionError, "exactly one None"),
    (lambda: hlm.power.sample_size("cra2", (None, 5), 0.1, 0), OptionError, "non-zero"),
    (lambda: hlm.power.sample_size("cra2", (None, 5), 0.1, -0.3, two_sided=False), OptionError, "one-sided"),
    (lambda: hlm.power.sample_size("cra2", (10, None), 0.3, 0.3), DataError, "tends to"),
]


@pytest.mark.parametrize("call,error,text", BAD)
def test_bad_input_is_a_one_line_error(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, HLMError)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_one_sided_power_exceeds_two_sided_and_signs():
    one = hlm.power.power("cra2", (30, 20), 0.1, 0.3, two_sided=False)
    two = hlm.power.power("cra2", (30, 20), 0.1, 0.3)
    assert one > two
    # two-sided power is symmetric in the sign of the effect; a one-sided test has no power against it
    assert hlm.power.power("cra2", (30, 20), 0.1, -0.3) == pytest.approx(two, abs=1e-12)
    assert hlm.power.power("cra2", (30, 20), 0.1, -0.3, two_sided=False) < 0.05


def test_numpy_numbers_are_accepted():
    got = hlm.power.mdes("cra2", (np.int64(20), np.float64(15)), np.float64(0.17), covariates=np.int64(0))
    assert got == pytest.approx(hlm.power.mdes("cra2", (20, 15), 0.17), abs=1e-15)
    with pytest.raises(OptionError, match="finite number"):
        hlm.power.mdes("cra2", (20, True), 0.17)
