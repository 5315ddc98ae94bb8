"""Monte Carlo studies: simulate a design many times, fit models, collect the estimates.

Replicate ``r`` of grid point ``j`` simulates with the seed

    int(SeedSequence(seed, spawn_key=(j, r)).generate_state(1, uint64)[0] >> 1)

(the state of ``SeedSequence(seed).spawn(J)[j].spawn(R)[r]``), so every replicate is
reproducible on its own (``hlm.simulate.simulate(design, seed=...)`` with the seed in the
results) and results do not depend on ``n_jobs`` or on how replicates are chunked.

Replicates run in chunks on a :class:`concurrent.futures.ProcessPoolExecutor` (fork where
the platform has it: workers inherit the imported library); each chunk simulates and fits
its replicates and returns plain tuples, which the parent puts in order.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hlm.errors import OptionError
from hlm.simulate.design import Design
from hlm.simulate.run import simulate
from hlm.study.models import StudyModel, fit_model
from hlm.study.result import StudyResult
from hlm.study.truth import Truth

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


def replicate_seed(seed: int, point: int, rep: int) -> int:
    """The simulation seed of replicate ``rep`` at grid point ``point`` (see the module docstring)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(point), int(rep)))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class _Point:
    """One grid point: its index, the values set and the resulting design and models."""

    index: int
    values: tuple[Any, ...]
    design: Design
    models: tuple[StudyModel, ...]
    truth: Truth


def grid_points(
    design: Design,
    grid: Mapping[str, Sequence[Any]] | None,
    models: Sequence[str],
    *,
    family: str | None = None,
    link: str | None = None,
) -> tuple[tuple[str, ...], list[_Point]]:
    """The cartesian product of the grid's values (first key varying slowest); ``family``/``link``
    are the GLMMs' (see :meth:`hlm.study.models.StudyModel.parse`)."""
    if grid is None:
        grid = {}
    if not isinstance(grid, Mapping):
        raise OptionError("grid must map design paths to lists of values, e.g. {'levels.district.n': [5, 10, 50]}")
    keys = tuple(str(k) for k in grid)
    values = []
    for k in keys:
        v = grid[k]
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            raise OptionError(f"grid['{k}'] must be a list of values, got {v!r}")
        v = list(v)
        if not v:
            raise OptionError(f"grid['{k}'] has no values")
        values.append(v)
    points = []
    for j, combo in enumerate(itertools.product(*values)):
        d = design
        for k, val in zip(keys, combo):
            d = d.set(k, val)
        ms = tuple(StudyModel.parse(m, d, family=family, link=link) for m in models)
        points.append(_Point(j, tuple(combo), d, ms, Truth.from_design(d)))
    return keys, points


def _run_chunk(
    point: _Point, reps: Sequence[int], seed: int, reml: bool | None, intervals: bool, level: float
) -> tuple[list[tuple], list[tuple]]:
    """Simulate and fit replicates ``reps`` of one grid point (runs in a worker)."""
    fits: list[tuple] = []
    params: list[tuple] = []
    for r in reps:
        s = replicate_seed(seed, point.index, r)
        t0 = time.perf_counter()
        frame = simulate(point.design, seed=s)
        t_sim = time.perf_counter() - t0
        for m in point.models:
            out = fit_model(m, frame, point.truth, reml=reml, intervals=intervals, level=level)
            key = (point.index, r, s, m.label)
            fits.append(key + (out.converged, out.singular, out.seconds, out.seconds_ci, t_sim, out.error))
            for row in out.rows:
                if not math.isnan(row[3]):  # a parameter without a defined truth is left out
                    params.append(key + row + (out.converged, out.singular))
    return fits, params


def _chunks(n: int, size: int) -> list[range]:
    return [range(a, min(a + size, n)) for a in range(0, n, size)]


def _mp_context() -> Any:
    import multiprocessing as mp

    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() and sys.platform != "darwin" else None


