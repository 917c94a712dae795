"""ASHA with its rungs rebuilt from the storage: Ray's ``ASHAScheduler`` keeps what each rung recorded in memory only.

A run that goes on with a study (``tune resume``, a second ``tune run``, another driver) starts its rungs with every
stored trial's value there, as one uninterrupted run would hold them: new trials are judged against all earlier
ones, and a continued trial, already recorded at the rungs it passed, is not judged at them again.

With several brackets, Ray's ASHA draws each trial's bracket at random; here the bridge chose it (the trial config's
``first_rung``), and a continued trial keeps the one it had.

With ``final_gate`` (the default search method's), the step from the last rung to the last epoch has a second bar: a
trial goes on only if, at the last rung, it is no worse than the best trial that trained every epoch was there. Under
asynchronous ASHA a search that improves keeps clearing the top-1/eta bar set by its earlier, worse trials, so most of
its budget went to training near-equal configs to the end (19 of 30 trainings' worth on the search-quality benchmark);
only a trial that may beat the recommended one needs its last epochs, and the epochs saved go to new configs.
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


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _stored_key(number: int) -> str:
    return f"stored trial {number}"  # never a Ray trial id


class StoredRungsASHA(ASHAScheduler):
    """Ray's ASHA, its rungs starting with the stored trials' values; a continued trial takes over its own.

    ``final_gate``: past the last rung only a trial no worse there than the best trial that trained every epoch was."""

    def __init__(self, curves: Curves, final_gate: bool = False, **asha):
        super().__init__(**asha)
        self._curves = curves
        below_last_epoch = [rung for rung, _ in self._brackets[0]._rungs if rung < self._max_t]
        self._gate_rung = max(below_last_epoch) if final_gate and below_last_epoch else None
        self._at_gate: dict[str, float] = {}  # trial -> its value at the gate rung, signed as ASHA's (higher is better)
        self._best_finished: tuple[float, float | None] | None = None  # (last-epoch value, value at the gate), signed

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        accepted = super().set_search_properties(metric, mode, **spec)
        if accepted:  # only now is the sign known by which ASHA compares values
            for bracket in self._brackets:
                for rung, recorded in bracket._rungs:
                    for number, curve in self._curves.items():
                        value = value_at_rung(curve, rung)
                        if value is not None:
                            recorded[_stored_key(number)] = self._metric_op * value
            if self._gate_rung is not None:
                for number, curve in self._curves.items():
                    gate_value = value_at_rung(curve, self._gate_rung)
                    if gate_value is not None:
                        self._at_gate[_stored_key(number)] = self._metric_op * gate_value
                    if max(curve) >= self._max_t and math.isfinite(curve[max(curve)]):
                        self._finished(_stored_key(number), self._metric_op * curve[max(curve)])
        return accepted

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if self._gate_rung is None or self._time_attr not in result or not _finite(result.get(self._metric)):
            return decision
        value = self._metric_op * result[self._metric]
        if result[self._time_attr] >= self._max_t:
            self._finished(trial.trial_id, value)
        elif result[self._time_attr] >= self._gate_rung and trial.trial_id not in self._at_gate:  # judged at the gate now
            self._at_gate[trial.trial_id] = value
            bar = self._best_finished[1] if self._best_finished else None
            if decision == self.CONTINUE and bar is not None and value < bar:
                self._num_stopped += 1
                return self.STOP
        return decision

    def _finished(self, key: str, value: float) -> None:
        """A trial that trained every epoch: the new best one if its last value beats the best so far."""
        if self._best_finished is None or value > self._best_finished[0]:
            self._best_finished = (value, self._at_gate.get(key))

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
        if key in self._at_gate:
            self._at_gate[trial.trial_id] = self._at_gate.pop(key)


def stored_rungs_asha(asha: AshaSettings, curves: Curves, metric: str | None = None, mode: str | None = None) -> StoredRungsASHA:
    """The run's ASHA: its rungs and brackets as ``asha`` says, started with the stored ``curves``."""
    return StoredRungsASHA(
        curves, final_gate=asha.final_gate, time_attr="epoch", metric=metric, mode=mode, max_t=asha.max_epochs,
        grace_period=asha.grace_period, reduction_factor=asha.reduction_factor, brackets=len(asha.first_rungs),
    )  # fmt: skip
