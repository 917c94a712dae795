"""What the default search's model adds on YAHPO: ``bohb-gated`` against its own scheduler with every config random.

On the two YAHPO families of "The default search" (20 seeds) the default ties random + ASHA. Twenty seeds say little
there: a seed draws the same random configs on all 15 data sets (one space), so the data sets of a seed are not 15
independent runs. Here the 15 data sets run with 60 seeds, and four methods take them apart:

- ``bohb-gated``, the default;
- ``gated_random_1``: the same sampler, scheduler, brackets and gate, every config drawn at random. With the same seed
  both draw their random configs from one seeded stream: their first 10 configs are the same, and the default's later
  random ones come from that stream too. Paired with it, the default shows what its model adds, with less seed noise
  than against another random search;
- ``tune run --sampler random``: tune's bridge with one plain ASHA bracket;
- stock Ray Tune random + ASHA. Given the same results, it and ``tune run --sampler random`` stop the same trials at
  the same epochs (``tests/test_rungs.py``); they differ only in their random draws, so their paired row shows how far
  apart two random searches end over 60 seeds: the noise floor of every other row.

Everything else is the search-quality benchmark's (:mod:`benchmarks.search_quality`): budget, 4 workers, ASHA grace 1 /
eta 3, simulated clock, table and plots.
"""

from __future__ import annotations

from benchmarks import search_quality
from benchmarks.default_search import YAHPO_HELD_OUT
from benchmarks.yahpo import DEFAULT_TASKS, HELD_OUT_TASKS, yahpo_problems

TITLE = "What the default's model adds on the 15 YAHPO data sets, over 60 seeds"
METHODS = (search_quality.DEFAULT_METHOD, "gated_random_1", "tune_random", "ray_random_asha")
SEEDS = 60  # three times the search-quality benchmark's 20: a seed's 15 runs share their random configs
MODEL_ABLATION = "gated_random_1"


def measure(smoke: bool = False) -> list[dict]:
    count = 1 if smoke else None
    tasks = [
        *yahpo_problems(DEFAULT_TASKS[:count]).values(),
        *yahpo_problems(HELD_OUT_TASKS[:count], family=YAHPO_HELD_OUT).values(),
    ]
    return search_quality.measure(smoke, METHODS, tasks, seeds=SEEDS)


def table(rows: list[dict]) -> str:
    families = list(dict.fromkeys(row["family"] for row in rows))
    floor = (
        f"{search_quality.METHODS['tune_random']} and {search_quality.METHODS['ray_random_asha']} are one algorithm: given the "
        "same results their schedulers stop the same trials at the same epochs. They differ only in their random draws, so "
        "the first's row in the first paired table is what another random stream alone moves a result by over these seeds."
    )
    return "\n\n".join([search_quality.table(rows), floor, search_quality.paired_table(rows, families, MODEL_ABLATION)])


def plots(rows: list[dict]) -> dict:
    return search_quality.plots(rows)
