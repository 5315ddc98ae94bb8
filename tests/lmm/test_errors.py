"""Bad input through the API: each problem raises its own hlm.HLMError subclass with a
one-line message naming the problem and the fix (formula errors add the text and a caret)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hlm
import support
from hlm.errors import (
    ColumnError,
    ComparisonError,
    DataError,
    FileError,
    FormulaError,
    HLMError,
    IdentifiabilityError,
    NestingError,
    OptionError,
)

DATA = support.DATA
MODEL = "Reaction ~ Days + (1|Subject)"


@pytest.fixture()
def sleep() -> pd.DataFrame:
    return pd.read_csv(DATA / "sleepstudy.csv")


def _fit(model, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hlm.fit(model, data, **kw)


def test_all_errors_are_hlm_errors():
    for cls in (
        ColumnError,
        ComparisonError,
        DataError,
        FileError,
        FormulaError,
        IdentifiabilityError,
        NestingError,
        OptionError,
    ):
        assert issubclass(cls, HLMError)


def test_missing_column(sleep):
    with pytest.raises(ColumnError, match=r"column 'Age' is not in the data; the data has Reaction, Days, Subject"):
        _fit("Reaction ~ Age + (1|Subject)", sleep)


def test_misspelt_column_suggests_the_closest(sleep):
    with pytest.raises(ColumnError, match=r"column 'Dyas' is not in the data; did you mean 'Days'\?"):
        _fit("Reaction ~ Dyas + (1|Subject)", sleep)
    with pytest.raises(ColumnError, match=r"did you mean 'Subject'\?"):
        _fit("Reaction Days || Subjet:", sleep)


def test_non_numeric_response(sleep):
    sleep["Reaction"] = sleep["Reaction"].astype(str) + " ms"
    with pytest.raises(DataError, match=r"the response 'Reaction' is not numeric.*convert it"):
        _fit(MODEL, sleep)


def test_constant_predictor_dropped_with_a_note(sleep):
    fit = _fit("Reaction ~ Days + site + (1|Subject)", sleep.assign(site=3.0))
    assert "omitted because of collinearity: site" in fit.notes
    assert list(fit.fixef.index) == ["(Intercept)", "Days"]
    assert "note: omitted because of collinearity: site" in fit.summary()


def test_collinear_predictor_dropped_with_a_note(sleep):
    fit = _fit("Reaction Days weeks hours || Subject:", sleep.assign(weeks=sleep["Days"] / 7, hours=24 * sleep["Days"]))
    assert fit.dropped_columns == ("weeks", "hours")
    assert "Note: omitted because of collinearity: weeks, hours." in fit.summary(style="stata")
    reference = _fit("Reaction Days || Subject:", sleep)
    assert fit.fixef["Days"] == pytest.approx(reference.fixef["Days"], rel=1e-8)


def test_all_rows_missing(sleep):
    with pytest.raises(DataError, match="every row has a missing value in a model column"):
        _fit(MODEL, sleep.assign(Days=np.nan))


def test_empty_data(sleep):
    with pytest.raises(DataError, match="the data has no rows"):
        _fit(MODEL, sleep.iloc[:0])


def test_missing_values_dropped_with_a_note(sleep):
    sleep.loc[sleep["Days"] == 3, "Reaction"] = np.nan
    fit = _fit(MODEL, sleep)
    assert fit.nobs == 162 and "18 rows dropped for missing values" in fit.notes


def test_infinite_values(sleep):
    with pytest.raises(DataError, match=r"column 'Days' has infinite values; remove or recode them"):
        _fit(MODEL, sleep.assign(Days=sleep["Days"].replace(3, np.inf)))


def test_grouping_factor_with_one_level(sleep):
    with pytest.raises(IdentifiabilityError, match=r"grouping factor 'Subject' has one group \('308'\)"):
        _fit(MODEL, sleep[sleep["Subject"] == 308])


def test_formula_syntax_error_shows_a_caret(sleep):
    with pytest.raises(FormulaError) as err:
        _fit("Reaction ~ Days + (1|Subject", sleep)
    lines = str(err.value).splitlines()
    assert lines[0] == "unclosed '('; add the missing ')'"
    assert lines[1].strip() == "Reaction ~ Days + (1|Subject"
    assert lines[2].index("^") == lines[1].index("Reaction") + len("Reaction ~ Days + (1|Subject")
    with pytest.raises(FormulaError, match=r"unknown option 'foo'"):
        _fit("Reaction Days || Subject: , foo", sleep)


def test_binary_garbage_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(bytes(range(256)) * 8)
    for backend in ("auto", "memory"):
        with pytest.raises(FileError, match="is not a text \\(CSV\\) file"):
            _fit(MODEL, path, backend=backend)


def test_text_file_named_parquet(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_text("Reaction,Days,Subject\n1,2,3\n")
    for backend in ("auto", "memory"):
        with pytest.raises(FileError, match="is not a Parquet file"):
            _fit(MODEL, path, backend=backend)


def test_unknown_extension_missing_and_empty_files(tmp_path):
    with pytest.raises(FileError, match=r"unsupported file type '\.xlsx'; use \.csv, \.parquet or \.dta"):
        _fit(MODEL, tmp_path / "data.xlsx")
    with pytest.raises(FileError, match="does not exist"):
        _fit(MODEL, tmp_path / "nothere.csv")
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(FileError, match=r"is empty \(0 bytes\)"):
        _fit(MODEL, tmp_path / "zero.csv")
    (tmp_path / "header.csv").write_text("Reaction,Days,Subject\n")
    with pytest.raises(DataError, match="the data has no rows"):
        _fit(MODEL, tmp_path / "header.csv")


def test_unsupported_data_object():
    with pytest.raises(DataError, match="cannot use data of type list"):
        _fit(MODEL, [1, 2, 3])


def test_unknown_option(sleep):
    with pytest.raises(OptionError, match="unknown backend 'fast'"):
        _fit(MODEL, sleep, backend="fast")
    fit = _fit(MODEL, sleep)
    with pytest.raises(OptionError, match="style must be 'lme4' or 'stata'"):
        fit.summary(style="spss")


def test_reml_comparison_of_different_fixed_effects_refused(sleep):
    small, big = _fit("Reaction ~ 1 + (1|Subject)", sleep), _fit(MODEL, sleep)
    with pytest.raises(ComparisonError, match="REML"):
        hlm.lrtest(small, big)
