"""hlm: hierarchical (multilevel) linear models fitted from sufficient statistics.

>>> import hlm
>>> m = hlm.fit("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv")
>>> m.fixef, m.varcorr, m.summary()
"""

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
from hlm.inference.likelihood_ratio import compare, lrtest
from hlm.panel import PanelFit, hausman, xtreg, xttest0
from hlm.predict import write_predictions, write_ranef
from hlm.spec import ModelSpec, parse_model
from hlm.study import StudyResult, study

__version__ = "0.1.0"

__all__ = [
    "fit",
    "Fit",
    "ModelSpec",
    "parse_model",
    "lrtest",
    "compare",
    "xtreg",
    "hausman",
    "xttest0",
    "PanelFit",
    "study",
    "StudyResult",
    "write_predictions",
    "write_ranef",
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
