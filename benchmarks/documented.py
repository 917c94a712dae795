"""Searches given the configs a log documents: generated tasks whose own documented configs every method runs first.

The other families start every search from nothing. The researchers' spaces start from the configs their logs document:
``tune run`` trains those first, and its bohb samplers draw half of their random share about them and a quarter about the
leader (PriorBand's prior and incumbent, as local moves: :mod:`studies.rung_tpe`). A documented config is often close to
the best, and the gain past it small beside the noise of one epoch (flyvis: the log's baseline 0.1534, the best found
0.1428, a config's value moving by about 0.01 from epoch to epoch; the README's "How they compare"): the epochs must go
to finding a config better than one already known. This section measures that on tasks where the answer is known.

Each task is a generated task (:mod:`benchmarks.generated`), from index 72 on: past every task another section draws.
Two configs are documented, drawn as a log's are:

- ``first``: a random config that trains every epoch, with a random optimizer where the task has a choice (a log's first
  run);
- ``tuned``: part of the way from ``first`` to the local optimum of the final value that L-BFGS-B reaches from it (a share
  of the way from ``TUNED_SHARE``, per task), same optimizer: the hand-tuned config a log ends with.

Whether the optimum a log was tuned towards is the task's best or another mode is left to the landscape: in some tasks
the documented configs point at the best, in others away from it (PriorBand's benchmarks pair good and misleading priors
the same way). The two kinds are two families, so that every table and plot shows them apart.

Every method gets the documented configs first, as its library takes configs to try first: ``tune run`` enqueues them, as
it does a space's baselines; stock Ray Tune as OptunaSearch's ``points_to_evaluate``; plain Optuna by ``enqueue_trial``.
Two ablations run them first too: the default without the prior, which draws its random share uniformly, and the default
whose draws about them move every knob and none of whose draws is about the leader (the default's before 2026-12-08).
Besides regret (the search-quality tables), the section counts the runs whose recommended config is better than the best
documented one, noise-free, at each budget fraction, and when each first was: the question :mod:`benchmarks.seed_spaces`
asks of the logs' own spaces, where the answer is not known.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from typing import Any

import numpy as np

from benchmarks import search_quality
from benchmarks.generated import DOCUMENTED_FIRST_TASK, DOCUMENTED_TASKS, GeneratedTask, generated_task, local_optimum
from studies.space import Int, Knob

TITLE = "Searches given the configs a log documents: generated tasks that name a first and a hand-tuned config"
FAMILY = "documented, tuned toward {}"  # the best, or another mode
TUNED_SHARE = (0.7, 1.0)  # of the way from the first config to its local optimum: hand tuning stops short of it or reaches it
BEST_BASIN = 0.01  # regret of the optimum a log was tuned towards under which it is the task's best
METHODS = (
    search_quality.DEFAULT_METHOD,
    "gated_no_prior",
    "gated_prior_all_knobs",
    "tune_random",
    *search_quality.STOCK,
)


def knob_value(knob: Knob, unit: float) -> float | int:
    """The value at ``unit`` (0 to 1) of a Float or Int knob's range, in log space for a log-scaled knob."""
    low, high = float(knob.low), float(knob.high)
    if knob.log:
        value = math.exp(math.log(low) + unit * (math.log(high) - math.log(low)))
    else:
        value = low + unit * (high - low)
    return min(max(round(value), knob.low), knob.high) if isinstance(knob, Int) else value


def config_at(task: GeneratedTask, unit: np.ndarray, choice: int) -> dict[str, Any]:
    """The config of ``task`` at ``unit`` (one coordinate per numeric knob, in order) with optimizer ``choice``."""
    values = {name: knob_value(task.knobs[name], float(u)) for name, u in zip(task.numeric_knobs, unit)}
    optimizer = task.knobs.get("optimizer")
    return values | ({"optimizer": optimizer.choices[choice]} if optimizer else {})


