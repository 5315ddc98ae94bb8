"""The TOML form of a design, and dotted-path overrides (``--set levels.district.n=50``).

A design file (the seed's is ``examples/seed.toml``)::

    response = "perform"          # the response column
    residual_sd = 6.0

    [observations]                # repeated measures per innermost unit
    n = 2                         # or a count distribution: "Poisson(3, min=1)"
    name = "semester"             # occasion column (omit for none)

    [[levels]]                    # outermost first
    name = "district"
    id = "dist_id"                # id column (default <name>_id)
    n = 50                        # units per parent; "Poisson(5, min=1)", "UniformInt(3, 8)"
    sd = 2.0                      # SD of the random intercept
    # slopes = { tutoring = 0.5 } # SDs of random slopes
    # corr = 0.3                  # correlation of (intercept, slopes...): number or matrix

    [covariates]
    tutoring = "Bernoulli(0.2)"   # per observation, or a table:
    # tutoring = { dist = "Bernoulli(0.2)", level = "teacher" }

    [fixed]                       # coefficients; covariates not listed have 0
    intercept = 0.0
    tutoring = 2.0

    [outcome]                     # omit for a Gaussian response (y = eta + e)
    family = "binomial"           # y ~ Bernoulli(h(eta)), no residual (drop residual_sd)
    link = "logit"                # or "probit", "cloglog"; family = "poisson": link = "log"
    # threshold = 0.0             # instead: y = 1{eta + e > 0} (probit; keeps residual_sd)
    # latent = "perform"          # the latent column of a threshold

Unknown keys are errors that name the nearest valid key.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from hlm.errors import FileError, OptionError
from hlm.simulate.distributions import KINDS
from hlm.simulate.parts import Covariate, Level, Observations, Outcome
from hlm.simulate.sampling import Sampling

if TYPE_CHECKING:
    from hlm.simulate.design import Design

D = TypeVar("D", bound="Design")

DISTRIBUTIONS = tuple(KINDS.values())

TOP_KEYS = ("response", "residual_sd", "outcome", "observations", "levels", "covariates", "fixed", "sampling")
OUTCOME_KEYS = ("family", "link", "threshold", "latent")
LEVEL_KEYS = ("name", "id", "n", "sd", "slopes", "corr")
OBSERVATION_KEYS = ("n", "name")
COVARIATE_KEYS = ("dist", "level")


def _check_keys(data: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise OptionError(f"{where} must be a table, got {data!r}")
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"use {', '.join(allowed)}"
            raise OptionError(f"unknown key '{key}' in {where}; {hint}")
    return dict(data)


def _count_value(n: Any) -> Any:
    return n if isinstance(n, int) else str(n)


def design_to_dict(design: Design) -> dict[str, Any]:
    """The design as plain data (the TOML form); :func:`design_from_dict` reads it back."""
    obs: dict[str, Any] = {"n": _count_value(design.observations.n)}
    if design.observations.name is not None:
        obs["name"] = design.observations.name
    levels = []
    for lv in design.levels:
        item: dict[str, Any] = {"name": lv.name, "id": lv.id, "n": _count_value(lv.n), "sd": lv.sd}
        if lv.slopes:
            item["slopes"] = dict(lv.slopes)
            item["corr"] = lv.corr if isinstance(lv.corr, float) else [list(r) for r in lv.corr]
        levels.append(item)
    covariates: dict[str, Any] = {}
    for c in design.covariates:
        covariates[c.name] = {"dist": str(c.dist)} if c.level is None else {"dist": str(c.dist), "level": c.level}
    out: dict[str, Any] = {"response": design.response}
    if design.outcome.has_residual:
        out["residual_sd"] = design.residual_sd
    if design.outcome != Outcome():
        out["outcome"] = {k: v for k, v in vars(design.outcome).items() if v is not None}
    out |= {"observations": obs, "levels": levels, "covariates": covariates, "fixed": dict(design.fixed)}
    return out if design.sampling is None else {**out, "sampling": design.sampling.to_dict()}


def design_from_dict(data: Mapping[str, Any], cls: type[D]) -> D:
    """A design (of class ``cls``) from plain data (the TOML form); unknown keys and bad values
    are OptionErrors."""
    data = _check_keys(data, TOP_KEYS, "the design")
    raw_levels = data.get("levels")
    if not isinstance(raw_levels, list) or not raw_levels:
        raise OptionError("the design needs [[levels]] tables, outermost first, each with name, n and sd")
    levels = []
    for i, raw in enumerate(raw_levels):
        where = f"levels.{raw.get('name', i) if isinstance(raw, Mapping) else i}"
        item = _check_keys(raw, LEVEL_KEYS, where)
        if "name" not in item:
            raise OptionError(f'{where} needs a name, e.g. name = "district"')
        levels.append(Level(item.pop("name"), **item))
    obs = _check_keys(data.get("observations", {}), OBSERVATION_KEYS, "observations")
    covariates = []
    raw_covs = data.get("covariates", {})
    if not isinstance(raw_covs, Mapping):
        raise OptionError('covariates must be a table: name = "Bernoulli(0.2)" or name = { dist = ..., level = ... }')
    for name, spec in raw_covs.items():
        if isinstance(spec, (str, *DISTRIBUTIONS)):
            spec = {"dist": spec}
        spec = _check_keys(spec, COVARIATE_KEYS, f"covariates.{name}")
        if "dist" not in spec:
            raise OptionError(f'covariates.{name} needs a dist, e.g. dist = "Bernoulli(0.2)"')
        covariates.append(Covariate(name, spec["dist"], level=spec.get("level")))
    fixed = data.get("fixed", {})
    if not isinstance(fixed, Mapping):
        raise OptionError("fixed must be a table of coefficients, e.g. fixed = { intercept = 0, tutoring = 2 }")
    kwargs: dict[str, Any] = {"observations": Observations(**obs), "covariates": covariates, "fixed": fixed}
    if "outcome" in data:
        kwargs["outcome"] = Outcome(**_check_keys(data["outcome"], OUTCOME_KEYS, "outcome"))
        if "residual_sd" in data and not kwargs["outcome"].has_residual:
            raise OptionError(
                f"residual_sd: a {kwargs['outcome'].family} outcome has no residual (the draw is from the mean); "
                "drop residual_sd, or give outcome.threshold for a cut latent response"
            )
    for key in ("response", "residual_sd"):
        if key in data:
            kwargs[key] = data[key]
    if "sampling" in data:
        if not isinstance(data["sampling"], Mapping):
            raise OptionError("sampling must be a table: [sampling] clusters = 40 ...")
        kwargs["sampling"] = Sampling.from_dict(data["sampling"])
    return cls(tuple(levels), **kwargs)


def read_design(path: str | os.PathLike, cls: type[D]) -> D:
    """Read a design file; problems are FileErrors (file) or OptionErrors (content)."""
    p = Path(path)
    if not p.is_file():
        raise FileError(f"design file '{path}' does not exist; check the path (see examples/seed.toml)")
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise FileError(f"design file '{path}' is not valid TOML: {exc}") from None
    except OSError as exc:
        raise FileError(f"cannot read design file '{path}': {exc.strerror or exc}") from None
    try:
        return design_from_dict(data, cls)
    except OptionError as exc:
        raise OptionError(f"in '{path}': {exc}") from None


def write_design(design: Design, path: str | os.PathLike | None = None) -> str:
    """The design as TOML text; written to ``path`` (replacing it whole) when given."""
    text = tomli_w.dumps(design_to_dict(design))
    if path is not None:
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise FileError(f"cannot write '{path}': {exc.strerror or exc}") from None
    return text


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal (``50``, ``2.5``, ``[[1, 0.3], [0.3, 1]]``, ``"x"``), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split ``KEY=VALUE`` (a ``--set`` argument) into the path and its parsed value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise OptionError(f"--set needs KEY=VALUE, e.g. --set levels.district.n=50; got '{text}'")
    return key.strip(), parse_value(value)


def set_path(design: D, path: str, value: Any) -> D:
    """A copy of ``design`` with the value at a dotted path replaced.

    Levels are addressed by name (``levels.school.sd``); missing tables on the way are
    created (``levels.student.slopes.tutoring``), and the result is validated whole.
    """
    parts = [p for p in str(path).split(".")]
    if not parts or any(not p for p in parts):
        raise OptionError(f"'{path}' is not a dotted path such as levels.district.n")
    data = design_to_dict(design)
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):  # the levels, addressed by name
            match = [item for item in node if item.get("name") == part]
            if not match:
                names = [item.get("name") for item in node]
                raise OptionError(f"cannot set '{path}': no level '{part}'; the levels are {', '.join(names)}")
            node = match[0]
        elif isinstance(node, dict):
            if depth == 0 and part not in TOP_KEYS:
                _check_keys({part: None}, TOP_KEYS, "the design")
            if part not in node:
                node[part] = {}
            elif isinstance(node[part], str) and where.startswith("covariates."):
                node[part] = {"dist": node[part]}
            node = node[part]
        else:
            raise OptionError(f"cannot set '{path}': '{'.'.join(parts[:depth])}' is a value, not a table")
    if isinstance(node, list):
        raise OptionError(f"cannot set '{path}': name a level, e.g. levels.{node[0]['name']}.n")
    if not isinstance(node, dict):
        raise OptionError(f"cannot set '{path}': its parent is a value, not a table")
    if len(parts) == 1 and parts[0] not in TOP_KEYS:
        _check_keys({parts[0]: None}, TOP_KEYS, "the design")
    node[parts[-1]] = value
    if parts[0] == "outcome" and "residual_sd" in data:  # a family without residual has no residual_sd
        if not Outcome(**_check_keys(data["outcome"], OUTCOME_KEYS, "outcome")).has_residual:
            del data["residual_sd"]
    return design_from_dict(data, type(design))
