"""Inference after the fit: variance-component SEs and CIs, confidence intervals (Wald,
profile, bootstrap), likelihood-ratio tests and fixed-effect tests with Satterthwaite or
Kenward-Roger df.  Everything works from the aggregates a fitted record (:class:`~hlm.lmm.result.LmmResult`) carries."""

from hlm.inference.bootstrap import BootResult, boot_confint, bootstrap
from hlm.inference.confint import confint, wald_confint
from hlm.inference.ddf import fixed_effects_table, kenward_roger_df, satterthwaite_df, wald_slopes
from hlm.inference.likelihood_ratio import LRTest, compare, lr_vs_linear, lrtest, refit_ml
from hlm.inference.profile import profile_confint
from hlm.inference.varcomp import varcomp, varcomp_vcov

__all__ = [
    "BootResult",
    "LRTest",
    "boot_confint",
    "bootstrap",
    "compare",
    "confint",
    "fixed_effects_table",
    "kenward_roger_df",
    "lr_vs_linear",
    "lrtest",
    "profile_confint",
    "refit_ml",
    "satterthwaite_df",
    "varcomp",
    "varcomp_vcov",
    "wald_confint",
    "wald_slopes",
]
