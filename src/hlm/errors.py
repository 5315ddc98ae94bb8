"""Errors and warnings raised by hlm.

Every problem hlm detects in a user's input is an :class:`HLMError` subclass whose message
is one line naming the problem and the fix.  The CLI prints that line as ``error: ...``
and exits with status 2; nothing else (no traceback) reaches the terminal.
"""

from __future__ import annotations


class HLMError(Exception):
    """Base class of every error hlm raises on purpose."""


class FormulaError(HLMError, ValueError):
    """A model string (lme4 formula or Stata syntax) could not be parsed."""

    def __init__(self, message: str, text: str | None = None, pos: int | None = None):
        self.text = text
        self.pos = pos
        if text is not None and pos is not None:
            caret = " " * pos + "^"
            message = f"{message}\n  {text}\n  {caret}"
        super().__init__(message)


class ColumnError(HLMError, KeyError):
    """A column named in the model is not in the data."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(HLMError, ValueError):
    """The data cannot be used as given (empty, non-numeric, non-finite, ...)."""


class FileError(HLMError, OSError):
    """A data file is missing, unreadable or of an unsupported type."""


class NestingError(HLMError, ValueError):
    """The grouping factors are nested in an impossible or reversed order."""


class IdentifiabilityError(HLMError, ValueError):
    """The random-effects structure cannot be estimated from this data."""


class ComparisonError(HLMError, ValueError):
    """Two fits cannot be compared as asked (e.g. REML fits with different fixed effects)."""


class OptionError(HLMError, ValueError):
    """An unknown or inconsistent option was given."""


class HLMWarning(UserWarning):
    """Base class of hlm's warnings."""


class ConvergenceWarning(HLMWarning):
    """The optimizer's result does not pass the convergence checks."""


class SingularFitWarning(HLMWarning):
    """A variance component was estimated on the boundary (zero variance or |corr| = 1)."""


class StructureWarning(HLMWarning):
    """The grouping structure looks unintended (e.g. implicitly nested ids used as crossed)."""


class SeparationWarning(HLMWarning):
    """A GLMM fixed effect runs off to +-infinity (the outcome is perfectly predicted)."""
