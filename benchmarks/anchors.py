"""Model-based multi-fidelity anchors: Syne Tune's MOBSTER and Hyper-Tune on the search-quality tasks, fewer seeds.

The issue's anchors that no Optuna sampler or Ray searcher offers, run as their authors' library runs them:

- ``syne_mobster``: MOBSTER (Klein et al., 2020): a Gaussian process over config and epoch, fitted on every
  rung's results, choosing by expected improvement at the rung a new trial is judged at; ASHA stopping.
- ``syne_hypertune``: Hyper-Tune (Li et al., VLDB 2022): a Gaussian process per rung, weighted by how well each
  ranks the later results, and each new trial's bracket drawn from the same weights; three brackets (first
  rungs 1, 3 and 9), as ``tune``'s ``bohb-brackets``.

:func:`make_agent` builds DyHPO and DEHB too, for the pause-and-resume anchors' section (:mod:`benchmarks.resume_anchors`),
which runs with this one's seeds, settings and table.

Everything else is the search-quality benchmark's (:mod:`benchmarks.search_quality`): its tasks, seeds, budget,
4 workers, ASHA grace 1 / eta 3 and simulated clock. The default method and random + ASHA run beside the anchors
on the same tasks and seeds, so each anchor is paired with both.

Only ``ANCHOR_SEEDS`` seeds: MOBSTER and Hyper-Tune fit a Gaussian process at every suggestion, 28 to 240 s of one
core a run (2026-12-04) against under 6 s for the default, so the search-quality section's 20 seeds would take about
9 hours on 2 cores. For the same reason the Gaussian processes see at most ``MODEL_POINTS`` results (Syne Tune's
``max_size_data_for_model``; its default is 500) and, past their first 150 results, refit their hyperparameters at
every ``REFIT_EVERY``-th suggestion (``opt_skip_period``; its default is every one). Each process runs on one thread: beside another
process on 2 cores, NumPy's threads made one MOBSTER run (branin_lr, seed 0) take 358 s instead of 47 s.

Syne Tune 0.13 is the last release with these schedulers. It pins NumPy below 2, older than the NumPy this project
installs, and runs on NumPy 2 as used here; so it is installed without its dependencies, and those added by hand
(``.ci/run`` and the README say how).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import statistics
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks import search_quality
from benchmarks.simulated import OBJECTIVE, BenchmarkProblem, SyneTuneAgent
from studies.records import RESULT_EPOCH
from studies.space import Float, Int

TITLE = "Model-based anchors (Syne Tune's MOBSTER and Hyper-Tune) on the search-quality tasks"
SCHEDULERS = {  # every Syne Tune method the benchmarks run; this section runs ANCHORS, benchmarks/resume_anchors.py the rest
    "syne_mobster": "Syne Tune MOBSTER (ASHA stopping)",
    "syne_hypertune": "Syne Tune Hyper-Tune (3 brackets)",
    "syne_dyhpo": "Syne Tune DyHPO (pause and resume)",
    "syne_dehb": "Syne Tune DEHB (synchronous brackets)",
}
ANCHORS = ("syne_mobster", "syne_hypertune")
REFERENCES = (search_quality.DEFAULT_METHOD, search_quality.PAIRED_REFERENCE)
ANCHOR_SEEDS = 2
MODEL_POINTS = 200
REFIT_EVERY = 5
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Syne Tune's DyHPO wants its first rung equal to the increment; its default increment, 2, after the first rung 1 warns.
DYHPO_RUNG_INCREMENT = 1
MAX_EPOCHS_KEY = "max_epochs"  # the config entry from which Syne Tune reads a trial's epoch limit
# At smoke sizes the refits skip from the first result on: Syne Tune refits at every suggestion until 150 results
# (``opt_skip_init_length``), which made DyHPO's smoke run 68 s, of which 80 % fitting; the smoke run checks the path.
SMOKE_SEARCH_OPTIONS = {"opt_skip_init_length": 0}


def config_space(problem: BenchmarkProblem) -> dict:
    """The problem's knobs as Syne Tune's domains; conditions are dropped: an inactive knob is ignored, as in the
    stock Ray Tune methods."""
    from syne_tune.config_space import choice, lograndint, loguniform, randint, uniform

    space = {}
    for name, knob in problem.knobs.items():
        if isinstance(knob, Float):
            space[name] = (loguniform if knob.log else uniform)(knob.low, knob.high)
        elif isinstance(knob, Int):
            space[name] = (lograndint if knob.log else randint)(knob.low, knob.high)
        else:
            space[name] = choice(list(knob.choices))
    return {**space, MAX_EPOCHS_KEY: problem.max_epochs}


def make_agent(method: str, problem: BenchmarkProblem, seed: int, smoke: bool = False) -> SyneTuneAgent:
    from syne_tune.optimizer.baselines import DEHB, MOBSTER, DyHPO, HyperTune

    search_options = {"debug_log": False, "max_size_data_for_model": MODEL_POINTS, "opt_skip_period": REFIT_EVERY}
    options = dict(
        metric=OBJECTIVE, mode="min", resource_attr=RESULT_EPOCH, max_resource_attr=MAX_EPOCHS_KEY,
        grace_period=search_quality.GRACE_PERIOD, reduction_factor=search_quality.REDUCTION_FACTOR, random_seed=seed,
        search_options={**search_options, **(SMOKE_SEARCH_OPTIONS if smoke else {})},
    )  # fmt: skip
    if method == "syne_mobster":
        scheduler = MOBSTER(config_space(problem), **options)
    elif method == "syne_hypertune":
        scheduler = HyperTune(config_space(problem), brackets=3, **options)
    elif method == "syne_dyhpo":  # linear rungs 1, 2, 3, ... (an epoch at a time, as in the paper): no reduction factor
        without_factor = {name: value for name, value in options.items() if name != "reduction_factor"}
        scheduler = DyHPO(config_space(problem), rung_increment=DYHPO_RUNG_INCREMENT, **without_factor)
    elif method == "syne_dehb":  # no Gaussian process: its searcher draws at random, then mutates and crosses configs
        # It warns each time a parent's rung result is still pending, as it always is with several workers.
        logging.getLogger("syne_tune.optimizer.schedulers.synchronous.dehb").setLevel(logging.ERROR)
        if not hasattr(np, "NAN"):  # it marks a failed trial with np.NAN, a name NumPy 2 removed (np.nan is the same value)
            np.NAN = np.nan
        scheduler = DEHB(config_space(problem), **{**options, "search_options": {"debug_log": False}})
    else:
        raise ValueError(f"unknown anchor {method!r}; the anchors are {', '.join(SCHEDULERS)}")
    return SyneTuneAgent(scheduler, MAX_EPOCHS_KEY)


def methods(anchors: tuple[str, ...], references: tuple[str, ...] = REFERENCES) -> dict[str, str]:
    """A section's methods and their labels: its anchors, then the references each anchor is paired with."""
    return {**{name: SCHEDULERS[name] for name in anchors}, **{name: search_quality.METHODS[name] for name in references}}


