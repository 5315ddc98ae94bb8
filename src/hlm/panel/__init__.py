"""Linear panel-data estimators with Stata ``xtreg``'s numbers.

``xtreg(model, data, panel=..., estimator="re" | "fe" | "be" | "pooled")`` (``re`` by default, as
Stata's ``xtreg``) fits from one
pass of group-by aggregates (see :mod:`hlm.panel.stats`); ``hausman(fe, re)`` and
``xttest0(re)`` test the random-effects assumptions.
"""

from hlm.panel.hausman import HausmanTest, hausman
from hlm.panel.model import xtreg
from hlm.panel.results import PanelFit, TestStat
from hlm.panel.xttest0 import BreuschPaganTest, xttest0

__all__ = ["xtreg", "hausman", "xttest0", "PanelFit", "HausmanTest", "BreuschPaganTest", "TestStat"]
