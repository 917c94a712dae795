"""Reading studies back: what is stored, the top trials, and choosing one by any recorded metric."""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from studies.errors import UserInputError
from studies.records import ATTR_BASELINE, ATTR_EPOCHS, ATTR_REASON, ATTR_TRAIN_SECONDS, METRIC_PREFIX, STUDY_OBJECTIVES
from studies.storage import open_storage


class SelectionError(UserInputError):
    """A study, trial or metric that is not there; the message says what is."""


@dataclass(frozen=True)
class Bound:
    """``--where NAME=LOW..HIGH``: keep trials whose final NAME lies within [LOW, HIGH]."""

    metric: str
    low: float = -math.inf
    high: float = math.inf

    @classmethod
    def parse(cls, text: str) -> "Bound":
        name, sep, limits = text.partition("=")
        low, dots, high = limits.partition("..")
        if not sep or not dots or not name:
            raise SelectionError(f"bound {text!r} is not NAME=LOW..HIGH (e.g. predicted_fg_fraction=0.3..0.7; either side may be empty)")
        try:
            return cls(name.strip(), float(low) if low.strip() else -math.inf, float(high) if high.strip() else math.inf)
        except ValueError as exc:
            raise SelectionError(f"bound {text!r} has a limit that is not a number") from exc

    def holds(self, trial: FrozenTrial) -> bool:
        value = metric_value(trial, self.metric)
        return value is not None and self.low <= value <= self.high


def load_study(name: str, storage_url: str | None) -> optuna.Study:
    storage = open_storage(storage_url, create=False)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        known = ", ".join(names) or "none yet"
        raise SelectionError(f"no study {name!r} in the storage (studies: {known})")
    return optuna.load_study(study_name=name, storage=storage)


def objectives_of(study: optuna.Study) -> list[tuple[str, str]]:
    return [tuple(o) for o in study.user_attrs.get(STUDY_OBJECTIVES, [])] or [("value", study.direction.name.lower())]


def metric_value(trial: FrozenTrial, metric: str) -> float | None:
    value = trial.user_attrs.get(f"{METRIC_PREFIX}{metric}")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def list_studies(storage_url: str | None) -> pd.DataFrame:
    storage = open_storage(storage_url, create=False)
    rows = []
    for summary in optuna.study.get_all_study_summaries(storage, include_best_trial=True):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        objective = objectives_of(study)[0][0]
        best = summary.best_trial
        rows.append(
            {
                "study": summary.study_name,
                "complete": states.count(TrialState.COMPLETE),
                "pruned": states.count(TrialState.PRUNED),
                "failed": states.count(TrialState.FAIL),
                "running": states.count(TrialState.RUNNING),
                "waiting": states.count(TrialState.WAITING),
                "objective": objective,
                "best": None if best is None else best.value,
                "best_trial": None if best is None else best.number,
            }
        )
    return pd.DataFrame(rows)


def trials_table(study: optuna.Study, top: int | None = None, states: tuple[TrialState, ...] | None = None) -> pd.DataFrame:
    """Finished trials, best first by the first objective: state, baseline, epochs, time, metrics, params."""
    objective, direction = objectives_of(study)[0]
    rows = []
    for trial in study.get_trials(deepcopy=False, states=states or (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        row = {
            "trial": trial.number,
            "state": trial.state.name,
            "baseline": trial.user_attrs.get(ATTR_BASELINE, ""),
            "epochs": trial.user_attrs.get(ATTR_EPOCHS),
            "train_s": trial.user_attrs.get(ATTR_TRAIN_SECONDS),
        }
        row.update({name[len(METRIC_PREFIX) :]: value for name, value in trial.user_attrs.items() if name.startswith(METRIC_PREFIX)})
        row.update(trial.params)
        if trial.state == TrialState.FAIL:
            row["fail_reason"] = trial.user_attrs.get(ATTR_REASON, "")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    rank = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}
    table["_rank"] = table["state"].map(rank)
    sort_by = ["_rank", "epochs"] + ([objective] if objective in table else [])
    ascending = [True, False] + ([direction == "minimize"] if objective in table else [])
    table = table.sort_values(sort_by, ascending=ascending, na_position="last").drop(columns="_rank")
    return table.head(top) if top else table


def select_trial(
    study: optuna.Study,
    *,
    trial_number: int | None = None,
    by: str | None = None,
    bounds: list[Bound] = (),
    maximize: bool | None = None,
) -> FrozenTrial:
    """One trial: by number, or the best COMPLETE trial by a metric among those within the bounds."""
    if trial_number is not None:
        trials = study.get_trials(deepcopy=False)
        if not 0 <= trial_number < len(trials):
            raise SelectionError(f"study {study.study_name} has no trial {trial_number} (trials 0..{len(trials) - 1})")
        return trials[trial_number]
    objectives = dict(objectives_of(study))
    by = by or next(iter(objectives))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SelectionError(f"study {study.study_name} has no COMPLETE trial yet; `tune resume {study.study_name}` to finish it")
    known = sorted({n[len(METRIC_PREFIX) :] for t in complete for n in t.user_attrs if n.startswith(METRIC_PREFIX)})
    for metric in [by, *(b.metric for b in bounds)]:
        if metric not in known:
            raise SelectionError(f"no trial of {study.study_name} recorded {metric!r}; recorded metrics: {', '.join(known)}")
    if maximize is None:
        maximize = objectives.get(by, "minimize") == "maximize"
    candidates = [t for t in complete if metric_value(t, by) is not None and all(b.holds(t) for b in bounds)]
    if not candidates:
        raise SelectionError(f"no COMPLETE trial of {study.study_name} satisfies {', '.join(f'{b.metric} in [{b.low}, {b.high}]' for b in bounds)}")
    pick = max if maximize else min
    return pick(candidates, key=lambda t: metric_value(t, by))
