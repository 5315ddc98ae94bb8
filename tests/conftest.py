"""Shared fixtures (the data sets and R's results themselves are in support.py)."""

from __future__ import annotations

import pytest

from support import dataset, reference


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
