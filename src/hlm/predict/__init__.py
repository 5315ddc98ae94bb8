"""Predictions: in memory (:mod:`hlm.predict.memory`) and, for data that stays in DuckDB, the
writers of :mod:`hlm.predict.duckdb`."""

from hlm.predict.duckdb import write_predictions, write_ranef
from hlm.predict.memory import fitted, predict, residuals

__all__ = ["fitted", "predict", "residuals", "write_predictions", "write_ranef"]
