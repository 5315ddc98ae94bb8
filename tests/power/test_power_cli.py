"""``hlm power``: the analytic functions on the command line; bad input is one ``error:`` line, exit 2.

Expected numbers are PowerUpR's documented cross-checks (see test_power_analytic) and
Raudenbush's (1997) continuous optimum n* = sqrt((c2 / c1) (1 - rho) / rho).
"""

from __future__ import annotations

import pytest

from hlm.cli import run


def _ok(capsys, argv: list[str]) -> str:
    assert run(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_mdes_power_and_sample_size(capsys):
    assert "MDES 0.6290" in _ok(capsys, ["power", "cra2", "--sizes", "20,15", "--icc", "0.17"])
    assert "power 0.80" in _ok(capsys, ["power", "cra2", "--sizes", "20,15", "--icc", "0.17", "--effect", "0.629"])
    out = _ok(capsys, ["power", "bira3", "--sizes", "100,10,69", "--icc", "0.20,0.15", "--omega", "0.1,0.1"])
    assert "MDES 0.0450" in out
    # PowerUp! Excel: cra3 with rho = .38/.10, R2 = .87/.53/.37, one covariate -> K = 66 for es = .20
    out = _ok(
        capsys,
        [
            "power",
            "cra3",
            "--sizes",
            "?,2,20",
            "--icc",
            "0.38,0.10",
            "--r2",
            "0.87,0.53,0.37",
            "--covariates",
            "1",
            "--effect",
            "0.20",
        ],
    )
    assert out.startswith("cra3: 66 units needed")


def test_one_sided_is_more_powerful(capsys):
    two = _ok(capsys, ["power", "cra2", "--sizes", "30,20", "--icc", "0.1", "--effect", "0.3"])
    one = _ok(capsys, ["power", "cra2", "--sizes", "30,20", "--icc", "0.1", "--effect", "0.3", "--one-sided"])
    assert float(one.split("power ")[1].split()[0]) > float(two.split("power ")[1].split()[0])


def test_budget_allocation(capsys):
    out = _ok(capsys, ["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--budget", "20000"])
    lines = out.splitlines()
    assert lines[0].startswith("cra2: best sizes ")
    n_star = (300 / 10 * 0.9 / 0.1) ** 0.5
    assert f"x {n_star:.2f}" in lines[1]
    out = _ok(capsys, ["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--target", "0.4", "--sizes", "?,12"])
    assert " x 12," in out.splitlines()[0]


def test_mdes_against_cost_plot(capsys, tmp_path):
    """Several budgets: the best allocation at each (Raudenbush's continuous n* per cluster at every
    budget) and, with --plot, the figure of MDES against cost."""
    figure = tmp_path / "mdes.png"
    argv = ["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--budget", "2e4,4e4,8e4", "--plot", str(figure)]
    lines = _ok(capsys, argv).splitlines()
    assert [line.split(":")[0] for line in lines[0:6:2]] == ["cra2"] * 3 and lines[-1] == f"wrote {figure}"
    n_star = (300 / 10 * 0.9 / 0.1) ** 0.5
    assert all(f"x {n_star:.2f}" in line for line in lines[1:6:2])
    mdes = [float(line.split("MDES ")[1].split()[0]) for line in lines[0:6:2]]
    assert mdes == sorted(mdes, reverse=True)  # more money, a smaller detectable effect
    single = _ok(capsys, ["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--budget", "40000"])
    assert single.splitlines()[0] == lines[2]
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_sd_precision(capsys):
    out = _ok(capsys, ["power", "sd", "--sizes", "?,10,20,25", "--icc", "0.1,0.1,0.2", "--margin", "0.25"])
    n = int(out.split()[1])
    assert out.startswith("sd: ") and "within +-25%" in out
    out = _ok(capsys, ["power", "sd", "--sizes", f"{n},10,20,25", "--icc", "0.1,0.1,0.2"])
    assert float(out.split("+-")[1].split("%")[0]) <= 25.0


@pytest.mark.parametrize(
    "argv,text",
    [
        (
            ["power", "sd", "--sizes", "?,10", "--icc", "0.1", "--margin", "0.25", "--effect", "3"],
            "--effect does not apply",
        ),
        (["power", "sd", "--sizes", "?,10", "--icc", "0.1"], "give the --margin"),
        (["power", "cra2", "--sizes", "20,15", "--icc", "0.1", "--margin", "0.2"], "applies to 'hlm power sd'"),
        (["power", "cra9", "--sizes", "20,15", "--icc", "0.1"], "unknown design 'cra9'"),
        (["power", "cra2", "--sizes", "20,x", "--icc", "0.1"], "--sizes: 'x' is not a number"),
        (["power", "cra2", "--sizes", "20,15"], "--icc is required"),
        (["power", "cra2", "--icc", "0.1"], "--sizes is required"),
        (["power", "cra2", "--sizes", "?,15", "--icc", "0.1"], "give the --effect"),
        (["power", "cra2", "--sizes", "20,15", "--icc", "0.1", "--budget", "9"], "need --costs"),
        (["power", "cra2", "--icc", "0.1", "--costs", "300,10"], "exactly one of budget"),
        (["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--budget", "1e4", "--effect", "0.2"], "--effect"),
        (["power", "bira2", "--sizes", "20,15", "--icc", "0.1"], "needs omega"),
        (["power", "cra2", "--sizes", "3,15", "--icc", "0.1", "--covariates", "1"], "degrees of freedom"),
        (["power", "cra2", "--sizes", "20,15", "--icc", "0.1", "--p", "1.5"], "treated proportion"),
        (["power", "cra2", "--sizes", "20,?", "--icc", "0.5", "--effect", "0.2"], "tends to"),
        (["power", "cra2", "--sizes", "20,15", "--icc", "0.1", "--plot", "m.png"], "MDES against cost: give --costs"),
        (["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--budget", "2e4", "--plot", "m.png"], "two or more"),
        (["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--budget", "2e4,y"], "--budget: 'y' is not a number"),
        (["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--budget", "2e4,4e4", "--plot", "m.txt"], "extension"),
        (["power", "cra2", "--icc", "0.1", "--costs", "300,10", "--budget", "2e4,4e4", "--target", "0.4"], "not both"),
    ],
)
def test_bad_input_is_one_error_line(capsys, argv, text):
    assert run(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and len(err.rstrip("\n").splitlines()) == 1, err
    assert text in err and "Traceback" not in err


def _design_file(tmp_path) -> str:
    """A two-level cluster-randomised design (schools treated as Assign(0.5))."""
    path = tmp_path / "cra2.toml"
    path.write_text(
        'response = "y"\nresidual_sd = 0.9\n[observations]\nn = 8\n'
        '[[levels]]\nname = "school"\nn = 10\nsd = 0.3\n'
        '[covariates]\ntreat = { dist = "Assign(0.5)", level = "school" }\n[fixed]\ntreat = 0.5\n'
    )
    return str(path)


def test_simulated_power_curve_plot_and_report(capsys, tmp_path):
    design = _design_file(tmp_path)
    curve, page = tmp_path / "curve.png", tmp_path / "power.html"
    argv = ["power", design, "--model", "y ~ treat + (1 | school_id)", "--term", "treat", "--reps", "30"]
    argv += ["--vary", "levels.school.n=6,12", "--plot", str(curve), "--report", str(page), "-j", "1"]
    out = _ok(capsys, argv)
    assert "levels.school.n" in out and "sufficient" in out and out.count("\n") >= 4
    assert curve.read_bytes()[:4] == b"\x89PNG"
    text = page.read_text()
    assert "<h1>Power of the wald test of treat</h1>" in text and "data:image/png;base64," in text


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "needs --model"),
        (
            ["--model", "y ~ treat + (1 | school_id)", "--term", "treat", "--plot", "x.png"],
            "--plot draws a power curve",
        ),
        (["--model", "y ~ treat + (1 | school_id)", "--term", "treat", "--vary", "levels.school.n"], "--vary needs"),
    ],
)
def test_simulated_power_errors(capsys, tmp_path, extra, message):
    assert run(["power", _design_file(tmp_path), "--reps", "5", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1


def test_mdes_cost_plot(tmp_path):
    from hlm.power.plots import mdes_cost

    fig = mdes_cost("cra2", (300, 10), 0.1, [20_000, 40_000, 80_000], file=tmp_path / "mdes.png")
    ax = fig.axes[0]
    costs, mdes = ax.lines[0].get_data()
    # each point is hlm.power.allocate's best allocation for its budget: MDES falls as the budget grows
    assert all(c <= b for c, b in zip(costs, [20_000, 40_000, 80_000])) and list(mdes) == sorted(mdes, reverse=True)
    assert (tmp_path / "mdes.png").read_bytes()[:4] == b"\x89PNG"
