"""Model specification: model strings (lme4 or Stata syntax) -> :class:`ModelSpec`."""

from __future__ import annotations

from hlm.errors import FormulaError
from hlm.spec.formula import parse_lme4
from hlm.spec.stata import parse_stata
from hlm.spec.terms import ModelSpec, RandomTerm


def parse_model(model: str | ModelSpec) -> ModelSpec:
    """Parse a model string: lme4 formula if it contains ``~``, Stata syntax otherwise."""
    if isinstance(model, ModelSpec):
        return model
    if not isinstance(model, str):
        raise FormulaError(f"the model must be a string, not {type(model).__name__}")
    return parse_lme4(model) if "~" in model else parse_stata(model)


__all__ = ["ModelSpec", "RandomTerm", "parse_model", "parse_lme4", "parse_stata"]
