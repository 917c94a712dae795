"""The default search on tasks whose observed values are noisy, as a seed or a small validation set makes them.

The generated tasks of the other sections add 0.02 to 0.15 of their scale (the best final value 0, the median 1) to each
observed value, independently at each epoch. Here are 16 generated tasks (:func:`benchmarks.generated.noisy_problems`,
tasks 120 to 135, past every other section's) with 0.1 to 0.4 at each epoch, and an offset per run of 0.05 to 0.3 that
moves its whole curve: a run lucky at its first rung is as lucky at its last, whatever its config is worth.
Rungs, the default's model and its gate all rank trials by such values; the regret is still the noise-free final value.
No method had run them when this section was first measured (2026-12-07); no choice of the default search was made on
them.

The methods, budget, tables and plots are "The default search"'s (:mod:`benchmarks.default_search`); 10 seeds, not 20.
"""

from __future__ import annotations

from benchmarks import default_search, search_quality
from benchmarks.generated import NOISY_TASKS, noisy_problems

TITLE = "The default search on 16 tasks with noisy curves"
SEEDS = 10  # the least, as the many-knobs section's: 20 would take over an hour on 2 cores


def measure(smoke: bool = False) -> list[dict]:
    tasks = noisy_problems(1 if smoke else NOISY_TASKS)
    return search_quality.measure(smoke, default_search.METHODS, list(tasks.values()), seeds=SEEDS)


table = default_search.table
plots = default_search.plots
