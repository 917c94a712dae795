"""The bridge between Ray Tune and the Optuna storage.

Stock ``ray.tune.search.optuna.OptunaSearch`` tells Optuna that a trial ASHA stopped is COMPLETE
with its last low-epoch value, which poisons the sampler and every later question about the study.
:class:`OptunaBridge` records what really happened, in the storage, as it happens:

- every validation epoch: the first objective as an intermediate value (in a Pareto study, every
  objective's value as a system attribute: Optuna's intermediate values hold one objective), the train
  seconds so far, and the path of the epoch's checkpoint;
- a trial that trained ``max_epochs``: COMPLETE with its final first-objective value (every objective's
  in a Pareto study), and its best epoch's weights (by the first objective) as an Optuna artifact;
- a trial ASHA stopped earlier: PRUNED, with the epoch it reached and why it was stopped (``pruned_by``);
- a COMPLETE or PRUNED trial of a constrained study: how far its final metrics lie outside each range,
  as Optuna's ``constraints`` (what every sampler, ``best_trials`` and the dashboard read);
- a trial that raised: FAIL with the error's last line, the traceback kept;
- a non-finite objective (or constrained metric): FAIL with reason "diverged";
- always: final and best-epoch metrics, epochs, train seconds, device, the space file's hash.

A trial interrupted with its driver (Ctrl-C, kill -9, time budget) stays RUNNING with its checkpoint
path; the next driver on the study continues it from there, or from epoch 1 when it had none (see
:func:`studies.driver.heartbeat.orphaned_trials`). Its curve is then the attempt's that ran last (an
earlier attempt's epochs past where that one ended are NaN), and its train seconds count every attempt.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import optuna
from optuna.samplers._base import _CONSTRAINTS_KEY  # Optuna's own record of a trial's constraint violations
from optuna.trial import TrialState
from ray.tune import Callback, Checkpoint
from ray.tune.search import Searcher

from studies.records import (
    ATTR_BEST_CHECKPOINT,
    ATTR_BEST_EPOCH,
    ATTR_BEST_EPOCH_METRICS,
    ATTR_CHECKPOINT,
    ATTR_CHECKPOINT_EPOCH,
    ATTR_CONTINUED_AT_EPOCH,
    ATTR_DEVICE,
    ATTR_DRIVER,
    ATTR_EPOCHS,
    ATTR_FIRST_RUNG,
    ATTR_GPU_IDS,
    ATTR_PRUNED_BY,
    ATTR_REASON,
    ATTR_SPACE_SHA,
    ATTR_TRACEBACK,
    ATTR_TRAIN_SECONDS,
    ATTR_TRAINING_CONFIG,
    ATTR_WORLD_SIZE,
    EPOCH_VALUES_PREFIX,
    METRIC_PREFIX,
    REASON_DIVERGED,
    RESULT_DEVICE,
    RESULT_EPOCH,
    RESULT_EPOCH_SECONDS,
    RESULT_ERROR,
    RESULT_GPU_IDS,
    RESULT_TRACEBACK,
    RESULT_WORLD_SIZE,
)
from studies.rung_tpe import FirstRungChoice
from studies.space import Space
from studies.store.catalog import constraints_of, epoch_values
from studies.store.storage import holding_writes
from trainers.base import BEST_CHECKPOINT_FILE

# Ray adds these to every result; they are not the model's metrics.
RAY_RESULT_KEYS = {
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "date", "done", "pid", "hostname",
    "node_ip", "time_since_restore", "iterations_since_restore", "checkpoint_dir_name", "trial_id",
    "experiment_tag", "config", "should_checkpoint",
    RESULT_EPOCH, RESULT_EPOCH_SECONDS,  # kept as the epochs and train_seconds attributes instead
    RESULT_WORLD_SIZE,  # kept as the world_size attribute: where it trained, not how well
}  # fmt: skip


def driver_id() -> str:
    """Which driver process owns a running trial: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def model_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers the trainer reported, without Ray's bookkeeping."""
    return {
        name: float(value)
        for name, value in result.items()
        if name not in RAY_RESULT_KEYS
        and not name.startswith("config/")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


@dataclass
class _Running:
    """What the driver knows about one live trial."""

    trial: optuna.Trial
    epoch: int = 0  # the last epoch reported, by this driver or, for a continued trial, an earlier one
    best_value: float | None = None
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_result: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0  # every attempt's: a continued trial's earlier attempts count too
    continued: bool = False  # a trial whose earlier driver was lost, now trained on by this one
    superseded: set[int] = field(default_factory=set)  # epochs an earlier attempt reported past where this one went on from
    checkpoint: Checkpoint | None = None  # this driver's latest of the trial, in Ray's storage: it holds the best epoch's weights


@dataclass
class Counts:
    """Finished trials by state, for the live view."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best: float | None = None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


class OptunaBridge(Searcher):
    """A Ray Tune searcher whose every decision and record goes through an Optuna study."""

    def __init__(
        self,
        study: optuna.Study,
        space: Space,
        *,
        max_epochs: int,
        target: int,
        orphans: Iterable[optuna.trial.FrozenTrial] = (),
        counts: Counts | None = None,
        artifacts: optuna.artifacts.FileSystemArtifactStore | None = None,
        first_rungs: list[int] | None = None,
        gate_rung: int | None = None,
    ):
        objective = space.objectives[0]
        super().__init__(metric=objective.name, mode="min" if objective.direction == "minimize" else "max")
        self.study = study
        self.space = space
        self.searched = [o.name for o in space.objectives][: len(study.directions)]  # the objectives Optuna is told
        self.constraints = constraints_of(study)
        self.max_epochs = max_epochs
        self.target = target  # finished trials the study should hold, whichever drivers run them
        self.orphans = list(orphans)
        self.counts = counts or Counts()
        self.running: dict[str, _Running] = {}
        self.last_asked_among: list[optuna.trial.FrozenTrial] | None = None  # the study's trials as the last Study.ask read them
        self._finished_run = 0  # how many of the study's first trials are all finished (_slots_taken)
        self.space_sha = space.file_sha256
        self.driver = driver_id()
        self.artifacts = artifacts  # where each COMPLETE trial's best-epoch weights go; None: nowhere
        # ASHA's brackets' first rungs: with more than one, each new trial's is chosen here (StoredRungsASHA reads it).
        self.first_rung_choice = FirstRungChoice(study.direction, first_rungs) if len(first_rungs or []) > 1 else None
        self.gate_rung = gate_rung  # the gated scheduler's last rung (AshaSettings.gate_rung): each trial is told if it applies
        self.stop_reasons: dict[str, str] = {}  # Ray trial id -> why the scheduler stopped it short (StoredRungsASHA writes it)

    # -- Ray's Searcher interface ------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict | None:
        if self.orphans:
            frozen = self.orphans.pop(0)
            trial = optuna.Trial(self.study, frozen._trial_id)
            resume_from = frozen.user_attrs.get(ATTR_CHECKPOINT)
            # Training goes on from the checkpoint's epoch (a later reported epoch, if any, is trained again).
            epoch = int(frozen.user_attrs.get(ATTR_CHECKPOINT_EPOCH, 0)) if resume_from else 0
            curve = epoch_values(frozen)
            value = curve.get(epoch)
            last_result = {RESULT_EPOCH: epoch, self.metric: value} if value is not None else {}
            train_seconds = float(frozen.user_attrs.get(ATTR_TRAIN_SECONDS, 0.0))
            continued = True
            kept = {e: v for e, v in curve.items() if e <= epoch and math.isfinite(v)}
            superseded = {e for e in curve if e > epoch}
            first_rung = frozen.user_attrs.get(ATTR_FIRST_RUNG)  # the bracket it had
        elif self._slots_taken(self.last_asked_among) < self.target or self._slots_taken() < self.target:
            trial = self.study.ask()
            self.last_asked_among = self.study._get_trials(deepcopy=False, use_cache=True)  # Study.ask's read, its sampler's too
            if self._slots_taken(self.last_asked_among, upto=trial._trial_id) > self.target:
                # Another driver took the last slot between the count and the ask: the empty trial goes back to the queue.
                self.study._storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
                return Searcher.FINISHED
            resume_from = None
            epoch, last_result, train_seconds, continued, kept, superseded = 0, {}, 0.0, False, {}, set()
            first_rung = self.first_rung_choice.for_new_trial(self.study) if self.first_rung_choice else None
        else:
            return Searcher.FINISHED
        # The gate is lifted for the trial while the finished trials show its rung misleading (StoredRungsASHA reads it).
        # Paired by task and seed with the gate always on, regret at the full budget (benchmarks' bohb-gated, 20 seeds): -0.007
        # (-0.012 to -0.002) on generated tasks 8 to 23, -0.003 (-0.005 to -0.001) on 24 to 39, no measured change on the
        # synthetic, recorded, YAHPO and generated 0 to 7 (there +0.006, -0.000 to +0.011, at half the budget); adopted on
        # those, then -0.004 (-0.007 to -0.001) on the 32 unseen generated tasks, no measured change on the 10 unseen YAHPO
        # data sets (2026-12-06).
        choice = self.first_rung_choice
        gated = self.gate_rung is not None and not (choice and choice.misleads(self.study, self.gate_rung))
        # Until its writes are committed, other drivers see the trial as asked for and not yet tagged (heartbeat.trial_lost).
        with holding_writes(self.study, trial._trial_id):
            trial.set_user_attr(ATTR_DRIVER, self.driver)
            if self.first_rung_choice and not continued:
                trial.set_user_attr(ATTR_FIRST_RUNG, first_rung)
            # An orphan whose driver was lost mid-draw draws the rest now; Optuna returns the params already drawn unchanged.
            params = self.space.suggest(trial)
            trial.set_user_attr(ATTR_TRAINING_CONFIG, json.dumps(self.space.training_config(params)))
            trial.set_user_attr(ATTR_SPACE_SHA, self.space_sha)
        live = _Running(
            trial, epoch=epoch, last_result=last_result, train_seconds=train_seconds, continued=continued, superseded=superseded
        )
        for kept_epoch, value in sorted(kept.items()):  # a continued trial's best epoch may predate its lost driver
            if live.best_value is None or self._better(value, live.best_value):
                live.best_value, live.best_epoch = value, kept_epoch
        self.running[trial_id] = live
        self.counts.running += 1
        return {
            "optuna_trial": trial.number,
            "params": params,
            "training_config": self.space.training_config(params),
            "space_path": str(self.space.path),
            "max_epochs": self.max_epochs,
            "objective": self.metric,
            "resume_from": resume_from,
            "first_rung": first_rung,
            "gated": gated,
        }

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        live = self.running.get(trial_id)
        if live is not None:
            self._absorb(live, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:
            return  # Ray's own failure (worker died past its retries): RecordRayEvents tells it with Ray's message
        live = self.running.pop(trial_id, None)
        if live is None:
            return
        self.counts.running -= 1
        stopped_because = self.stop_reasons.pop(trial_id, None)
        if result:
            # Ray skips on_trial_result for the result on which the scheduler stops a trial.
            self._absorb(live, result)
        result = live.last_result
        if RESULT_ERROR in result:
            self._fail(live, result[RESULT_ERROR], result.get(RESULT_TRACEBACK, ""), result)
            return
        epochs = live.epoch
        needed = list(dict.fromkeys([*self.searched, *self.constraints]))  # what Optuna is told, and what it is bounded by
        unreported = [name for name in needed if result.get(name) is None]
        diverged = [name for name in needed if name not in unreported and not math.isfinite(result[name])]
        if unreported:
            self._fail(live, f"the trainer reported no {unreported[0]}", "", result)
        elif diverged:
            self._fail(live, REASON_DIVERGED, f"{diverged[0]} became {result[diverged[0]]} at epoch {epochs}", result)
        else:
            self._record(live, result, epochs, stopped_because if epochs < self.max_epochs else None)
            violations = [max(low - result[name], result[name] - high) for name, (low, high) in self.constraints.items()]
            if violations:  # what Optuna's constraints_func would store, for every search method
                live.trial.storage.set_trial_system_attr(live.trial._trial_id, _CONSTRAINTS_KEY, violations)
            if epochs >= self.max_epochs:
                self._keep_best_weights(live)  # before tell: a finished trial takes no more attributes
                value = float(result[self.metric])
                self.study.tell(live.trial, [float(result[name]) for name in self.searched], state=TrialState.COMPLETE)
                self.counts.complete += 1
                within = all(v <= 0 for v in violations)
                if within and (self.counts.best is None or self._better(value, self.counts.best)):
                    self.counts.best = value
            else:
                self.study.tell(live.trial, state=TrialState.PRUNED)
                self.counts.pruned += 1

    def fail_from_ray(self, trial_id: str, reason: str, traceback_text: str) -> None:
        """A trial Ray gave up on (its worker died more often than the retry limit)."""
        live = self.running.pop(trial_id, None)
        if live is not None:
            self.counts.running -= 1
            self._fail(live, reason, traceback_text, live.last_result)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the Optuna storage holds the searcher's whole state."""

    def record_checkpoint(self, trial_id: str, path: str, epoch: int, filesystem=None) -> None:
        """A checkpoint Ray stored at ``path`` (on ``filesystem``, a pyarrow one: where Ray's storage is a URI)."""
        live = self.running.get(trial_id)
        if live is not None:
            live.trial.set_user_attr(ATTR_CHECKPOINT, path)
            live.trial.set_user_attr(ATTR_CHECKPOINT_EPOCH, epoch)
            live.checkpoint = Checkpoint(path, filesystem) if filesystem is not None else None

    # -- helpers -----------------------------------------------------------------------------

    def _keep_best_weights(self, live: _Running) -> None:
        """The best epoch's weights, which the trial's last checkpoint holds, as an Optuna artifact: the dashboard lists it."""
        if self.artifacts is None or live.checkpoint is None:
            return
        with live.checkpoint.as_directory() as folder:
            best = os.path.join(folder, BEST_CHECKPOINT_FILE)
            if os.path.exists(best):
                artifact_id = optuna.artifacts.upload_artifact(
                    artifact_store=self.artifacts, file_path=best, study_or_trial=live.trial
                )
                live.trial.set_user_attr(ATTR_BEST_CHECKPOINT, artifact_id)

    def _slots_taken(self, trials: list[optuna.trial.FrozenTrial] | None = None, upto: int | None = None) -> int:
        """Finished and RUNNING trials of every driver among ``trials`` (None: the study's now); with ``upto``, only those
        created no later than that trial.

        Counting from the list the last ask read spares a read of a 10 000-trial study for each suggestion. That list
        lacks only trials other drivers asked for since, which the count after the ask catches; it counts one more only
        where another driver gave a slot back, so a count that finds the study full is checked on a fresh read. Counting by
        creation order settles a race: of two drivers that each asked for the last slot, the later trial is surplus.
        """
        trials = self.study.get_trials(deepcopy=False) if trials is None else trials
        # A finished trial stays finished: the run of them the study starts with is counted once, not at each suggestion.
        while self._finished_run < len(trials) and trials[self._finished_run].state.is_finished():
            self._finished_run += 1
        taken = [t for t in trials[self._finished_run :] if t.state != TrialState.WAITING]  # RUNNING or finished
        if upto is None:
            return self._finished_run + len(taken)
        # The list is in creation order: only trials other drivers asked for since are past ``upto``.
        return (
            self._finished_run + len(taken) - sum(1 for _ in itertools.takewhile(lambda t: t._trial_id > upto, reversed(taken)))
        )

    def _absorb(self, live: _Running, result: Mapping[str, Any]) -> None:
        """Record one validation epoch's result once, however Ray delivers it."""
        epoch = int(result.get(RESULT_EPOCH, 0))
        if RESULT_ERROR in result:
            live.last_result = dict(result)
            return
        # A continued trial may report its checkpoint's epoch again: the last one, when it had trained it whole.
        stored_by_earlier_driver = bool(live.last_result) and epoch == live.epoch
        if live.last_result and (epoch < live.epoch or (stored_by_earlier_driver and not live.continued)):
            return
        if live.continued:
            live.trial.set_user_attr(ATTR_CONTINUED_AT_EPOCH, epoch)
            live.continued = False
        live.last_result = dict(result)
        live.epoch = epoch
        if not stored_by_earlier_driver:  # a restored last checkpoint's epoch comes again untrained
            live.train_seconds += float(result.get(RESULT_EPOCH_SECONDS, 0.0))
            # Each epoch, not each checkpoint: a trial continued after its driver was lost counts every attempt's training.
            live.trial.set_user_attr(ATTR_TRAIN_SECONDS, round(live.train_seconds, 3))
        value = result.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        if not stored_by_earlier_driver:
            # Through the storage: Trial.report would keep an earlier attempt's value of an epoch trained again.
            self._store_epoch(live, epoch, result)
            live.superseded.discard(epoch)
        if live.best_value is None or self._better(value, live.best_value):
            live.best_value, live.best_epoch = float(value), epoch
            live.best_metrics = model_metrics(result)

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def _store_epoch(self, live: _Running, epoch: int, result: Mapping[str, Any]) -> None:
        """One epoch's values as :func:`studies.store.catalog.epoch_values` reads them; NaN (None) for an objective not in ``result``.

        A Pareto study's keep every objective, as a system attribute: Optuna's intermediate values hold one objective, and
        its multi-objective TPE cannot rank PRUNED trials that have them."""
        storage, trial_id = live.trial.storage, live.trial._trial_id
        values = [result.get(name) for name in self.searched]
        if len(values) > 1:
            finite = [float(v) if v is not None and math.isfinite(v) else None for v in values]
            storage.set_trial_system_attr(trial_id, f"{EPOCH_VALUES_PREFIX}{epoch}", finite)
        else:
            storage.set_trial_intermediate_value(trial_id, epoch, math.nan if values[0] is None else float(values[0]))

    def _record(self, live: _Running, result: Mapping[str, Any], epochs: int, pruned_by: str | None = None) -> None:
        for epoch in sorted(live.superseded):  # the stored curve is the attempt's that ran last: no value where it did not reach
            self._store_epoch(live, epoch, {})
        live.superseded.clear()
        metrics = model_metrics(result)
        attrs: dict[str, Any] = {f"{METRIC_PREFIX}{name}": value for name, value in metrics.items()}
        if pruned_by:
            attrs[ATTR_PRUNED_BY] = pruned_by
        attrs.update(
            {
                ATTR_EPOCHS: epochs,
                ATTR_TRAIN_SECONDS: round(live.train_seconds, 3),
                ATTR_DEVICE: result.get(RESULT_DEVICE, "unknown"),
                ATTR_GPU_IDS: result.get(RESULT_GPU_IDS, []),
                ATTR_WORLD_SIZE: result.get(RESULT_WORLD_SIZE, 1),
                ATTR_BEST_EPOCH: live.best_epoch,
                ATTR_BEST_EPOCH_METRICS: json.dumps(live.best_metrics),
            }
        )
        with holding_writes(self.study, live.trial._trial_id):
            for name, value in attrs.items():
                live.trial.set_user_attr(name, value)

    def _fail(self, live: _Running, reason: str, traceback_text: str, result: Mapping[str, Any]) -> None:
        with holding_writes(self.study, live.trial._trial_id):  # the record and its reason in one commit
            self._record(live, result, live.epoch)
            live.trial.set_user_attr(ATTR_REASON, reason)
            if traceback_text:
                live.trial.set_user_attr(ATTR_TRACEBACK, traceback_text[-8000:])
        self.study.tell(live.trial, state=TrialState.FAIL)
        self.counts.failed += 1


class RecordRayEvents(Callback):
    """Hands the bridge what only Ray's callbacks see: checkpoint paths and Ray's own trial errors."""

    def __init__(self, bridge: OptunaBridge):
        self.bridge = bridge

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # The checkpoint came with the trial's latest result, which the searcher may not have seen yet.
        self.bridge.record_checkpoint(
            trial.trial_id, checkpoint.path, int(trial.last_result.get(RESULT_EPOCH, 0)), checkpoint.filesystem
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        text = ""
        if trial.error_file and os.path.exists(trial.error_file):
            with open(trial.error_file) as handle:
                text = handle.read()
        last_line = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "Ray trial error")
        self.bridge.fail_from_ray(trial.trial_id, last_line.strip(), text)


class LiveView(Callback):
    """One concise progress line: running / complete / pruned / failed, best so far, elapsed time."""

    def __init__(self, counts: Counts, total: int, objective: str):
        from tqdm import tqdm

        self.counts = counts
        self.objective = objective
        self.started = time.monotonic()
        self.bar = tqdm(total=total, initial=counts.finished, unit="trial", dynamic_ncols=True, leave=True)
        self._refresh()

    def __getstate__(self) -> dict:
        """Ray pickles its callbacks with the experiment; a live terminal bar is not part of that state."""
        return {**self.__dict__, "bar": None}

    def _refresh(self) -> None:
        if self.bar is None:
            return
        best = "-" if self.counts.best is None else f"{self.counts.best:.4g}"
        self.bar.set_postfix_str(
            f"running {self.counts.running} | complete {self.counts.complete} | pruned {self.counts.pruned} "
            f"| failed {self.counts.failed} | best {self.objective} {best}",
            refresh=False,
        )
        self.bar.n = min(self.counts.finished, self.bar.total)
        self.bar.refresh()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._refresh()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._refresh()

    def on_experiment_end(self, trials, **info) -> None:
        self._refresh()
        if self.bar is not None:
            self.bar.close()