def references_in(rows: list[dict]) -> tuple[str, ...]:
    """The references the rows were run with: the default of the day they were measured (it may have changed since),
    then random + ASHA, so that stored rows are paired and labelled as measured."""
    measured = {row["method"] for row in rows}
    return tuple(name for name in search_quality.METHODS if name in measured)


def measure(smoke: bool = False, anchors: tuple[str, ...] = ANCHORS) -> list[dict]:
    """Each anchor and reference on every search-quality task with each seed; one row per run, two runs at a time."""
    seeds = range(search_quality.SMOKE_SEEDS if smoke else ANCHOR_SEEDS)
    trainings = search_quality.SMOKE_BUDGET_TRAININGS if smoke else search_quality.BUDGET_TRAININGS
    # At smoke sizes one task (a generated one, always there), each anchor's path run once: a MOBSTER run is 8 s even then.
    problems = search_quality.problems(smoke)[-1:] if smoke else search_quality.problems(smoke)
    jobs = [(method, problem, seed, trainings, smoke) for problem in problems for seed in seeds for method in methods(anchors)]
    # One thread for each worker's linear algebra (see the module's text): spawned, not forked, so that NumPy loads
    # anew in each worker and reads this setting; this process's own setting is put back after.
    saved = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1), mp_context=context) as pool:
            return search_quality.run_all(pool, jobs)
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


def table(rows: list[dict], anchors: tuple[str, ...] = ANCHORS) -> str:
    """Per family and method: median regret (IQR) at half and all of the budget, and each anchor paired with the
    default it was run beside and with random + ASHA on the same task and seed."""
    references = references_in(rows)
    labels = methods(anchors, references)
    families = list(dict.fromkeys(row["family"] for row in rows))
    by_run = {(row["method"], row["problem"], row["seed"]): row for row in rows}
    lines = [
        "| family | method | runs | regret at 1/2 budget | at full budget | trials | median s a run "
        + "".join(f"| against {labels[reference]} at full budget " for reference in references)
        + "|",
        "|---|---|---|---|---|---|---|" + "---|" * len(references),
    ]
    for family in families:
        for method, label in labels.items():
            runs = [row for row in rows if row["family"] == family and row["method"] == method]
            if not runs:
                continue
            paired = [
                search_quality._paired_cell(
                    [
                        (row, by_run[reference, row["problem"], row["seed"]])
                        for row in runs
                        if (reference, row["problem"], row["seed"]) in by_run
                    ],
                    "regret_1",
                )
                if method in anchors
                else "-"
                for reference in references
            ]
            lines.append(
                f"| {family} | {label} | {len(runs)} | {search_quality._cell(runs, 'regret_0.5')} "
                f"| {search_quality._cell(runs, 'regret_1')} | {statistics.median(r['trials'] for r in runs):g} "
                f"| {statistics.median(r['wall_seconds'] for r in runs):.1f} | " + " | ".join(paired) + " |"
            )
    tasks = len({row["problem"] for row in rows})
    seeds = len({row["seed"] for row in rows})
    note = (
        f"Median (interquartile range) of regret over {tasks} tasks x {seeds} seed(s), as in the search-quality section "
        "(the default's and random + ASHA's rows here are those runs again). Paired: runs ending better / worse, and the "
        "mean difference in regret (below 0: the anchor is better) with its 90 % interval over the seeds, as there; an "
        "interval that spans 0 is no measured difference."
    )
    if references[0] != search_quality.DEFAULT_METHOD:
        note += (
            f" These rows were measured when the default was {labels[references[0]]}; the section's next run pairs the"
            f" anchors with today's, {search_quality.METHODS[search_quality.DEFAULT_METHOD]}."
        )
    return "\n".join(lines) + "\n\n" + note


def plots(rows: list[dict]) -> dict:
    return {}  # the table is the comparison; the search-quality section plots the anytime curves
