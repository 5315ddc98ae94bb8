"""The model specification shared by both syntaxes.

A :class:`ModelSpec` is what a model string means, independent of the data:

    y = X beta + sum_j Z_j b_j + e,   b_j ~ N(0, sigma^2 Lambda_j Lambda_j'),   e ~ N(0, sigma^2 I)

``fixed`` is the right-hand side of the fixed part as a formulaic formula; each
:class:`RandomTerm` names the columns of one Z_j and the grouping factor (the interaction of
one or more data columns) whose levels index the blocks of b_j.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Syntax = Literal["lme4", "stata"]
CovKind = Literal["unstructured", "identity", "exchangeable"]


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | group)``: its q effects are jointly normal with
    covariance Sigma of kind ``cov``:

    * unstructured: any positive semi-definite Sigma (q (q + 1) / 2 parameters);
    * identity (Stata's ``cov(identity)``): Sigma = s^2 I, one shared variance;
    * exchangeable (``cov(exchangeable)``): Sigma = s^2 [(1 - r) I + r J], one variance
      and one covariance, -1/(q - 1) <= r <= 1.

    Independent effects (``||``, ``cov(independent)``) are separate terms on the same
    grouping factor, as lme4 expands them.

    Attributes
    ----------
    columns : formulaic expressions of the random slopes (the intercept is not listed).
    intercept : whether the term has a random intercept.
    group : data columns whose interaction is the grouping factor, outermost first.
    name : the factor's display name (lme4: ``cask:batch``; Stata: the level variable).
    cov : the covariance structure (above).
    """

    columns: tuple[str, ...]
    intercept: bool
    group: tuple[str, ...]
    name: str
    cov: CovKind = "unstructured"

    @property
    def rhs(self) -> str:
        """The term's Z columns as a formulaic right-hand side."""
        parts = ["1" if self.intercept else "0", *self.columns]
        return " + ".join(parts)

    @property
    def ncols(self) -> int:
        """Number of random-effect columns when every expression is one column."""
        return int(self.intercept) + len(self.columns)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model: response, fixed right-hand side and random terms.

    ``reml`` is the criterion the model string asks for (Stata's ``, reml`` / ``, mle`` or the
    default of its leading command), None when it says nothing; ``command`` is that leading
    command (``mixed``, ``xtmixed``) or None."""

    text: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]
    syntax: Syntax = "lme4"
    reml: bool | None = None
    command: str | None = None

    @property
    def intercept_name(self) -> str:
        """The fixed intercept's label in this syntax's output."""
        return "_cons" if self.syntax == "stata" else "(Intercept)"

    @property
    def group_columns(self) -> tuple[str, ...]:
        """All data columns used to form grouping factors, in first-use order."""
        seen: dict[str, None] = {}
        for term in self.random:
            for col in term.group:
                seen.setdefault(col, None)
        return tuple(seen)

    def with_random(self, random: tuple[RandomTerm, ...]) -> ModelSpec:
        """A copy with other random terms (used to reorder reversed nesting)."""
        return replace(self, random=random)
