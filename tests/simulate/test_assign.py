"""Assign(p): a treatment given to exactly p of the units inside each parent unit."""

from __future__ import annotations

import numpy as np
import pytest

from hlm.errors import OptionError
from hlm.simulate import Design, parse_distribution, simulate


def _design(dist: str, level: str | None, students: object = 6) -> Design:
    base = Design.from_toml("examples/seed.toml").set("levels.district.n", 7).set("levels.student.n", students)
    return base.set("covariates.tutoring", {"dist": dist} if level is None else {"dist": dist, "level": level})


def test_exactly_p_within_each_parent():
    frame = simulate(_design("Assign(0.25)", "teacher"), seed=4)
    per_teacher = frame.groupby("teach_id")["tutoring"].agg(["min", "max"])
    assert (per_teacher["min"] == per_teacher["max"]).all()  # constant within a teacher
    treated = frame.groupby(["school_id", "teach_id"])["tutoring"].first().groupby("school_id").sum()
    assert (treated == 2).all()  # 8 teachers per school, p = 0.25
    top = simulate(_design("Assign(0.5)", "district").set("levels.district.n", 10), seed=4)
    assert top.groupby("dist_id")["tutoring"].first().sum() == 5  # the outermost level: of all its units


def test_per_observation_and_unbalanced_parents():
    frame = simulate(_design("Assign(0.5)", None).set("observations.n", 4), seed=2)
    assert (frame.groupby("student_id")["tutoring"].sum() == 2).all()  # within each student
    unbalanced = simulate(_design("Assign(0.5)", "student", "UniformInt(2, 9)"), seed=3)
    per_teacher = unbalanced.groupby(["teach_id", "student_id"])["tutoring"].first().groupby("teach_id")
    n, k = per_teacher.size(), per_teacher.sum()
    assert ((k == np.floor(n / 2)) | (k == np.ceil(n / 2))).all()  # p n rounded at random when fractional


def test_fractional_share_is_right_on_average():
    frame = simulate(_design("Assign(0.3)", "teacher"), seed=9)  # 8 x 0.3 = 2.4 per school
    treated = frame.groupby(["school_id", "teach_id"])["tutoring"].first().groupby("school_id").sum()
    assert set(treated) <= {2, 3}
    assert treated.mean() == pytest.approx(2.4, abs=3 * 0.49 / np.sqrt(len(treated)))


def test_text_form_and_refusals():
    assert str(parse_distribution("Assign(0.5)")) == "Assign(0.5)"
    assert "Assign(0.5)" in _design("Assign(0.5)", "teacher").to_toml()
    with pytest.raises(OptionError, match="treated proportion"):
        parse_distribution("Assign(1.5)")
