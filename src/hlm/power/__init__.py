"""Power and design of multilevel studies: analytic MDES, power, sample size and budgets.

    >>> import hlm
    >>> hlm.power.mdes("cra2", sizes=(20, 15), icc=0.17)            # 20 clusters of 15
    >>> hlm.power.power("cra3", (60, 3, 15), icc=(0.06, 0.17), effect=0.25)
    >>> hlm.power.sample_size("cra2", (None, 15), icc=0.17, effect=0.4)   # clusters needed
    >>> hlm.power.simulate("examples/seed.toml", "perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)",
    ...                    "tutoring", effect=1.0, reps=1000, vary={"levels.district.n": [5, 10, 20]})

Sizes, ICCs, omegas and R^2 are listed outermost level first (R^2 ends with level 1).  See
:mod:`hlm.power.designs` (the designs' standard errors and df), :mod:`hlm.power.analytic`
(MDES, power, sample size), :mod:`hlm.power.allocation` (the best allocation for a budget) and
:mod:`hlm.power.precision` (how many top-level units estimate their SD within +-x%),
:mod:`hlm.power.simulation` (power of any linear mixed model by simulation, drawn from
sufficient statistics by :mod:`hlm.power.sufficient` where that is exact) and
:mod:`hlm.power.plots` (power curves, MDES against cost).
"""

from hlm.power.allocation import Allocation, allocate
from hlm.power.analytic import mdes, power, sample_size
from hlm.power.designs import DESIGNS
from hlm.power.precision import sd_margin, sd_sample_size
from hlm.power.result import PowerSimulation
from hlm.power.simulation import simulate

__all__ = [
    "DESIGNS",
    "Allocation",
    "PowerSimulation",
    "allocate",
    "mdes",
    "power",
    "sample_size",
    "sd_margin",
    "sd_sample_size",
    "simulate",
]
