"""ASHA with its rungs rebuilt from the storage: Ray's ``ASHAScheduler`` keeps what each rung recorded in memory only.

A run that goes on with a study (``tune resume``, a second ``tune run``, another driver) starts its rungs with every
stored trial's value there, as one uninterrupted run would hold them: new trials are judged against all earlier
ones, and a continued trial, already recorded at the rungs it passed, is not judged at them again.

With several brackets, Ray's ASHA draws each trial's bracket at random; here the bridge chose it (the trial config's
``first_rung``), and a continued trial keeps the one it had.
"""

from __future__ import annotations

import math

import optuna
from ray.tune.schedulers import ASHAScheduler

from studies.space import AshaSettings
from studies.store.catalog import epoch_values

Curves = dict[int, dict[int, float]]
"""Stored trials' first-objective values by trial number, then epoch: ``{number: {epoch: value}}``."""


def stored_curves(study: optuna.Study) -> Curves:
    """Every stored trial's reported epochs: plain data, as Ray pickles its scheduler with the experiment."""
    return {t.number: curve for t in study.get_trials(deepcopy=False) if (curve := epoch_values(t))}  # a Pareto study's too


def value_at_rung(curve: dict[int, float], rung: int) -> float | None:
    """What ASHA recorded for a trial at ``rung``: its value at the first epoch it reported there or later."""
    reached = [epoch for epoch in curve if epoch >= rung]
    value = curve[min(reached)] if reached else math.nan
    return value if math.isfinite(value) else None


def _stored_key(number: int) -> str:
    return f"stored trial {number}"  # never a Ray trial id


class StoredRungsASHA(ASHAScheduler):
    """Ray's ASHA, its rungs starting with the stored trials' values; a continued trial takes over its own."""

    def __init__(self, curves: Curves, **asha):
        super().__init__(**asha)
        self._curves = curves

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        accepted = super().set_search_properties(metric, mode, **spec)
        if accepted:  # only now is the sign known by which ASHA compares values
            for bracket in self._brackets:
                for rung, recorded in bracket._rungs:
                    for number, curve in self._curves.items():
                        value = value_at_rung(curve, rung)
                        if value is not None:
                            recorded[_stored_key(number)] = self._metric_op * value
        return accepted

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        first_rung = trial.config.get("first_rung")
        chosen = [bracket for bracket in self._brackets if bracket._rungs[-1][0] == first_rung]
        if chosen:  # the bridge's choice, not Ray's random draw
            self._trial_info[trial.trial_id] = chosen[0]
        key = _stored_key(trial.config.get("optuna_trial"))
        for bracket in self._brackets:
            for _, recorded in bracket._rungs:
                if key in recorded:  # a continued trial: recorded where it passed, so judged only at rungs beyond
                    recorded[trial.trial_id] = recorded.pop(key)


def stored_rungs_asha(asha: AshaSettings, curves: Curves, metric: str | None = None, mode: str | None = None) -> StoredRungsASHA:
    """The run's ASHA: its rungs and brackets as ``asha`` says, started with the stored ``curves``."""
    return StoredRungsASHA(
        curves, time_attr="epoch", metric=metric, mode=mode, max_t=asha.max_epochs, grace_period=asha.grace_period,
        reduction_factor=asha.reduction_factor, brackets=len(asha.first_rungs),
    )  # fmt: skip
