"""Numerical building blocks shared by every model family: the BOBYQA wrapper and numerical
derivatives."""
