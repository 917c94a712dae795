"""ASHA with its rungs rebuilt from the storage: Ray's ``ASHAScheduler`` keeps what each rung recorded in memory only.

A run that goes on with a study (``tune resume``, a second ``tune run``, another driver) starts its rungs with every
stored trial's value there, as one uninterrupted run would hold them: new trials are judged against all earlier
ones, and a continued trial, already recorded at the rungs it passed, is not judged at them again.

With several brackets, Ray's ASHA draws each trial's bracket at random; here the bridge chose it (the trial config's
``first_rung``), and a continued trial keeps the one it had.

With ``gated`` (the default search method's), ASHA spends no epochs on trials that cannot tell anything new:

- **The step from the last rung to the last epoch has a second bar**: a trial goes on only if, gaining from the last
  rung to the last epoch as much as any trial that trained every epoch did, it would end better than the best of them.
  Under asynchronous ASHA a search that improves keeps clearing the top-1/eta bar set by its earlier, worse trials, so
  most of its budget went to training near-equal configs to the end (19 of 30 trainings' worth on the search-quality
  benchmark); only a trial that may beat the recommended one needs its last epochs, and the epochs saved go to new
  configs. A tie stops too: the recommendation holds that result.
  Until 2026-12-07 the gain counted on was the best trial's own: a trial had to be better at the rung than that trial had
  been there. One noisy value at the rung and one at the end then decide, and where curves cross after the rung the
  config that would end best is stopped. Paired with that bar (``benchmarks/gate_gain.py``'s ablation, and with the rows
  the noisy, corner and YAHPO sections stored under it, 10 seeds on the first two's tasks and 20 on YAHPO's 15 data sets;
  the ablation reproduces such rows run for run), at the full budget: -0.026 (-0.034 to -0.018) regret on the 16 noisy
  tasks, -0.008 (-0.014 to -0.002) on YAHPO's 10 held-out data sets and +0.002 (-0.003 to +0.008) on its first 5,
  +0.004 (-0.010 to +0.019) on the 16 corner tasks (+0.030, +0.016 to +0.044, on the first 4 of them alone), and on
  every other family no measured difference (-0.008 to +0.007); at half the budget -0.016 on the noisy tasks, -0.006 and
  +0.010 (-0.001 to +0.020) on YAHPO's, +0.004 on the corner tasks and +0.015 (+0.000 to +0.030) on 4 held-out generated
  tasks.
  Two softer bars were measured and not taken: better there than one of the 3 best trials that trained every epoch was
  (corner and many-knobs tasks and YAHPO's 15 data sets, 20 and 10 seeds, full budget: -0.011 on many-knobs and on
  YAHPO's held-out 10, +0.005 on its first 5, +0.008 on corner); and behind the best one's value there by less than
  sqrt(2) of one epoch's noise (estimated from the finished trials' second differences past the rung), on the same tasks
  and seeds as this bar: -0.020 (-0.040 to +0.001) on the noisy tasks, +0.000 on YAHPO's held-out 10, +0.010 (-0.001 to
  +0.021) on the 16 corner tasks and +0.025 (+0.007 to +0.043) on the first 4, -0.009 to +0.023 on the other families.
  A bar between this one and the one before, the most gain among the finished trials at least as good at the rung, was
  measured too (``benchmarks/gate_gain.py``'s 35 tasks, 20 seeds, paired with this bar, 2026-12-07): at the full budget
  -0.012 (-0.023 to -0.001) on the corner tasks, +0.006 (+0.001 to +0.011) on the recorded curves, -0.011 to +0.009 and no
  measured difference on the other families, +0.001 (-0.004 to +0.006) over all: not taken.
  The bridge lifts this bar for a trial (its config's ``gated`` False) that starts while the finished trials show the last
  rung misleading, as they show a first rung (:meth:`studies.rung_tpe.FirstRungChoice.misleads`): a bar set at a rung
  whose ranking does not hold later stops the configs that would end best.
- **A trial whose first two epochs repeat an earlier trial's exactly is stopped**: training is deterministic in its
  config and seed, so it would go on as that one did. Configs that differ only in a knob that changes nothing (flyvis's
  ``use_tf32_matmul`` or ``train_step`` on a CPU) train to the same values; so do configs that a table of recorded
  curves answers from the same row. On the search-quality benchmark's recorded curves a model-based search proposed
  such copies of its leader over and over (36 of 195 trials in one run), each trained to the last rung it passed.

Every trial stopped short of the last epoch gets its reason, the rule first (``ASHA: ...``, ``repeat: ...``,
``gate: ...``), in ``stop_reasons``: the bridge stores it as the PRUNED trial's ``pruned_by``.
"""

