"""Response distributions and links of the GLMMs: the conditional log-density of y given the
linear predictor eta, its eta-score and the PIRLS weight.

For a mean m = n mu(eta) (n trials for the binomial, 1 otherwise) with variance V,
d log p / d eta = (y - m) / V * dm/deta and the expected (Fisher, lme4's) weight is
(dm/deta)^2 / V; for canonical links (logit, log with Poisson) it equals the observed one.
The negative binomial (nbinom2, Var = mu + mu^2/phi, log link) uses the observed weight
phi mu (phi + y) / (mu + phi)^2, as glmmTMB's Laplace does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from hlm.errors import OptionError

FAMILIES = ("binomial", "poisson", "negative_binomial")
LINKS = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",), "negative_binomial": ("log",)}
_EPS = 1e-12


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

    def loglik(self, y: np.ndarray, n: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """The full log p(y_i | eta_i): log choose(n, y) and -log y! included."""
        mu = self.mean(eta)
        if self.name == "binomial":
            mu = np.clip(mu, _EPS, 1.0 - _EPS)
            choose = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
            return choose + special.xlogy(y, mu) + special.xlogy(n - y, 1.0 - mu)
        if self.name == "poisson":
            return special.xlogy(y, mu) - mu - special.gammaln(y + 1)
        phi = float(self.phi)  # type: ignore[arg-type]
        return (
            special.gammaln(y + phi)
            - special.gammaln(phi)
            - special.gammaln(y + 1)
            + phi * (np.log(phi) - np.log(phi + mu))
            + special.xlogy(y, mu)
            - special.xlogy(y, phi + mu)
        )

    def score_weight(self, y: np.ndarray, n: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """d log p / d eta and the PIRLS weight (see the module docstring) per row."""
        mu, dmu = inverse_link(self.link, eta)
        if self.name == "negative_binomial":
            phi = float(self.phi)  # type: ignore[arg-type]
            return phi * (y - mu) / (mu + phi), phi * mu * (phi + y) / (mu + phi) ** 2
        if self.name == "binomial":
            mu = np.clip(mu, _EPS, 1.0 - _EPS)
            var = n * mu * (1.0 - mu)
        else:
            var = np.maximum(mu, _EPS)
        dm = n * dmu
        return (y - n * mu) / var * dm, dm * dm / var