def documented_task(index: int) -> GeneratedTask:
    """Generated task ``index`` with a first and a tuned config documented, drawn from the index as the task is."""
    task = generated_task(index)
    rng = np.random.default_rng([20261206, index])
    numeric = task.numeric_knobs
    optimizer = task.knobs.get("optimizer")
    choice = int(rng.integers(len(optimizer.choices))) if optimizer else 0
    while True:  # a log's first config trained
        first = rng.uniform(0.0, 1.0, len(numeric))
        if math.isfinite(task.raw(first[None, :], np.array([choice]), task.max_epochs)[0]):
            break
    optimum, optimum_raw = local_optimum(task, first, choice)
    tuned = first + rng.uniform(*TUNED_SHARE) * (optimum - first)
    documented = {"first": config_at(task, first, choice), "tuned": config_at(task, tuned, choice)}
    best, median = task.scale
    toward = "the best" if (optimum_raw - best) / (median - best) < BEST_BASIN else "another mode"
    regrets = ", ".join(f"{name} {task.regret(params):.3f}" for name, params in documented.items())
    return dataclasses.replace(
        task, family=FAMILY.format(toward), documented=documented, description=f"{task.description}; documented {regrets}"
    )


@functools.lru_cache(maxsize=None)
def documented_problems(count: int = DOCUMENTED_TASKS) -> dict[str, GeneratedTask]:
    tasks = (documented_task(index) for index in range(DOCUMENTED_FIRST_TASK, DOCUMENTED_FIRST_TASK + count))
    return {task.name: task for task in tasks}


def measure(smoke: bool = False) -> list[dict]:
    tasks = documented_problems(1 if smoke else DOCUMENTED_TASKS)
    rows = search_quality.measure(smoke, METHODS, list(tasks.values()))
    for row in rows:  # what a run's recommendation must beat, kept with it: the table reads rows alone
        task = tasks[row["problem"]]
        row["documented_regret"] = min(task.regret(params) for params in task.documented.values())
        row["task"] = task.description
    return rows


def table(rows: list[dict]) -> str:
    """Search quality's tables; the same pairs with the default without its prior (what the prior is worth); the runs
    that beat the documented configs; the tasks."""
    families = list(dict.fromkeys(row["family"] for row in rows))
    without_prior = search_quality.paired_table(rows, families, "gated_no_prior")
    return "\n\n".join([search_quality.table(rows), without_prior, beaten_table(rows), tasks_table(rows)])


def beaten_table(rows: list[dict]) -> str:
    """Per family and method: the runs whose recommended config is better than the best documented, noise-free, at each
    budget fraction, and the median share of the budget spent when a run's recommendation first was."""
    lines = [
        "Better than the best documented config (noise-free regret below it) at 1/4, 1/2 and all of the budget, of the runs; "
        "and the median share of the budget spent when a run's recommendation first was, over the runs where it was.",
        "",
        "| family | method | runs | better at 1/4 | at 1/2 | at full budget | first better after |",
        "|---|---|---|---|---|---|---|",
    ]
    for family in dict.fromkeys(row["family"] for row in rows):
        for method, label in search_quality.METHODS.items():
            runs = [row for row in rows if row["family"] == family and row["method"] == method]
            if not runs:
                continue
            counts = [sum(_better(row[f"regret_{fraction:g}"], row) for row in runs) for fraction in search_quality.FRACTIONS]
            firsts = [first for first in map(_first_better, runs) if first is not None]
            after = f"{statistics.median(firsts):.2f} of the budget" if firsts else "never"
            lines.append(f"| {family} | {label} | {len(runs)} | {' | '.join(map(str, counts))} | {after} |")
    return "\n".join(lines)


def _better(regret: float | None, row: dict) -> bool:
    return regret is not None and regret < row["documented_regret"]


def _first_better(row: dict) -> float | None:
    points = len(row["curve"])
    return next(((i + 1) / points for i, regret in enumerate(row["curve"]) if _better(regret, row)), None)


def tasks_table(rows: list[dict]) -> str:
    tasks = dict.fromkeys((row["problem"], row["family"], row["task"]) for row in rows)
    lines = [f"| {name} | {family} | {text} |" for name, family, text in tasks]
    header = "Tasks (regret of the documented configs, noise-free):\n\n| task | family | what it is |\n|---|---|---|\n"
    return header + "\n".join(lines)


plots = search_quality.plots


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    main(["--only", "documented", *sys.argv[1:]])
