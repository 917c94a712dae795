"""Re-training a study's top configs with new seeds: is the winner's lead larger than seed noise?

The flyvis log checks this by hand (its "Assess variance in training" runs). ``tune repeat`` queues
the top K COMPLETE trials N times each into a repeat study, trains every one to ``max_epochs``
without pruning, and reports each config's mean and spread. A repeat trial's seed is its own trial
number in the repeat study, so every repeat starts from a different initialisation.
"""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.trial import TrialState

from studies.driver.run import Queue
from studies.records import ATTR_REPEAT_OF
from studies.store.catalog import SelectionError, feasible, is_pareto, metric_value, objectives_of, pareto_trials


def repeat_queue(study: optuna.Study, top: int, seeds: int) -> Queue:
    """The top ``top`` COMPLETE trials, each ``seeds`` times: those within the study's constraints first, a Pareto study's
    front before its other trials, and then by the first objective."""
    if top < 1 or seeds < 1:
        raise SelectionError(f"--top and --seeds must be at least 1 (got {top} and {seeds})")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SelectionError(f"study {study.study_name} has no COMPLETE trial to repeat")
    front = {t.number for t in pareto_trials(study, complete)} if is_pareto(study) else set()
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    best_first = sorted(complete, key=lambda t: (not feasible(t), t.number not in front, sign * t.values[0]))
    return [(dict(t.params), {ATTR_REPEAT_OF: t.number}) for t in best_first[:top] for _ in range(seeds)]


def spread_table(repeat_study: optuna.Study) -> pd.DataFrame:
    """Per repeated config: mean, standard deviation and range of each objective over its seeds."""
    rows = []
    for trial in repeat_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row = {"trial": trial.user_attrs[ATTR_REPEAT_OF]}
        row.update({name: metric_value(trial, name) for name, _ in objectives_of(repeat_study)})
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    grouped = pd.DataFrame(rows).groupby("trial")
    table = grouped.agg(["mean", "std", "min", "max"])
    table.columns = [f"{metric} {stat}" for metric, stat in table.columns]
    table.insert(0, "seeds", grouped.size())
    return table.reset_index()
