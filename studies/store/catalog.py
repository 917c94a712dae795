"""Reading studies back: what is stored, the top trials, and choosing one by any recorded metric."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import optuna
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from studies.errors import UserInputError
from studies.records import (
    ATTR_BASELINE,
    ATTR_EPOCHS,
    ATTR_PRUNED_BY,
    ATTR_REASON,
    ATTR_SPACE_SHA,
    ATTR_TRAIN_SECONDS,
    EPOCH_VALUES_PREFIX,
    METRIC_PREFIX,
    STUDY_ASHA,
    STUDY_CONSTRAINTS,
    STUDY_HEADLINES,
    STUDY_OBJECTIVES,
    STUDY_SEARCH_METHOD,
    STUDY_SETTINGS_STORED,
    STUDY_SPACE_PATH,
    STUDY_SPACE_SHA,
)
from studies.space import AshaSettings, Constraints
from studies.store.storage import open_storage, study_names

if TYPE_CHECKING:  # pandas and SQLAlchemy load when a table is built or counted: a missing storage is answered first
    import pandas as pd

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # in the order tables rank them


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
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) or "none yet"
        raise SelectionError(f"no study {name!r} in the storage (studies: {known})")
    return optuna.load_study(study_name=name, storage=storage)


class SpaceChanged(UserInputError):
    """A study's search-space file that is no longer the file the study last ran: it is code, and is not imported unasked."""


def stored_space_sha(study: optuna.Study) -> str | None:
    """The hash of the space file as the study's last run loaded it; a study stored before it was kept: its latest trial's."""
    if study.user_attrs.get(STUDY_SPACE_SHA):
        return study.user_attrs[STUDY_SPACE_SHA]
    for trial in reversed(study.get_trials(deepcopy=False)):
        if trial.user_attrs.get(ATTR_SPACE_SHA):
            return trial.user_attrs[ATTR_SPACE_SHA]
    return None


def half_made(study: optuna.Study) -> bool:
    """A study whose run was stopped while making it: its settings lack their last write, and no trial of it ever started.

    A study made before that last write was kept counts as half-made only while no trial of it has started: nothing is lost.
    """
    if study.user_attrs.get(STUDY_SETTINGS_STORED):
        return False
    return all(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))


def space_file_of(study: optuna.Study, allow_changed: bool = False) -> str:
    """The search-space file a stored study runs from (`tune resume`, `tune repeat`), once it holds what the study ran.

    A space file is Python that `tune` imports: one changed since the study last ran it is refused unless ``allow_changed``.
    """
    path = study.user_attrs.get(STUDY_SPACE_PATH)
    if not path and half_made(study):
        raise SelectionError(
            f"study {study.study_name} was left half-made (its run was stopped while making it, before it stored its search space); "
            "run the `tune run` or `tune phases` command that was making it again"
        )
    if not path:
        raise SelectionError(f"study {study.study_name} stores no search-space file: it was not made by `tune run`")
    expected = stored_space_sha(study)
    if allow_changed or expected is None or not Path(path).is_file():  # a missing file: loading it says so
        return path
    found = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if found != expected:
        raise SpaceChanged(
            f"search space {path} changed since study {study.study_name} last ran it (sha256 {found[:12]}, was {expected[:12]}); "
            "it is code that tune runs: check the change, then pass --allow-changed-space"
        )
    return path


def objectives_of(study: optuna.Study | optuna.study.FrozenStudy) -> list[tuple[str, str]]:
    return [tuple(o) for o in study.user_attrs.get(STUDY_OBJECTIVES, [])] or [("value", study.directions[0].name.lower())]


def is_pareto(study: optuna.Study | optuna.study.FrozenStudy) -> bool:
    """Whether the study searches its objectives jointly: one Optuna direction per objective."""
    return len(study.directions) > 1


