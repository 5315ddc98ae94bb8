"""CLI command: power (see hlm.cli.app for error handling).

    hlm power DESIGN --sizes 20,15 --icc 0.17                      # MDES
    hlm power DESIGN --sizes 20,15 --icc 0.17 --effect 0.25        # power
    hlm power DESIGN --sizes ?,15 --icc 0.17 --effect 0.25         # clusters needed
    hlm power DESIGN --icc 0.17 --costs 300,10 --budget 20000      # best allocation (or --target MDES)
    hlm power DESIGN --icc 0.17 --costs 300,10 --budget 1e4,2e4,4e4 --plot mdes.png   # MDES against cost
    hlm power sd --sizes ?,10,20 --icc 0.1,0.2 --margin 0.25       # top units for the top SD within +-25%
    hlm power examples/seed.toml --model MODEL --term tutoring --vary levels.district.n=5,10,20 --plot curve.png

DESIGN is cra2, cra3, cra4, bira2 or bira3, or ``sd`` for the precision of the top level's SD
in a balanced nested design, or a design file (simulated power, see :mod:`hlm.cli.power_simulation`);
lists are comma-separated, outermost level first (``--r2`` ends
with level 1).  See :mod:`hlm.power`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, overload

import typer

from hlm.cli.app import app
from hlm.cli.power_simulation import simulated
from hlm.errors import OptionError


@overload
def _numbers(flag: str, text: str, missing: bool = False) -> tuple: ...
@overload
def _numbers(flag: str, text: str | None, missing: bool = False) -> tuple | None: ...
def _numbers(flag: str, text: str | None, missing: bool = False) -> tuple | None:
    """Parse a comma-separated list; ``?`` marks a missing entry where ``missing``."""
    if text is None:
        return None
    out: list[float | None] = []
    for item in text.split(","):
        item = item.strip()
        if missing and item == "?":
            out.append(None)
            continue
        try:
            out.append(float(item))
        except ValueError:
            hint = " (or ? for the size to solve for)" if missing else ""
            raise OptionError(f"{flag}: '{item}' is not a number{hint}") from None
    return tuple(out)


def _show(values: tuple) -> str:
    return " x ".join("?" if v is None else f"{v:g}" for v in values)


@app.command("power")
def power_command(
    design: str = typer.Argument(
        ...,
        help="Design: cra2, cra3, cra4 (cluster assignment), bira2, bira3 (blocked), "
        "sd (precision of the top level's SD), or a design file (.toml) for power by simulation.",
    ),
    sizes: str | None = typer.Option(
        None,
        "--sizes",
        help="Units per level, outermost first, e.g. 40,20 (clusters, per cluster); ? = solve for it.",
    ),
    icc: str | None = typer.Option(None, "--icc", help="ICCs of levels L..2, outermost first, e.g. 0.06,0.17."),
    effect: float | None = typer.Option(
        None, "--effect", help="Standardised effect: report power (or a sample size); with a design file: the term's."
    ),
    r2: str | None = typer.Option(None, "--r2", help="Covariate R^2 per level, outermost first, ending with level 1."),
    omega: str | None = typer.Option(None, "--omega", help="bira: treatment-effect heterogeneity per block level."),
    p: float = typer.Option(0.5, "--p", help="Treated proportion."),
    alpha: float = typer.Option(0.05, "--alpha", help="Type I error rate."),
    target_power: float = typer.Option(0.8, "--power", help="Target power (for the MDES and sample sizes)."),
    covariates: int = typer.Option(0, "--covariates", help="Number of top-level covariates (reduces the df)."),
    one_sided: bool = typer.Option(False, "--one-sided", help="One-sided test (default two-sided)."),
    costs: str | None = typer.Option(None, "--costs", help="Cost per unit at each level, outermost first."),
    budget: str | None = typer.Option(
        None,
        "--budget",
        help="With --costs: minimise the MDES within this budget; several (comma-separated): the best "
        "allocation at each (with --plot: MDES against cost).",
    ),
    target: float | None = typer.Option(None, "--target", help="With --costs: the cheapest design with this MDES."),
    margin: float | None = typer.Option(None, "--margin", help="sd: the SD's relative margin to reach, e.g. 0.25."),
    confidence: float = typer.Option(0.95, "--confidence", help="sd: confidence level of the margin."),
    model: str | None = typer.Option(None, "--model", "-m", help="Design file: the mixed model to fit."),
    term: str | None = typer.Option(None, "--term", help="Design file: the fixed effect to test."),
    vary: list[str] | None = typer.Option(None, "--vary", help="Design file: KEY=V1,V2,... (repeatable)."),
    reps: int = typer.Option(1000, "--reps", "-r", help="Design file: replicates per design point."),
    seed: int = typer.Option(0, "--seed", help="Design file: the simulation's seed."),
    test: str = typer.Option("wald", "--test", help="Design file: wald, satterthwaite or lrt."),
    jobs: int | None = typer.Option(None, "--jobs", "-j", help="Design file: worker processes (default: CPUs)."),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Design file: write the power curve; --costs with several --budget values: the MDES against "
        "cost (png, pdf, svg).",
    ),
    report: Path | None = typer.Option(None, "--report", help="Design file: write an HTML report."),
) -> None:
    """Analytic MDES, power, sample size or budget allocation for a multilevel randomised design;
    with a design file, the power of a mixed model's test by simulation."""
    if design.endswith(".toml") or Path(design).is_file():
        what = (model, term, effect)
        simulated(design, vary or [], test, jobs, plot, report, what=what, alpha=alpha, reps=reps, seed=seed)
        return
    if icc is None:
        raise OptionError("--icc is required (ICCs of levels L..2, outermost first)")
    common: dict[str, Any] = {
        "r2": _numbers("--r2", r2),
        "omega": _numbers("--omega", omega),
        "p": p,
        "alpha": alpha,
        "covariates": covariates,
        "two_sided": not one_sided,
    }
    asked: dict[str, Any] = {"margin": margin, "confidence": confidence, "costs": costs, "target": target}
    asked.update(plot=plot, budget=_numbers("--budget", budget))
    _analytic_command(
        design,
        _numbers("--sizes", sizes, missing=True),
        _numbers("--icc", icc),
        effect,
        target_power,
        one_sided,
        common,
        asked,
    )