from __future__ import annotations

import math

import optuna
from ray.tune.schedulers import ASHAScheduler

from studies.records import PRUNED_BY_ASHA, PRUNED_BY_GATE, PRUNED_BY_REPEAT
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


# Two epochs, not one: a first epoch alone may coincide (an accuracy over a few hundred samples takes few values).
REPEAT_EPOCHS = 2


def _stored_key(number: int) -> str:
    return f"stored trial {number}"  # never a Ray trial id


class StoredRungsASHA(ASHAScheduler):
    """Ray's ASHA, its rungs starting with the stored trials' values; a continued trial takes over its own.

    ``gated``: a trial repeating an earlier one's first two epochs is stopped, and past ``gate_rung`` (the settings'
    :attr:`AshaSettings.gate_rung`, as the bridge has it) goes only a trial that, gaining from there as much as any trial
    that trained every epoch did, would end better than the best of them (``gate_by_most_gain`` False: as much as the best
    one did, the gate before 2026-12-07: better there than it was)."""

    def __init__(
        self,
        curves: Curves,
        gated: bool = False,
        gate_rung: int | None = None,
        stop_reasons: dict[str, str] | None = None,
        gate_by_most_gain: bool = True,
        **asha,
    ):
        super().__init__(**asha)
        self._curves = curves
        # Ray trial id -> why it was stopped short of its last epoch: the bridge stores it on the PRUNED trial.
        self.stop_reasons = {} if stop_reasons is None else stop_reasons
        self._numbers: dict[str, int] = {}  # trial key (a Ray trial id, or a stored trial's) -> its Optuna trial number
        self._gate_rung = gate_rung if gated else None
        self._at_gate: dict[str, float] = {}  # trial -> its value at the gate rung, signed as ASHA's (higher is better)
        # (last-epoch value, value at the gate, the trial's key) of the best finished trial, values signed
        self._best_finished: tuple[float, float | None, str] | None = None
        self._gate_by_most_gain = gate_by_most_gain
        self._most_gain: float | None = None  # the most a finished trial gained from the gate to its last epoch, signed
        self._gated = gated
        self._opening: dict[str, tuple] = {}  # trial -> its first (epoch, value) results, up to REPEAT_EPOCHS of them
        self._first_with: dict[tuple, str] = {}  # REPEAT_EPOCHS (epoch, value) results -> the trial that had them first
        self._stored_openings: dict[str, tuple] = {}  # stored trial key -> its opening, for a continued trial to take back
        self._past_gate_freely: set[str] = set()  # trials whose config says ``gated`` False: only ASHA judges them

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        accepted = super().set_search_properties(metric, mode, **spec)
        if accepted:  # only now is the sign known by which ASHA compares values
            self._numbers.update({_stored_key(number): number for number in self._curves})
            for bracket in self._brackets:
                for rung, recorded in bracket._rungs:
                    for number, curve in self._curves.items():
                        value = value_at_rung(curve, rung)
                        if value is not None:
                            recorded[_stored_key(number)] = self._metric_op * value
            for number, curve in self._curves.items() if self._gated else ():
                key = _stored_key(number)
                opening = tuple(sorted(curve.items())[:REPEAT_EPOCHS])
                if len(opening) == REPEAT_EPOCHS and all(math.isfinite(value) for _, value in opening):
                    self._stored_openings[key] = opening
                    self._first_with.setdefault(opening, key)
                if self._gate_rung is not None:
                    gate_value = value_at_rung(curve, self._gate_rung)
                    if gate_value is not None:
                        self._at_gate[key] = self._metric_op * gate_value
                    if max(curve) >= self._max_t and math.isfinite(curve[max(curve)]):
                        self._finished(key, self._metric_op * curve[max(curve)])
        return accepted

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = self._judged(trial.trial_id, result, super().on_trial_result(tune_controller, trial, result))
        epoch = result.get(self._time_attr)
        if decision == self.STOP and trial.trial_id not in self.stop_reasons and epoch is not None and epoch < self._max_t:
            reason = f"{PRUNED_BY_ASHA}: outside the best 1/{self._reduction_factor:g} at epoch {epoch:g}"
            self.stop_reasons[trial.trial_id] = reason
        return decision

    def _judged(self, trial_id: str, result: dict, decision: str) -> str:
        """ASHA's ``decision`` on the trial's ``result``, or STOP where a gated rule stops it (its reason recorded)."""
        if not self._gated or self._time_attr not in result or not _finite(result.get(self._metric)):
            return decision
        epoch = result[self._time_attr]
        # Every trial's opening is recorded, ASHA's stopped ones too: a later copy of those repeats them as well.
        repeated = self._repeated(trial_id, epoch, result[self._metric])
        if decision == self.CONTINUE and repeated is not None:
            reason = f"{PRUNED_BY_REPEAT}: its first {REPEAT_EPOCHS} epochs are trial {self._numbers.get(repeated)}'s exactly"
            return self._stop(trial_id, reason)
        if self._gate_rung is None:
            return decision
        value = self._metric_op * result[self._metric]
        if epoch >= self._max_t:
            self._finished(trial_id, value)
        elif epoch >= self._gate_rung and trial_id not in self._at_gate:  # judged at the gate now
            self._at_gate[trial_id] = value
            bar = self._gate_bar()
            judged = decision == self.CONTINUE and trial_id not in self._past_gate_freely
            if judged and bar is not None and value <= bar:  # a tie cannot beat the recommended trial either
                leader = self._numbers.get(self._best_finished[2])
                reason = (
                    f"{PRUNED_BY_GATE}: at epoch {epoch:g} too far behind trial {leader}, the best that trained every epoch, "
                    "to pass it even gaining from here as much as any such trial did"
                )
                return self._stop(trial_id, reason)
        return decision

    def _gate_bar(self) -> float | None:
        """The value at the gate rung a trial must beat to go on, signed as ASHA's: the best finished trial's last value less
        the most any finished trial gained from the gate rung to its last epoch (with ``gate_by_most_gain`` False, the
        best finished trial's own gain: its value at the gate); None while no finished trial has a value there."""
        best = self._best_finished
        if best is None or not self._gate_by_most_gain:
            return None if best is None else best[1]
        return None if self._most_gain is None else best[0] - self._most_gain

    def _stop(self, trial_id: str, reason: str) -> str:
        self._num_stopped += 1
        self.stop_reasons[trial_id] = reason
        return self.STOP

    def _repeated(self, trial_id: str, epoch: int, value: float) -> str | None:
        """The earlier trial whose first REPEAT_EPOCHS results the trial's, this one the last, repeat exactly; else None."""
        opening = self._opening.get(trial_id, ())
        if len(opening) >= REPEAT_EPOCHS:
            return None
        opening += ((epoch, value),)
        self._opening[trial_id] = opening
        if len(opening) < REPEAT_EPOCHS:
            return None
        first = self._first_with.setdefault(opening, trial_id)
        return first if first != trial_id else None

    def _finished(self, key: str, value: float) -> None:
        """A trial that trained every epoch: its gain from the gate rung counted, and the new best one if its last value beats
        the best so far."""
        if key in self._at_gate:
            gain = value - self._at_gate[key]
            self._most_gain = gain if self._most_gain is None else max(self._most_gain, gain)
        if self._best_finished is None or value > self._best_finished[0]:
            self._best_finished = (value, self._at_gate.get(key), key)

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        first_rung = trial.config.get("first_rung")
        chosen = [bracket for bracket in self._brackets if bracket._rungs[-1][0] == first_rung]
        if chosen:  # the bridge's choice, not Ray's random draw
            self._trial_info[trial.trial_id] = chosen[0]
        self._numbers[trial.trial_id] = trial.config.get("optuna_trial")
        if trial.config.get("gated") is False:
            self._past_gate_freely.add(trial.trial_id)
        key = _stored_key(trial.config.get("optuna_trial"))
        for bracket in self._brackets:
            for _, recorded in bracket._rungs:
                if key in recorded:  # a continued trial: recorded where it passed, so judged only at rungs beyond
                    recorded[trial.trial_id] = recorded.pop(key)
        if key in self._at_gate:
            self._at_gate[trial.trial_id] = self._at_gate.pop(key)
        if key in self._stored_openings:  # trained again from its start, it repeats its own first epochs
            self._first_with[self._stored_openings.pop(key)] = trial.trial_id


def stored_rungs_asha(
    asha: AshaSettings,
    curves: Curves,
    metric: str | None = None,
    mode: str | None = None,
    stop_reasons: dict[str, str] | None = None,
    gate_by_most_gain: bool = True,
) -> StoredRungsASHA:
    """The run's ASHA: its rungs and brackets as ``asha`` says, started with the stored ``curves``; why it stopped each trial
    short goes to ``stop_reasons`` (by Ray trial id)."""
    return StoredRungsASHA(
        curves, gated=asha.gated, gate_rung=asha.gate_rung, stop_reasons=stop_reasons, gate_by_most_gain=gate_by_most_gain,
        time_attr="epoch", metric=metric,
        mode=mode, max_t=asha.max_epochs, grace_period=asha.grace_period, reduction_factor=asha.reduction_factor,
        brackets=len(asha.first_rungs),
    )  # fmt: skip
