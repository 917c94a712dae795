"""The default's gate, by the most any finished trial gained, against the gate before it, on tasks of every family.

``bohb-gated`` trains a trial past its last rung only if it can still end better than the best trial that trained every
epoch (:class:`studies.driver.rungs.StoredRungsASHA`). Until 2026-12-07 the bar assumed it would gain from there what that
best trial had gained: it had to be better at the rung than the leader had been. Now it may gain as much as any trial that
trained every epoch did. Where curves cross late, or are noisy, a trial behind the leader at the rung may still end ahead,
and the leader's own gain (one noisy value at the rung, one at the end) said it could not; on the noisy and unseen
generated tasks the previous default without a gate at all (``bohb-brackets``) ended ahead of it.

Here the default and the default with the previous bar (``gated_leader_gain``), with stock random + ASHA beside them, on
the first tasks of each family of the other sections, 10 seeds: the synthetic and recorded problems, 5 of each YAHPO set,
and 4 of each generated family (held-out, unseen, corner, many-knobs, noisy). The paired table against the previous bar
is the section's point; the targets are read as in the others.
"""

from __future__ import annotations

from benchmarks import search_quality, yahpo
from benchmarks.curves import PROBLEMS
from benchmarks.default_search import YAHPO_HELD_OUT
from benchmarks.generated import corner_problems, held_out_problems, many_knobs_problems, noisy_problems, unseen_problems
from benchmarks.recorded import recorded_problems

TITLE = "The default's gate, by the most any finished trial gained, against the gate before it"
METHODS = (search_quality.DEFAULT_METHOD, "gated_leader_gain", "ray_random_asha")
PREVIOUS_GATE = "gated_leader_gain"
SEEDS = 10
GENERATED_TASKS, YAHPO_TASKS = 4, 5


def tasks(smoke: bool) -> list:
    generated, yahpo_count = (1, 1) if smoke else (GENERATED_TASKS, YAHPO_TASKS)
    return [
        *[search_quality.SyntheticTask(name) for name in list(PROBLEMS)[: 1 if smoke else None]],
        *list(recorded_problems().values())[: 1 if smoke else None],
        *yahpo.yahpo_problems(yahpo.DEFAULT_TASKS[:yahpo_count]).values(),
        *yahpo.yahpo_problems(yahpo.HELD_OUT_TASKS[:yahpo_count], family=YAHPO_HELD_OUT).values(),
        *held_out_problems("held-out", generated).values(),
        *unseen_problems(generated).values(),
        *corner_problems(generated).values(),
        *many_knobs_problems(generated).values(),
        *noisy_problems(generated).values(),
    ]


def measure(smoke: bool = False) -> list[dict]:
    return search_quality.measure(smoke, METHODS, tasks(smoke), seeds=SEEDS)


def table(rows: list[dict]) -> str:
    families = list(dict.fromkeys(row["family"] for row in rows))
    return search_quality.table(rows) + "\n\n" + search_quality.paired_table(rows, families, PREVIOUS_GATE)


def plots(rows: list[dict]) -> dict:
    return search_quality.plots(rows)
