"""hlm: hierarchical (multilevel) linear models fitted from sufficient statistics.

>>> import hlm
>>> m = hlm.fit("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv")
>>> m.fixef, m.varcorr, m.summary()

``import hlm`` loads no numerical library: each public name is imported from its module on
first use (PEP 562 module ``__getattr__``), so ``import hlm`` and ``hlm --help`` start at once
and numba, scipy, duckdb, pyspark or matplotlib load only when a feature needs them.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hlm import power as power  # hlm.power: analytic power, MDES, sample size and budgets
    from hlm.api import Fit, fit
    from hlm.diagnose import NestingReport, nesting
    from hlm.errors import (
        ColumnError,
        ComparisonError,
        ConvergenceWarning,
        DataError,
        FileError,
        FormulaError,
        HLMError,
        HLMWarning,
        IdentifiabilityError,
        NestingError,
        OptionError,
        SingularFitWarning,
        StructureWarning,
    )
    from hlm.inference.likelihood_ratio import anova, compare, lrtest
    from hlm.panel import PanelFit, hausman, xtreg, xttest0
    from hlm.predict import write_predictions, write_ranef
    from hlm.spec import ModelSpec, parse_model
    from hlm.study import StudyResult, study

    __version__: str

# public name -> the module it is imported from on first use
_WHERE = {
    "fit": "hlm.api",
    "Fit": "hlm.api",
    "ModelSpec": "hlm.spec",
    "parse_model": "hlm.spec",
    "lrtest": "hlm.inference.likelihood_ratio",
    "compare": "hlm.inference.likelihood_ratio",
    "anova": "hlm.inference.likelihood_ratio",
    "xtreg": "hlm.panel",
    "hausman": "hlm.panel",
    "xttest0": "hlm.panel",
    "PanelFit": "hlm.panel",
    "study": "hlm.study",
    "StudyResult": "hlm.study",
    "write_predictions": "hlm.predict",
    "write_ranef": "hlm.predict",
    "nesting": "hlm.diagnose",
    "NestingReport": "hlm.diagnose",
    **{
        name: "hlm.errors"
        for name in (
            "HLMError",
            "HLMWarning",
            "FormulaError",
            "ColumnError",
            "DataError",
            "FileError",
            "NestingError",
            "IdentifiabilityError",
            "ComparisonError",
            "OptionError",
            "ConvergenceWarning",
            "SingularFitWarning",
            "StructureWarning",
        )
    },
}

__all__ = [
    "fit",
    "Fit",
    "ModelSpec",
    "parse_model",
    "lrtest",
    "compare",
    "anova",
    "xtreg",
    "hausman",
    "xttest0",
    "PanelFit",
    "study",
    "StudyResult",
    "write_predictions",
    "write_ranef",
    "power",
    "HLMError",
    "HLMWarning",
    "FormulaError",
    "ColumnError",
    "DataError",
    "FileError",
    "NestingError",
    "IdentifiabilityError",
    "ComparisonError",
    "OptionError",
    "nesting",
    "NestingReport",
    "ConvergenceWarning",
    "SingularFitWarning",
    "StructureWarning",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a subpackage) from its module on first use and keep it here."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value: Any = version("hlm")
        except PackageNotFoundError:  # run from a source tree that was never installed
            value = "unknown"
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:  # a subpackage (hlm.power, hlm.simulate, ...), as after an eager import
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'hlm' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"__version__"})


class _Package(types.ModuleType):
    """hlm's module type: the import system binds a loaded subpackage on its parent
    (``hlm.study`` the package), which would hide the function of the same name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE:
            return  # hlm.<name> stays the public function; the package is sys.modules["hlm.<name>"]
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
