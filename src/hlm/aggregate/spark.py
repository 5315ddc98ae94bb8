"""The Spark backend: sufficient statistics of a Spark DataFrame, computed on the cluster.

The queries are those of :mod:`hlm.aggregate.sql` in Spark's dialect, run with
``spark.sql`` on a temporary view of the DataFrame; only grouped rows come back to the
driver (via Arrow when available).  Needs ``pyspark`` (``pip install hlm[spark]``).

Point it at a cluster by building the session there::

    spark = SparkSession.builder.remote("sc://host:15002").getOrCreate()   # Spark Connect
    df = spark.read.parquet("s3://bucket/data/")
    hlm.fit("y ~ x + (1 | school/class)", df)
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Mapping
from typing import Any, Literal, overload

import numpy as np

from hlm.aggregate import sql as q
from hlm.aggregate.stats import Aggregates
from hlm.data.layout import Layout
from hlm.errors import DataError, HLMError, OptionError
from hlm.spec.terms import ModelSpec


def _require_pyspark() -> type:
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import DataFrame
    except ImportError:
        raise HLMError("the Spark backend needs pyspark: pip install 'hlm[spark]' (and Java 17)") from None
    return DataFrame


class SparkSource:
    """A Spark DataFrame as the source of the plan's queries.

    The queries name the source by a placeholder that every ``spark.sql`` call binds to the
    DataFrame itself (``spark.sql(text, src=df)``): through Spark Connect the DataFrame's plan
    travels inside the query's request, so there is no temporary view to create and drop (two
    round trips each).  Connect always returns Arrow batches; a classic session is told to."""

    def __init__(self, df: Any):
        _require_pyspark()
        if not hasattr(df, "createOrReplaceTempView") or not hasattr(df, "sparkSession"):
            raise OptionError(f"the Spark backend takes a Spark DataFrame; got {type(df).__name__}")
        self.df = df
        self.spark = df.sparkSession
        self.src = f"hlm_src_{uuid.uuid4().hex[:12]}"
        if not type(self.spark).__module__.startswith("pyspark.sql.connect"):
            try:
                self.spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
            except Exception:  # pragma: no cover - locked-down clusters
                pass

    def run(self, query: str) -> Mapping[str, np.ndarray]:
        # spark.sql formats its text with str.format: braces (in string literals) are doubled
        text = query.replace("{", "{{").replace("}", "}}").replace(self.src, "{hlm_source}")
        try:
            with warnings.catch_warnings():  # pyspark warns about pandas >= 3 on every toPandas
                warnings.simplefilter("ignore", FutureWarning)
                frame = self.spark.sql(text, hlm_source=self.df).toPandas()
        except Exception as exc:  # AnalysisException and friends: name the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"Spark cannot evaluate the model on the data: {first}") from None
        return {c: frame[c].to_numpy() for c in frame.columns}

    def schema(self) -> dict[str, str]:
        return {name: dtype for name, dtype in self.df.dtypes}


@overload
def aggregate_spark(
    spec: ModelSpec | Layout, df: Any, *, return_plan: Literal[False] = False, weights: str | None = None
) -> Aggregates: ...
@overload
def aggregate_spark(
    spec: ModelSpec | Layout, df: Any, *, return_plan: Literal[True], weights: str | None = None
) -> tuple[Aggregates, q.Plan]: ...
def aggregate_spark(
    spec: ModelSpec | Layout, df: Any, *, return_plan: bool = False, weights: str | None = None
) -> Aggregates | tuple[Aggregates, q.Plan]:
    """Sufficient statistics of the Spark DataFrame ``df`` (same queries as DuckDB, Spark dialect;
    ``weights``: a column of precision weights)."""
    src = SparkSource(df)
    plan = q.plan(spec, src.schema(), q.SPARK, src.run, src.src, weights=weights)
    agg = q.compute(plan, src.run, src.src)
    return (agg, plan) if return_plan else agg