def _analytic_command(
    design: str,
    size_values: tuple | None,
    icc_values: tuple,
    effect: float | None,
    target_power: float,
    one_sided: bool,
    common: dict[str, Any],
    asked: dict[str, Any],
) -> None:
    """The analytic answers: the SD's precision, an allocation, a sample size, power or the MDES."""
    margin, costs, budget, target = asked["margin"], asked["costs"], asked["budget"], asked["target"]
    if asked["plot"] is not None and (costs is None or budget is None or len(budget) < 2):
        raise OptionError(
            "--plot with an analytic design draws the MDES against cost: give --costs and two or more "
            "--budget values (a design file draws a power curve)"
        )
    if design == "sd":
        given = {
            "--effect": effect,
            "--r2": common["r2"],
            "--omega": common["omega"],
            "--costs": costs,
            "--budget": budget,
            "--target": target,
        }
        unused = [f for f, v in given.items() if v is not None]
        _sd_precision(size_values, icc_values, margin, asked["confidence"], unused)
        return
    if margin is not None:
        raise OptionError("--margin applies to 'hlm power sd' (the precision of the top level's SD)")
    test = f"alpha {common['alpha']:g} {'one' if one_sided else 'two'}-sided"
    if costs is not None:
        if effect is not None:
            raise OptionError("--effect does not apply with --costs (give --budget or --target)")
        if budget is not None and len(budget) > 1 and target is not None:
            raise OptionError("give either several --budget values or --target, not both")
        cost_values = _numbers("--costs", costs)
        if asked["plot"] is not None:  # first: a bad file or budget is the only output
            _mdes_cost_plot(design, cost_values, icc_values, budget, size_values, target_power, common, asked["plot"])
        for one in budget or (None,):
            _allocation(design, cost_values, icc_values, one, target, size_values, target_power, test, common)
        if asked["plot"] is not None:
            typer.echo(f"wrote {asked['plot']}")
        return
    if budget is not None or target is not None:
        raise OptionError("--budget and --target need --costs (the cost per unit at each level)")
    _analytic(design, size_values, icc_values, effect, target_power, test, common)


