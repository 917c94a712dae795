"""A simulated backend for search-quality runs: the real deciders, a simulated clock (Syne Tune's idea).

A search-quality run asks one question: given a budget of epochs, which config does a method end up
recommending? Who decides is the searcher (``tune``'s bridge over an Optuna sampler, or a stock Ray
searcher) and the scheduler (Ray Tune's own ``ASHAScheduler``), or Optuna's own pruner. Those real
objects run here, called exactly as Ray Tune's controller calls them (``suggest``, then per epoch the
scheduler's ``on_trial_result`` and the searcher's ``on_trial_result``, or both ``on_trial_complete``
on the result that ends a trial); what is simulated is only the training: ``workers`` trials at a
time, each epoch one unit of time, the value read from a benchmark problem. A run then takes seconds
instead of the minutes a real Ray experiment spends starting processes, so hundreds of runs fit.

The clock is what a real cluster would see with equal epochs: a worker that frees up asks for the next
trial while the others are mid-training, so a searcher proposes with ``workers - 1`` trials running.

A method may pause a trial instead of stopping it, and later resume it where it paused (Syne Tune's pause-and-resume
schedulers: DyHPO, DEHB): as from a checkpoint taken at every epoch, the resumed trial trains on from its next epoch.
"""

from __future__ import annotations

import enum
import heapq
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from studies.records import RESULT_EPOCH

OBJECTIVE = "val_loss"


class BenchmarkProblem(Protocol):
    """What every family's problem offers: knobs as a space declares them, and curves to read."""

    name: str
    family: str
    knobs: dict
    max_epochs: int

    def observed(self, params: Mapping[str, Any], epoch: int, seed: int) -> float: ...

    def regret(self, params: Mapping[str, Any]) -> float: ...


class Decision(enum.Enum):
    """What a method says after a trial's epoch."""

    CONTINUE = "continue"
    STOP = "stop"
    PAUSE = "pause"  # stop for now; the method may resume the trial later


@dataclass(frozen=True)
class Resume:
    """A method's answer to ``ask``: train the paused trial ``trial_id`` on, instead of starting a new one."""

    trial_id: str


class Agent(Protocol):
    """One method's decisions: propose a config (or resume a paused trial), and say after each epoch what its trial does."""

    def ask(self, trial_id: str) -> dict | Resume | None: ...  # a new trial's params, or None: nothing more to run

    def epoch_done(self, trial_id: str, epoch: int, value: float, last: bool) -> Decision: ...


@dataclass
class Completion:
    """A trial that trained every epoch: when (epochs spent by then), its observed final value, its config."""

    spent: int
    value: float
    params: dict


@dataclass
class RunRecord:
    trials: int = 0
    full_trials: int = 0
    spent: int = 0
    completions: list[Completion] = field(default_factory=list)


@dataclass(order=True)
class _Training:
    finishes_at: int
    worker: int
    trial_id: str = field(compare=False)
    params: dict = field(compare=False)
    epoch: int = field(compare=False)


def simulate(agent: Agent, problem: BenchmarkProblem, seed: int, budget: int, workers: int) -> RunRecord:
    """Train ``agent``'s trials on ``workers`` simulated workers until ``budget`` epochs are spent."""
    record = RunRecord()
    running: list[_Training] = []
    paused: dict[str, _Training] = {}
    exhausted = False

    def start(worker: int, now: int) -> None:
        nonlocal exhausted
        if exhausted:
            return
        trial_id = str(record.trials)
        params = agent.ask(trial_id)
        if params is None:
            exhausted = True
            return
        if isinstance(params, Resume):
            if params.trial_id not in paused:
                raise ValueError(f"the method resumed trial {params.trial_id}, which is not paused")
            resumed = paused.pop(params.trial_id)
            heapq.heappush(running, _Training(now + 1, worker, resumed.trial_id, resumed.params, resumed.epoch + 1))
            return
        record.trials += 1
        heapq.heappush(running, _Training(now + 1, worker, trial_id, params, 1))

    for worker in range(workers):
        start(worker, 0)
    while running and record.spent < budget:
        training = heapq.heappop(running)
        record.spent += 1
        value = problem.observed(training.params, training.epoch, seed)
        diverged = not math.isfinite(value)  # tune's trainer stops a non-finite run at once
        last = training.epoch >= problem.max_epochs or diverged
        decision = agent.epoch_done(training.trial_id, training.epoch, value, last)
        if training.epoch >= problem.max_epochs and not diverged:
            record.full_trials += 1
            record.completions.append(Completion(record.spent, value, dict(training.params)))
        if decision is Decision.CONTINUE and not last:
            training.epoch += 1
            training.finishes_at += 1
            heapq.heappush(running, training)
        else:
            if decision is Decision.PAUSE and not last:
                paused[training.trial_id] = training
            start(training.worker, training.finishes_at)
    return record


class _Trial:
    """What Ray's ASHAScheduler reads of a trial: its id and its config."""

    def __init__(self, trial_id: str, config: dict):
        self.trial_id = trial_id
        self.config = config