def constraints_of(study: optuna.Study | optuna.study.FrozenStudy) -> Constraints:
    """The ranges the study's search keeps metrics within, as the study was created with them."""
    stored = study.user_attrs.get(STUDY_CONSTRAINTS, {})
    return {
        metric: (-math.inf if low is None else low, math.inf if high is None else high) for metric, (low, high) in stored.items()
    }


def constraints_record(constraints: Constraints) -> dict[str, list[float | None]]:
    """``constraints`` as the study stores them (:func:`constraints_of` reads them back): JSON has no infinity."""
    return {metric: [None if math.isinf(v) else v for v in limits] for metric, limits in constraints.items()}


def described_constraints(constraints: Constraints) -> str:
    return ", ".join(f"{metric} in [{low}, {high}]" for metric, (low, high) in constraints.items())


def feasible(trial: FrozenTrial) -> bool:
    """Whether the trial lies within its study's constraints (Optuna's convention: no violation above 0); True without any."""
    return all(violation <= 0 for violation in trial.constraints.values())


def epoch_values(trial: FrozenTrial, index: int = 0) -> dict[int, float]:
    """The value of the study's objective at ``index`` (in OBJECTIVES order) at each epoch the trial reported.

    A Pareto study's trial keeps every objective's values per epoch in system attributes (Optuna's ``trial.report``
    takes one objective); any other trial's intermediate values are its first objective's. NaN: no value kept there.
    """
    prefix = EPOCH_VALUES_PREFIX
    per_epoch = {int(key[len(prefix) :]): values for key, values in trial.system_attrs.items() if key.startswith(prefix)}
    if per_epoch:
        return {epoch: math.nan if values[index] is None else float(values[index]) for epoch, values in sorted(per_epoch.items())}
    return dict(trial.intermediate_values) if index == 0 else {}


