"""Sampling (survey) weights at every level: multilevel pseudo-maximum likelihood."""
