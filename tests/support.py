"""Test support shared by every test module: the reference data sets and R's stored results
(tests/data, tests/reference).  Fixtures live in conftest.py."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
ROOT = HERE.parent
DATA = HERE / "data"
REFERENCE = HERE / "reference"

# every lme4 mixed-model fit among the references
MIXED = [
    "sleepstudy__slope_REML",
    "sleepstudy__slope_ML",
    "sleepstudy__uncorr_REML",
    "Dyestuff__intercept_REML",
    "Dyestuff__intercept_ML",
    "Dyestuff2__intercept_REML",
    "Pastes__nested_REML",
    "Pastes__nested_ML",
    "Penicillin__crossed_REML",
    "Hsb82__ri_REML",
    "Hsb82__ri_ML",
    "Hsb82__rs_REML",
    "Hsb82__rs_ML",
    "Grunfeld__lmer_ri_REML",
    "Grunfeld__lmer_ri_ML",
]


@cache
def reference(name: str) -> dict:
    """A reference JSON by file stem, e.g. ``sleepstudy__slope_REML``."""
    return json.loads((REFERENCE / f"{name}.json").read_text())


@cache
def _dataset(name: str) -> pd.DataFrame:
    frame = pd.read_csv(DATA / f"{name}.csv")
    if name == "Grunfeld":  # the lmer fixtures group by firm as a factor column
        frame["firm_f"] = frame["firm"].astype(str)
    return frame


def dataset(name: str) -> pd.DataFrame:
    """A fresh copy of a reference data set."""
    return _dataset(name).copy()