def _uncached(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The study's storage without the cache Optuna puts in front of an RDB storage.

    That cache reads every trial of a study before answering for any: a reader of a 10 000-trial study's
    1 000 COMPLETE trials would read all 10 000.
    """
    backend = getattr(study._storage, "_backend", None)  # the RDBStorage behind Optuna's _CachedStorage
    return backend if isinstance(backend, optuna.storages.RDBStorage) else study._storage


def stored_trials(study: optuna.Study, states: tuple[TrialState, ...]) -> list[FrozenTrial]:
    """The study's trials in ``states``, read from the database for those states alone."""
    return _uncached(study).get_all_trials(study._study_id, deepcopy=False, states=states)


def count_by_state(storage: optuna.storages.BaseStorage, study_id: int) -> Counter:
    """How many trials of the study are in each state."""
    if isinstance(storage, optuna.storages.RDBStorage):
        # Optuna counts by loading every trial; one GROUP BY over its trials table answers at once.
        import sqlalchemy

        query = sqlalchemy.text("SELECT state, COUNT(*) FROM trials WHERE study_id = :study GROUP BY state")
        with storage.engine.connect() as connection:
            return Counter({TrialState[state]: count for state, count in connection.execute(query, {"study": study_id})})
    return Counter(trial.state for trial in storage.get_all_trials(study_id, deepcopy=False))


def metric_value(trial: FrozenTrial, metric: str) -> float | None:
    value = trial.user_attrs.get(f"{METRIC_PREFIX}{metric}")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def list_studies(storage_url: str | None) -> pd.DataFrame:
    storage = open_storage(storage_url, create=False)
    rows = []
    for study in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(study.study_name)
        counts = count_by_state(storage, study_id)
        best = None
        if len(study.directions) == 1 and counts[TrialState.COMPLETE]:
            best = storage.get_best_trial(study_id)  # by SQL in an RDB storage: one trial read, not all
        rows.append(
            {
                "study": study.study_name,
                "complete": counts[TrialState.COMPLETE],
                "pruned": counts[TrialState.PRUNED],
                "failed": counts[TrialState.FAIL],
                "running": counts[TrialState.RUNNING],
                "waiting": counts[TrialState.WAITING],
                "objective": objectives_of(study)[0][0],
                "best": None if best is None else best.value,
                "best_trial": None if best is None else best.number,
            }
        )
    import pandas as pd

    return pd.DataFrame(rows)


def trial_record(trial: FrozenTrial) -> dict:
    """One trial as a script reads it: number, state, baseline, epochs, train seconds, then its metrics and params apart."""
    record = {
        "trial": trial.number,
        "state": trial.state.name,
        "baseline": trial.user_attrs.get(ATTR_BASELINE, ""),
        "epochs": trial.user_attrs.get(ATTR_EPOCHS),
        "train_s": trial.user_attrs.get(ATTR_TRAIN_SECONDS),
        "metrics": {name[len(METRIC_PREFIX) :]: value for name, value in trial.user_attrs.items() if name.startswith(METRIC_PREFIX)},
        "params": dict(trial.params),
    }
    if trial.constraints:
        record["feasible"] = feasible(trial)
    if trial.state == TrialState.FAIL:
        record["fail_reason"] = trial.user_attrs.get(ATTR_REASON, "")
    if trial.state == TrialState.PRUNED and ATTR_PRUNED_BY in trial.user_attrs:
        record["pruned_by"] = trial.user_attrs[ATTR_PRUNED_BY]
    return record


def trial_row(trial: FrozenTrial) -> dict:
    """One trial as a row of :func:`trials_table`: its record with the metrics and params as columns, why it ended last."""
    record = trial_record(trial)
    metrics, params = record.pop("metrics"), record.pop("params")
    why = {name: record.pop(name) for name in ("fail_reason", "pruned_by") if name in record}
    return {**record, **metrics, **params, **why}


IMPORTANCE_TRIALS = 1000  # the latest COMPLETE trials that judge which params matter: `tune show` costs the same at any size


def important_params(study: optuna.Study, count: int, complete: list[FrozenTrial] | None = None) -> list[str]:
    """The ``count`` params that matter most: by Optuna's importance (PED-ANOVA: deterministic, fast, no scikit-learn)
    once 2 COMPLETE trials searched them, else the first ``count`` in the order the trials draw them.

    ``complete``: the study's COMPLETE trials where the caller has read them already."""
    complete = [t for t in (stored_trials(study, (TrialState.COMPLETE,)) if complete is None else complete) if t.params]
    drawn = complete or stored_trials(study, FINISHED)
    order = list(dict.fromkeys(name for trial in drawn for name in trial.params))
    if len(complete) >= 2:
        verbosity = optuna.logging.get_verbosity()
        try:
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # the in-memory study below is not news
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # Judged in memory on the latest COMPLETE trials: Optuna's own reading of the study would load every trial.
                latest = optuna.create_study(directions=study.directions)
                latest.add_trials(complete[-IMPORTANCE_TRIALS:])
                # In a Pareto study too, the params that matter are those that matter to the first objective.
                first = (lambda trial: trial.values[0]) if is_pareto(study) else None
                evaluator = PedAnovaImportanceEvaluator()
                ranked = list(optuna.importance.get_param_importances(latest, evaluator=evaluator, target=first))
        except (ValueError, RuntimeError, ZeroDivisionError):  # no param every COMPLETE trial has, too few trials: no ranking
            ranked = []
        finally:
            optuna.logging.set_verbosity(verbosity)
        order = list(dict.fromkeys([*ranked, *order]))
    return order[:count]


def trials_table(study: optuna.Study, top: int | None = None, complete: list[FrozenTrial] | None = None) -> pd.DataFrame:
    """Finished trials, best first by the first objective (within the study's constraints before outside them): state,
    baseline, epochs, time, metrics, params.

    ``complete``: the study's COMPLETE trials where the caller has read them already (reading is most of the cost)."""
    import pandas as pd

    objective, direction = objectives_of(study)[0]
    trials = []
    for state in FINISHED:
        if top and len(trials) >= top:
            break  # the table ranks whole states in this order: the rest would sort below the top
        trials += complete if state == TrialState.COMPLETE and complete is not None else stored_trials(study, (state,))
    table = pd.DataFrame([trial_row(trial) for trial in trials])
    if table.empty:
        return table
    rank = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}
    table["_rank"] = table["state"].map(rank)
    table["_infeasible"] = table["feasible"].eq(False) if "feasible" in table else False
    sort_by = ["_rank", "_infeasible", "epochs"] + ([objective] if objective in table else [])
    ascending = [True, True, False] + ([direction == "minimize"] if objective in table else [])
    table = table.sort_values(sort_by, ascending=ascending, na_position="last").drop(columns=["_rank", "_infeasible"])
    return table.head(top) if top else table


