"""The columns of a study's summary tables (:meth:`hlm.study.result.StudyResult.summary`, ``fit_summary``)."""

SUMMARY_COLUMNS = [
    "model",
    "parameter",
    "kind",
    "truth",
    "n",
    "mean",
    "bias",
    "rel_bias",
    "rmse",
    "sd",
    "mean_se",
    "coverage",
    "coverage_mcse",
    "n_ci",
    "converged",
    "singular",
    "failed",
    "seconds",
    "reason",
]
FIT_SUMMARY_COLUMNS = [
    "model",
    "n_fits",
    "converged",
    "singular",
    "failed",
    "seconds",
    "seconds_ci",
    "seconds_simulate",
    "reason",
]
