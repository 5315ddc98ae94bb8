"""Response distributions and links of the GLMMs: the family/link record and the links'
functions.  The log-density, score and PIRLS weight per row are the compiled kernels of
:mod:`hlm.glmm.kernels` (and the data-only constant :func:`hlm.glmm.rows.constant_part`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from hlm.errors import OptionError

FAMILIES = ("binomial", "poisson", "negative_binomial")
LINKS = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",), "negative_binomial": ("log",)}


def inverse_link(link: str, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mu and dmu/deta."""
    if link == "logit":
        mu = special.expit(eta)
        return mu, mu * (1.0 - mu)
    if link == "probit":
        return stats.norm.cdf(eta), stats.norm.pdf(eta)
    if link == "cloglog":
        e = np.exp(np.minimum(eta, 700.0))
        return -np.expm1(-e), e * np.exp(-e)
    mu = np.exp(eta)
    return mu, mu


def link_function(link: str, mu: np.ndarray) -> np.ndarray:
    """eta = g(mu)."""
    if link == "logit":
        return special.logit(mu)
    if link == "probit":
        return stats.norm.ppf(mu)
    if link == "cloglog":
        return np.log(-np.log1p(-mu))
    return np.log(mu)


@dataclass(frozen=True)
class Family:
    """A family and link; ``phi`` is the nbinom2 size (None for the others)."""

    name: str
    link: str
    phi: float | None = None

    @staticmethod
    def of(name: str, link: str | None) -> Family:
        if name not in FAMILIES:
            raise OptionError(f"family must be one of 'gaussian', {', '.join(map(repr, FAMILIES))}; not {name!r}")
        link = link or LINKS[name][0]
        if link not in LINKS[name]:
            raise OptionError(f"link {link!r} is not available for {name}; use one of {', '.join(LINKS[name])}")
        return Family(name, link)

    def mean(self, eta: np.ndarray) -> np.ndarray:
        """mu on the response scale (a probability for the binomial)."""
        return inverse_link(self.link, eta)[0]
