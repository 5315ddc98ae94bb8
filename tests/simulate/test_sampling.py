"""Two-stage samples (hlm.simulate.sampling): PPS inclusion probabilities against their
definition by Monte Carlo, the weight columns' identities, Horvitz-Thompson unbiasedness of
the population size, the TOML form and the refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hlm.errors import OptionError
from hlm.simulate import Design, Level, simulate, simulate_to_parquet
from hlm.simulate.sampling import Sampling, pps_systematic

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_stage.toml"


def test_systematic_pps_has_the_stated_inclusion_probabilities() -> None:
    rng = np.random.default_rng(5)
    size = np.array([30.0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12])
    m, reps = 4, 20000
    hits = np.zeros(len(size))
    for _ in range(reps):
        picked, pi = pps_systematic(size, m, rng)
        assert len(picked) == m and len(set(picked)) == m
        hits[picked] += 1
    # unit 0 is taken with certainty; the others in proportion to size among the rest, m - 1 draws
    expect = np.concatenate([[1.0], 3 * size[1:] / size[1:].sum()])
    assert pi == pytest.approx(expect, rel=1e-12)
    mcse = np.sqrt(expect * (1 - expect) / reps)
    assert np.all(np.abs(hits / reps - expect) <= 4 * mcse + 1e-12)


def test_weight_columns_and_horvitz_thompson_population_size() -> None:
    design = Design.from_toml(EXAMPLE).set("sampling.informative_within", 0.8).set("sampling.unequal", 0.5)
    sizes = []
    for seed in range(60):
        f = simulate(design, seed=seed)
        assert f.school_id.nunique() <= 40
        assert np.allclose(f.w_student, f.w_student_cond * f.w_school, rtol=1e-12)
        assert (f.groupby("school_id").w_school.nunique() == 1).all()
        sizes.append(f.w_student.sum())
    # E[sum of the unconditional weights] = the population's students: 400 schools x 20 on average
    sizes = np.array(sizes)
    assert abs(sizes.mean() - 400 * 20) < 4 * sizes.std(ddof=1) / np.sqrt(len(sizes)) + 400 * 20 * 0.01


def test_effects_and_toml_round_trip() -> None:
    design = Design.from_toml(EXAMPLE)
    assert Design.from_dict(design.to_dict()) == design
    f = simulate(design, seed=1, effects=True)
    assert {"u_school", "residual", "w_student", "w_student_cond", "w_school"} <= set(f.columns)
    assert "u_school" not in simulate(design, seed=1).columns
    assert simulate(design, seed=1).equals(simulate(design, seed=1))


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="one-level design"):
        Design((Level("school", n=10, sd=1.0), Level("class", n=2, sd=1.0)), sampling=Sampling(clusters=3))
    with pytest.raises(OptionError, match="clusters"):
        Sampling(clusters=1)
    with pytest.raises(OptionError, match="unknown key"):
        Design.from_toml(EXAMPLE).set("sampling.stratum", 2)
    with pytest.raises(OptionError, match="use simulate"):
        simulate_to_parquet(Design.from_toml(EXAMPLE), tmp_path / "out", seed=1)
    with pytest.raises(OptionError, match="exceeds"):
        simulate(Design.from_toml(EXAMPLE).set("sampling.clusters", 401), seed=1)