class RayAgent:
    """A Ray Tune searcher and ASHAScheduler, called as Ray's controller calls them."""

    def __init__(self, searcher, scheduler, params_of: Callable[[dict], dict]):
        from ray.tune.schedulers import TrialScheduler

        self.searcher = searcher
        self.scheduler = scheduler
        self.params_of = params_of
        self.stop = TrialScheduler.STOP
        self.trials: dict[str, _Trial] = {}

    def ask(self, trial_id: str) -> dict | None:
        config = self.searcher.suggest(trial_id)
        if not config or config == "FINISHED":
            return None
        self.trials[trial_id] = _Trial(trial_id, config)
        self.scheduler.on_trial_add(None, self.trials[trial_id])
        return self.params_of(config)

    def epoch_done(self, trial_id: str, epoch: int, value: float, last: bool) -> Decision:
        result = {OBJECTIVE: value, RESULT_EPOCH: epoch, "training_iteration": epoch}  # Ray adds the iteration to every result
        trial = self.trials[trial_id]
        decision = self.scheduler.on_trial_result(None, trial, result)
        if decision == self.stop or last:
            self.scheduler.on_trial_complete(None, trial, result)
            self.searcher.on_trial_complete(trial_id, result)
            return Decision.STOP
        self.searcher.on_trial_result(trial_id, result)
        return Decision.CONTINUE


class OptunaPrunerAgent:
    """Plain Optuna: ``study.ask``, ``trial.report`` each epoch, its pruner's ``should_prune``, ``study.tell``."""

    def __init__(self, study, suggest: Callable[[Any], dict]):
        self.study = study
        self.suggest = suggest
        self.trials: dict[str, Any] = {}

    def ask(self, trial_id: str) -> dict | None:
        trial = self.study.ask()
        self.trials[trial_id] = trial
        return self.suggest(trial)

    def epoch_done(self, trial_id: str, epoch: int, value: float, last: bool) -> Decision:
        from optuna.trial import TrialState

        trial = self.trials[trial_id]
        if not math.isfinite(value):
            self.study.tell(trial, state=TrialState.FAIL)
            return Decision.STOP
        trial.report(value, epoch)
        if last:
            self.study.tell(trial, value)
            return Decision.STOP
        if trial.should_prune():
            self.study.tell(trial, state=TrialState.PRUNED)
            return Decision.STOP
        return Decision.CONTINUE


class SyneTuneAgent:
    """A Syne Tune scheduler (its searcher inside), called as Syne Tune's tuner calls it: ``suggest``, then per epoch
    ``on_trial_result``, and ``on_trial_complete`` at the last epoch, ``on_trial_remove`` when it stops or pauses the
    trial. The scheduler reads a trial's epoch from ``RESULT_EPOCH`` and its epoch limit from the config's
    ``max_epochs_key``; a pause-and-resume scheduler sets that limit to the rung a trial is to reach, and a suggestion
    may resume a paused trial (with a new limit) instead of starting one."""

    def __init__(self, scheduler, max_epochs_key: str):
        self.scheduler = scheduler
        self.max_epochs_key = max_epochs_key
        self.trials: dict[str, Any] = {}

    def ask(self, trial_id: str) -> dict | None:
        import datetime

        from syne_tune.backend.trial_status import Trial

        suggestion = self.scheduler.suggest(int(trial_id))
        if suggestion is None:
            return None
        if not suggestion.spawn_new_trial_id:  # as the tuner's backend resumes a trial: with the new config, if one
            resumed = self.trials[str(suggestion.checkpoint_trial_id)]
            resumed.config = dict(suggestion.config or resumed.config)
            return Resume(str(suggestion.checkpoint_trial_id))
        trial = Trial(trial_id=int(trial_id), config=dict(suggestion.config), creation_time=datetime.datetime.now())
        self.trials[trial_id] = trial
        self.scheduler.on_trial_add(trial)
        return {name: value for name, value in suggestion.config.items() if name != self.max_epochs_key}

    def epoch_done(self, trial_id: str, epoch: int, value: float, last: bool) -> Decision:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        trial = self.trials[trial_id]
        if not math.isfinite(value):
            self.scheduler.on_trial_error(trial)
            return Decision.STOP
        result = {OBJECTIVE: value, RESULT_EPOCH: epoch}
        decision = self.scheduler.on_trial_result(trial, result)
        if last:
            self.scheduler.on_trial_complete(trial, result)
            return Decision.STOP
        if decision != SchedulerDecision.CONTINUE:
            self.scheduler.on_trial_remove(trial)
            return Decision.PAUSE if decision == SchedulerDecision.PAUSE else Decision.STOP
        if epoch >= trial.config[self.max_epochs_key]:  # the training script ends at the limit; the tuner sees it complete
            self.scheduler.on_trial_complete(trial, result)
            return Decision.STOP
        return Decision.CONTINUE
