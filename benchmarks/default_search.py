"""The default search, ``bohb-gated``, on the search-quality tasks, beside the previous default and the stock methods.

``bohb-gated`` is ``bohb-brackets`` with two rules more in ASHA (:class:`studies.driver.rungs.StoredRungsASHA`): a trial
whose first two epochs repeat an earlier trial's exactly is stopped, and a trial trains past its last rung only if it is
better there than the best trial that trained every epoch was. Everything here is the search-quality benchmark's
(:mod:`benchmarks.search_quality`): its tasks, 20 seeds, budget, 4 workers, ASHA grace 1 / eta 3, simulated clock,
table, targets and plots. A section of its own, with only the methods the issue's targets name and the previous default,
so that a change of the default is measured in 14 minutes rather than the search-quality section's 33 (2 cores); runs
are deterministic in (method, task, seed) on one machine, so the rows of a method here and there agree.
"""

from __future__ import annotations

from benchmarks import search_quality

TITLE = "The default search (bohb-gated) against the previous default and the stock methods"
METHODS = (search_quality.DEFAULT_METHOD, "tune_bohb-brackets", *search_quality.STOCK)


def measure(smoke: bool = False) -> list[dict]:
    return search_quality.measure(smoke, METHODS)


def table(rows: list[dict]) -> str:
    families = list(dict.fromkeys(row["family"] for row in rows))
    return search_quality.table(rows) + "\n\n" + search_quality._paired(rows, families, "tune_bohb-brackets")


def plots(rows: list[dict]) -> dict:
    return search_quality.plots(rows)