def _allocation(
    design: str,
    costs: tuple,
    icc: tuple,
    budget: float | None,
    target: float | None,
    sizes: tuple | None,
    target_power: float,
    test: str,
    common: dict[str, Any],
) -> None:
    """``--costs``: the integer allocation for a budget or a target MDES, and the continuous optimum."""
    from hlm.power import allocate

    best = allocate(
        design,
        costs,
        icc,
        budget=budget,
        target=target,
        sizes=sizes,
        power=target_power,
        **common,
    )
    typer.echo(
        f"{design}: best sizes {_show(best.sizes)}, cost {best.cost:g}, MDES {best.mdes:.4f} "
        f"({test}, power {target_power:g})"
    )
    if best.continuous is not None:
        shown = " x ".join(f"{v:.2f}" for v in best.continuous)
        typer.echo(
            f"continuous optimum (Raudenbush 1997): {shown}, cost {best.continuous_cost:g}, "
            f"MDES {best.continuous_mdes:.4f}"
        )


def _mdes_cost_plot(
    design: str,
    costs: tuple,
    icc: tuple,
    budgets: tuple,
    sizes: tuple | None,
    target_power: float,
    common: dict[str, Any],
    file: Path,
) -> None:
    """``--plot`` with ``--costs`` and several ``--budget`` values (:func:`hlm.power.plots.mdes_cost`)."""
    from hlm.power.plots import mdes_cost

    mdes_cost(design, costs, icc, budgets, file=file, sizes=sizes, power=target_power, **common)


def _analytic(
    design: str,
    sizes: tuple | None,
    icc: tuple,
    effect: float | None,
    target_power: float,
    test: str,
    common: dict[str, Any],
) -> None:
    """A sample size (a ? in --sizes), the power to detect --effect, or the MDES."""
    from hlm.power import mdes, power, sample_size

    if sizes is None:
        raise OptionError("--sizes is required (units per level, outermost first; ? for the one to solve for)")
    if None in sizes:
        if effect is None:
            raise OptionError("a ? in --sizes asks for a sample size: give the --effect to detect")
        n = sample_size(design, sizes, icc, effect, power=target_power, **common)
        typer.echo(
            f"{design}: {n} units needed at the ? in {_show(sizes)} to detect {effect:g} "
            f"with power {target_power:g} ({test})"
        )
        return
    if effect is not None:
        value = power(design, sizes, icc, effect, **common)
        typer.echo(f"{design}, sizes {_show(sizes)}: power {value:.4f} to detect {effect:g} ({test})")
        return
    value = mdes(design, sizes, icc, power=target_power, **common)
    typer.echo(f"{design}, sizes {_show(sizes)}: MDES {value:.4f} ({test}, power {target_power:g})")


def _sd_precision(sizes: tuple | None, icc: tuple, margin: float | None, confidence: float, unused: list[str]) -> None:
    """``hlm power sd``: the top SD's margin, or the top-level units that reach ``--margin``."""
    from hlm.power import sd_margin, sd_sample_size

    if unused:
        raise OptionError(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to 'hlm power sd'")
    if sizes is None:
        raise OptionError("--sizes is required (units per level, outermost first; ? at the top to solve for it)")
    if None in sizes:
        if margin is None:
            raise OptionError("a ? in --sizes asks for the top-level units: give the --margin to reach")
        n = sd_sample_size(sizes, icc, margin, confidence)
        typer.echo(
            f"sd: {n} top-level units estimate the top SD within +-{margin:.0%} "
            f"({confidence:.0%} confidence), with {_show(sizes[1:])} below each"
        )
        return
    value = sd_margin(sizes, icc, confidence)
    typer.echo(f"sd, sizes {_show(sizes)}: the top SD is estimated within +-{value:.1%} ({confidence:.0%} confidence)")
