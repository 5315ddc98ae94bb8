"""Monte Carlo studies: simulate a design, fit models, and see how well they recover the truth.

    >>> import hlm
    >>> from hlm.simulate import Design
    >>> design = Design.from_toml("examples/seed.toml")
    >>> result = hlm.study(design, ["perform ~ tutoring + (1|dist_id/school_id/teach_id/student_id)",
    ...                             "xtreg fe student_id"], reps=200, seed=1,
    ...                    grid={"levels.district.n": [5, 10, 50]})
    >>> result.summary()            # bias, RMSE, SE vs SD, coverage per model and parameter
    >>> result.report("study.html")  # a self-contained HTML report with plots

See :mod:`hlm.study.run` (seeding, parallelism), :mod:`hlm.study.models` (model strings,
parameter names), :mod:`hlm.study.truth` (true values for models that omit levels),
:mod:`hlm.study.result` (the summary's definitions).
"""

from hlm.study.models import StudyModel, fit_model
from hlm.study.result import StudyResult
from hlm.study.run import replicate_seed, study
from hlm.study.truth import Truth

__all__ = ["study", "StudyResult", "StudyModel", "Truth", "fit_model", "replicate_seed"]
