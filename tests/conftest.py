"""Shared fixtures: reference data sets and R results (copied from shared/reference)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).parent
DATA = HERE / "data"
REFERENCE = HERE / "reference"


@lru_cache(maxsize=None)
def reference(name: str) -> dict:
    """A reference JSON by file stem, e.g. ``sleepstudy__slope_REML``."""
    return json.loads((REFERENCE / f"{name}.json").read_text())


@lru_cache(maxsize=None)
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
    """Session-cached canonical fits keyed by reference name."""
    import hlm

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            ref = reference(name)
            cache[name] = hlm.fit(ref["formula"], dataset(ref["dataset"]["name"]), reml=ref["REML"])
        return cache[name]

    return get