def _checked_options(
    models: str | Sequence[str], reps: int, seed: int, level: float, n_jobs: int | None
) -> tuple[list[str], int]:
    """The model list and the worker count (default: the CPUs), refusing invalid options."""
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise OptionError("give at least one model")
    if len(set(models)) != len(models):
        raise OptionError("the same model is given twice")
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise OptionError(f"reps must be a whole number >= 1, got {reps!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"seed must be a whole number >= 0, got {seed!r}")
    if not 0 < level < 1:
        raise OptionError(f"level must be between 0 and 1, got {level}")
    n_jobs = (os.cpu_count() or 1) if n_jobs is None else n_jobs
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise OptionError(f"n_jobs must be a whole number >= 1, got {n_jobs!r}")
    return models, int(n_jobs)


def run_tasks(
    tasks: Sequence[tuple[Any, range]],
    options: tuple[Any, ...],
    n_jobs: int,
    progress: bool,
    title: str,
    total: int,
    worker: Callable[..., Any] = _run_chunk,
) -> dict[int, Any]:
    """Each task's result ``worker(point, reps, *options)``, by task index: in this process for one
    job, else in a process pool (``worker`` a module-level function).  The study's worker is
    :func:`_run_chunk` (options: seed, reml, intervals, level; result: its fits and params rows)."""
    results: dict[int, Any] = {}
    if n_jobs == 1:
        with _Progress(total, enabled=progress, title=title) as bar:
            for i, (p, rr) in enumerate(tasks):
                results[i] = worker(p, rr, *options)
                bar.advance(len(rr))
    else:
        # The workers are forked at the first submit, before the progress bar's thread starts.
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=_mp_context()) as pool:
            pending: dict[Future, tuple[int, int]] = {
                pool.submit(worker, p, rr, *options): (i, len(rr)) for i, (p, rr) in enumerate(tasks)
            }
            try:
                with _Progress(total, enabled=progress, title=title) as bar:
                    while pending:
                        done, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in done:
                            i, n = pending.pop(fut)
                            results[i] = fut.result()
                            bar.advance(n)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    return results


def study(
    design: Design | str | os.PathLike,
    models: str | Sequence[str],
    reps: int,
    seed: int = 0,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    n_jobs: int | None = None,
    reml: bool | None = None,
    intervals: bool = True,
    level: float = 0.95,
    chunk_size: int | None = None,
    progress: bool | None = None,
    family: str | None = None,
    link: str | None = None,
) -> StudyResult:
    """Simulate ``design`` ``reps`` times (per grid point), fit each model, collect estimates.

    Parameters
    ----------
    design : an :class:`hlm.simulate.Design` or a design file.
    models : model strings (see :mod:`hlm.study.models`): mixed models in lme4 or Stata
        syntax, ``"xtreg fe PANEL"`` / ``"xtreg re PANEL"``, ``"ols"``.
    reps : replicates per grid point.
    seed : the study's seed; replicate seeds derive from it (module docstring).
    grid : design paths to lists of values, e.g. ``{"levels.district.n": [5, 10, 50]}``;
        the study runs at every combination.
    n_jobs : worker processes (default ``os.cpu_count()``); 1 runs in this process.
    reml : REML (True) or ML (False); None (default): as each model string says, else REML.
    intervals : SEs and Wald CIs (log-SD scale; logit scale for ICCs) of the variance
        components from the observed information.  They cost about as much as the fit
        itself; without them SDs and ICCs have estimates only (fixed effects always have
        SEs and CIs).
    level : confidence level of the intervals (coverage is of these).
    chunk_size : replicates per task (default: about 4 tasks per worker, at most 25).
    progress : a rich progress bar on stderr (default: when stderr is a terminal).
    family, link : the GLMM family and link of models in lme4 syntax; they must be the design's
        outcome's (:class:`hlm.simulate.Outcome`), which None means.  For a binomial or Poisson
        outcome every model is a GLMM fitted by ML (Laplace); ``reml`` does not apply to it.
    """
    if isinstance(design, (str, os.PathLike)):
        design = Design.from_toml(design)
    if not isinstance(design, Design):
        raise OptionError(f"design must be an hlm.simulate.Design or a design file, not {type(design).__name__}")
    models, n_jobs = _checked_options(models, reps, seed, level, n_jobs)
    keys, points = grid_points(design, grid, models, family=family, link=link)
    total = int(reps) * len(points)
    n_jobs = int(min(n_jobs, total))
    if chunk_size is None:
        chunk_size = max(1, min(25, math.ceil(int(reps) / max(1, math.ceil(4 * n_jobs / len(points))))))
    tasks = [(p, rr) for p in points for rr in _chunks(int(reps), int(chunk_size))]
    if progress is None:
        progress = sys.stderr.isatty()

    t0 = time.perf_counter()
    title = f"study: {len(models)} model(s), {total} replicate(s)"
    results = run_tasks(tasks, (int(seed), reml, intervals, level), n_jobs, bool(progress), title, total)
    seconds = time.perf_counter() - t0

    fits = [row for i in range(len(tasks)) for row in results[i][0]]
    params = [row for i in range(len(tasks)) for row in results[i][1]]
    return StudyResult.build(
        design=design,
        models=tuple(models),
        reps=int(reps),
        seed=int(seed),
        grid_keys=keys,
        grid_values=[p.values for p in points],
        designs=[p.design for p in points],
        fits=fits,
        params=params,
        seconds=seconds,
        n_jobs=n_jobs,
        reml=reml,
        intervals=intervals,
        level=level,
    )


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, total: int, *, enabled: bool, title: str) -> None:
        self.enabled = enabled
        self.total = total
        self.title = title
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            progress.start()
            self._progress, self._task = progress, progress.add_task(self.title, total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
