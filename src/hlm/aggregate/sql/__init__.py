"""A model as SQL: the aggregation queries shared by the DuckDB and Spark backends.

The model frame of :mod:`hlm.modelframe` is rebuilt as SQL expressions over the source
rows: every fixed-effect column ``x_j``, the response ``y``, every random-effect column
``z_a`` of the pool, and the grouping columns.  The sufficient statistics of
:mod:`hlm.aggregate.stats` are then three kinds of aggregate over the complete rows:

* prepass (only when needed): the sorted distinct levels of categorical columns (treatment
  coding, first sorted level as reference, as formulaic) and the means that ``center()``
  subtracts;
* global: ``n`` and ``K'K = sum k k'`` with ``k = [x, y]``;
* groups: one ``GROUP BY GROUPING SETS`` scan with, per group of every grouping factor
  (and, for crossed factors, of every pair), ``n_g``, ``sum z z'``, ``sum z k'`` and the
  MIN/MAX of the other factors' columns (nesting: a group lies in one outer group iff
  MIN = MAX).

With precision weights (a column w, :mod:`hlm.weights`) every sum is ``SUM(w * ...)`` (the
intercept's sums are ``SUM(w)``, not the count), rows with w = 0 are left out, the global
scan adds ``SUM(LN(w))`` and counts the bad weights, and the innermost groups are never
pooled by size (their weight sums rarely repeat).

The query texts are the same for DuckDB and Spark SQL apart from identifier quoting,
string literals and the distinct-collection aggregate (:class:`~hlm.aggregate.sql.dialect.Dialect`).  Level codes,
labels, parents and the cross blocks are assembled in numpy from the grouped rows (their
number is the number of groups, never of rows).

lme4 formulas arrive as :mod:`hlm.spec.rformula` writes them (safe column names, hlm's
``r_*`` functions, the frozen states of ``poly`` and ``scale`` as literals, which the
prepass computes: means, SDs, distinct counts and central moments); their offset is
subtracted from the response.  Stata syntax arrives as formulaic text.  Supported in the
fixed part and random slopes: numeric and boolean columns, categorical (string) columns and
``C(x)`` (also with ``contr.treatment(base=v)`` or ``spans_intercept=False``: Stata's
``ib#.``/``ibn.``), interactions, ``log``, ``exp``, ``sqrt`` (also as ``np.log`` ...),
``center(...)``, ``I(...)`` with ``+ - * / **`` and numbers, and for lme4 formulas also
``abs``, ``log1p``, ``expm1``, ``log2``, ``log10``, ``poly`` and ``scale``.  Anything else
raises :class:`~hlm.errors.FormulaError` naming the term.

The modules: :mod:`.dialect` (SQL dialects, column kinds), :mod:`.translate` (formula terms
as SQL), :mod:`.plan` (the Plan and its queries), :mod:`.assemble` (Aggregates from the grouped
rows), :mod:`.chain` (nested intercept chains, exact or pooled) and :mod:`.compute` (runs a plan).
"""

from hlm.aggregate.sql.compute import compute
from hlm.aggregate.sql.dialect import DUCKDB, SPARK, Dialect
from hlm.aggregate.sql.plan import Plan, plan

__all__ = ["DUCKDB", "SPARK", "Dialect", "Plan", "compute", "plan"]
