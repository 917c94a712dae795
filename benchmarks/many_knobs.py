"""The default search on tasks with 12 to 20 numeric knobs, most of them added ones that barely matter, as in the logs.

The generated tasks of the other sections have 3 to 7 numeric knobs; the spaces in ``search_spaces/`` have 10 to 22
(Vesuvius: six loss weights, class weights and a threshold beside its trainer's knobs), and YAHPO's XGBoost 11. Here are
16 generated tasks (:func:`benchmarks.generated.many_knobs_problems`, tasks 104 to 119, past every other section's), each
a generated task with 8 to 14 loss weights, class weights, temperatures and thresholds added, a third of which move the
loss as much as a trainer's knob. No method had run them when this section was first measured (2026-12-07); no choice of
the default search was made on them.

The methods, budget, tables and plots are "The default search"'s (:mod:`benchmarks.default_search`); 10 seeds, not 20.
"""

from __future__ import annotations

from benchmarks import default_search, search_quality
from benchmarks.generated import MANY_KNOBS_TASKS, many_knobs_problems

TITLE = "The default search on 16 tasks with 12 to 20 knobs"
# The least: a run here cost 3.3 times one on a corner task (2.0 s against 0.6 s on 2 cores); 20 seeds, an hour.
SEEDS = 10


def measure(smoke: bool = False) -> list[dict]:
    tasks = many_knobs_problems(1 if smoke else MANY_KNOBS_TASKS)
    return search_quality.measure(smoke, default_search.METHODS, list(tasks.values()), seeds=SEEDS)


table = default_search.table
plots = default_search.plots
