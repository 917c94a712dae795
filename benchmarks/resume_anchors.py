"""Pause-and-resume anchors: Syne Tune's DyHPO and DEHB on the search-quality tasks, beside the default and random + ASHA.

The issue's two anchors that pause trials at a rung and resume them later, where ASHA only continues or stops one.
The simulated clock resumes a paused trial at its next epoch, as from a checkpoint (:mod:`benchmarks.simulated`).

- ``syne_dyhpo``: DyHPO (Wistuba et al., NeurIPS 2022) as Syne Tune implements it: a Gaussian process over config and
  epoch (Syne Tune's, not the paper's deep kernel) chooses at every step between starting a config and resuming a
  paused one by one more epoch (rungs 1, 2, 3, ..., as the paper steps), with a share of promotions by the
  successive-halving rule. Syne Tune's own increment, 2, after the benchmark's first rung 1 (rungs 1, 3, 5, ...) is a
  spacing it warns against: it wants the first rung equal to the increment.
- ``syne_dehb``: DEHB (Awad et al., IJCAI 2021): synchronous Hyperband brackets (rungs 1, 3, 9, 27, ...) whose configs
  after the first bracket come from differential evolution (mutation and crossover of the rung's configs); no model.

Everything else is the model-based anchors section's (:mod:`benchmarks.anchors`): its tasks, seeds, budget, workers,
Gaussian-process limits and references, and its table. A section of its own, so that each is measured on its own:
a DyHPO run costs as much as a MOBSTER run or more.
"""

from __future__ import annotations

from benchmarks import anchors

TITLE = "Pause-and-resume anchors (Syne Tune's DyHPO and DEHB) on the search-quality tasks"
ANCHORS = ("syne_dyhpo", "syne_dehb")


def measure(smoke: bool = False) -> list[dict]:
    return anchors.measure(smoke, ANCHORS)


def table(rows: list[dict]) -> str:
    return anchors.table(rows, ANCHORS)


def plots(rows: list[dict]) -> dict:
    return {}  # the table is the comparison; the search-quality section plots the anytime curves