def select_trial(
    study: optuna.Study,
    *,
    trial_number: int | None = None,
    by: str | None = None,
    bounds: list[Bound] = (),
    maximize: bool | None = None,
) -> FrozenTrial:
    """One trial: by number, or the best COMPLETE trial by a metric among those within the bounds and the study's constraints."""
    if trial_number is not None:
        storage = _uncached(study)
        try:
            return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, trial_number))
        except KeyError:
            count = sum(count_by_state(storage, study._study_id).values())
            raise SelectionError(f"study {study.study_name} has no trial {trial_number} (trials 0..{count - 1})") from None
    objectives = dict(objectives_of(study))
    by = by or next(iter(objectives))
    complete = stored_trials(study, (TrialState.COMPLETE,))
    if not complete:
        raise SelectionError(f"study {study.study_name} has no COMPLETE trial yet; `tune resume {study.study_name}` to finish it")
    known = sorted({n[len(METRIC_PREFIX) :] for t in complete for n in t.user_attrs if n.startswith(METRIC_PREFIX)})
    for metric in [by, *(b.metric for b in bounds)]:
        if metric not in known:
            raise SelectionError(f"no trial of {study.study_name} recorded {metric!r}; recorded metrics: {', '.join(known)}")
    if maximize is None:
        maximize = objectives.get(by, "minimize") == "maximize"
    candidates = [t for t in complete if metric_value(t, by) is not None and feasible(t) and all(b.holds(t) for b in bounds)]
    if not candidates:
        within = [f"{b.metric} in [{b.low}, {b.high}]" for b in bounds]
        if constraints_of(study):
            within.append(f"its constraints ({described_constraints(constraints_of(study))})")
        raise SelectionError(f"no COMPLETE trial of {study.study_name} satisfies {', '.join(within)}")
    pick = max if maximize else min
    return pick(candidates, key=lambda t: metric_value(t, by))


