"""Shared fixtures: reference data sets and R results (copied from shared/reference)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).parent
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


@pytest.fixture(scope="session")
def fits():
    """Session-cached canonical fits keyed by reference name, fitted with warnings silenced
    (some reference fits are singular by design; the warnings are tested on fits of their own)."""
    import warnings

    import hlm

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            ref = reference(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache[name] = hlm.fit(ref["formula"], dataset(ref["dataset"]["name"]), reml=ref["REML"])
        return cache[name]

    return get
