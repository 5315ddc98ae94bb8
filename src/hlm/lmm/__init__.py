"""The linear mixed model: its fitting stages (:mod:`hlm.lmm.pipeline`) and the immutable
record every feature builds on (:mod:`hlm.lmm.result`)."""