def pareto_trials(study: optuna.Study, complete: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """The study's front: the COMPLETE trials within its constraints that no other beats in every objective's final
    value, best first by the first objective. ``complete``: the study's COMPLETE trials where the caller has read them."""
    from optuna.study._multi_objective import _is_pareto_front  # Optuna's own test of non-domination

    objectives = objectives_of(study)
    complete = stored_trials(study, (TrialState.COMPLETE,)) if complete is None else complete
    trials = [t for t in complete if feasible(t) and all(metric_value(t, name) is not None for name, _ in objectives)]
    if not trials:
        return []
    losses = np.array([_losses(t, objectives) for t in trials])
    front = [t for t, on_front in zip(trials, _is_pareto_front(losses, assume_unique_lexsorted=False)) if on_front]
    return sorted(front, key=lambda t: (_losses(t, objectives)[0], t.number))


def _losses(trial: FrozenTrial, objectives: Sequence[tuple[str, str]]) -> list[float]:
    """A trial's final objective values, each turned to be minimized (Optuna's convention for fronts and hypervolumes)."""
    return [metric_value(trial, name) * (1 if direction == "minimize" else -1) for name, direction in objectives]


def front_hypervolume(study: optuna.Study, reference: Sequence[float], complete: list[FrozenTrial] | None = None) -> float:
    """The objective space the study's front (:func:`pareto_trials`) dominates up to ``reference`` (one value per objective,
    worse than the trials that count), by Optuna's own hypervolume computation; trials beyond the reference add nothing.
    ``complete``: the COMPLETE trials to take the front of (default: all the study's)."""
    from optuna._hypervolume import compute_hypervolume  # what Optuna's plot_hypervolume_history computes with

    objectives = objectives_of(study)
    bound = np.array([value * (1 if direction == "minimize" else -1) for value, (_, direction) in zip(reference, objectives)])
    losses = np.array([_losses(t, objectives) for t in pareto_trials(study, complete)]).reshape(-1, len(objectives))
    return float(compute_hypervolume(losses[(losses <= bound).all(axis=1)], bound))


@dataclass(frozen=True)
class ComputeSummary:
    """Training time and epochs the study spent, and what ASHA saved by stopping trials early."""

    train_seconds: float
    epochs: int
    trials: int
    pruned_trials: int
    saved_seconds: float | None  # None when the study does not say how long an unpruned trial trains
    saved_epochs: int | None
    # the rule that stopped PRUNED trials (pruned_by's "RULE:") -> how many, and the epochs they did not train (or None)
    stopped_by: dict[str, tuple[int, int | None]] = field(default_factory=dict)


def search_method_of(study: optuna.Study) -> dict:
    """The search method of the study's last run as ``RunOptions`` fields (sampler, grid_knobs, grid_base); empty for a
    study whose runs did not store it."""
    return dict(study.user_attrs.get(STUDY_SEARCH_METHOD) or {})


def asha_settings(study: optuna.Study) -> AshaSettings | None:
    stored = study.user_attrs.get(STUDY_ASHA)
    return AshaSettings(**stored) if stored else None


def full_epochs(study: optuna.Study, asha: AshaSettings | None) -> int | None:
    """Epochs of an unpruned trial: ASHA's max_epochs, else the most any COMPLETE trial trained."""
    if asha:
        return asha.max_epochs
    trained = [t.user_attrs.get(ATTR_EPOCHS) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max((e for e in trained if isinstance(e, int)), default=None)


def compute_summary(study: optuna.Study, asha: AshaSettings | None) -> ComputeSummary:
    """Spent: train seconds and epochs of every trial. Saved: each PRUNED trial's untrained epochs at its own pace."""
    trials = study.get_trials(deepcopy=False)
    seconds = sum(float(t.user_attrs.get(ATTR_TRAIN_SECONDS, 0.0)) for t in trials)
    epochs = sum(int(t.user_attrs.get(ATTR_EPOCHS, 0)) for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    full = full_epochs(study, asha)
    saved_seconds, saved_epochs = (None, None) if full is None else (0.0, 0)
    stopped_by: dict[str, tuple[int, int | None]] = {}
    for trial in pruned:
        trained = int(trial.user_attrs.get(ATTR_EPOCHS, 0))
        untrained = None if full is None else max(0, full - trained)
        if untrained is not None:
            saved_epochs += untrained
            if trained:
                saved_seconds += untrained * float(trial.user_attrs.get(ATTR_TRAIN_SECONDS, 0.0)) / trained
        rule, colon, _ = str(trial.user_attrs.get(ATTR_PRUNED_BY, "")).partition(":")
        if colon:  # a trial stored before tune recorded why has no rule to count it under
            count, rule_untrained = stopped_by.get(rule, (0, 0))
            stopped_by[rule] = (count + 1, None if untrained is None else rule_untrained + untrained)
    return ComputeSummary(seconds, epochs, len(trials), len(pruned), saved_seconds, saved_epochs, stopped_by)


def headlines_of(study: optuna.Study) -> list[str]:
    """The metrics besides the objectives that the study's space named as what its log judged by."""
    return list(study.user_attrs.get(STUDY_HEADLINES, []))
