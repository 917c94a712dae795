"""The default search on tasks whose best config lies in a corner of the space, where random configs seldom fall.

flyvis's space is one (benchmarks/RESULTS.md, "The researchers' own problems"): the log's batch x learning-rate grid found
0.1428 at the least batch size and the greatest learning rate, where neither search found better than the log's baseline
0.1534 and 190 random configs recorded never did. Here are 16 generated tasks built that way
(:func:`benchmarks.generated.corner_problems`, tasks 88 to 103, past every other section's): each is a generated task with
its best config moved to one end of 2 or 3 knobs, in a well narrow on them. No method had run them when this section was
first measured (2026-12-07); no choice of the default search was made on them.

The methods, seeds, budget, tables and plots are "The default search"'s (:mod:`benchmarks.default_search`).
"""

from __future__ import annotations

from benchmarks import default_search, search_quality
from benchmarks.generated import CORNER_TASKS, corner_problems

TITLE = "The default search on 16 tasks whose best config lies in a corner"


def measure(smoke: bool = False) -> list[dict]:
    tasks = corner_problems(1 if smoke else CORNER_TASKS)
    return search_quality.measure(smoke, default_search.METHODS, list(tasks.values()))


table = default_search.table
plots = default_search.plots
