"""Running a study: the Optuna study in its storage, Ray Tune with ASHA, and the bridge between them."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from studies.bridge import Counts, LiveView, OptunaBridge, RecordRayEvents
from studies.errors import UserInputError
from studies.records import (
    ATTR_BASELINE,
    ATTR_DRIVER,
    ATTR_REPEAT_OF,
    STUDY_ASHA,
    STUDY_BASELINES_QUEUED,
    STUDY_CREATED_BY,
    STUDY_FINGERPRINT,
    STUDY_OBJECTIVES,
    STUDY_SPACE_PATH,
    STUDY_TRIALS_REQUESTED,
)
from studies.space import SAMPLERS, Space
from studies.storage import open_storage

RAY_FOLDER = "ray"


class StudyError(UserInputError):
    """A study that cannot be run as asked; the message says what to do instead."""


@dataclass
class RunOptions:
    study: str | None = None
    storage: str | None = None
    sampler: str | None = None
    trials: int | None = None
    max_epochs: int | None = None
    time_budget_s: float | None = None
    address: str | None = None
    seed: int | None = None
    grid_knobs: list[str] | None = None  # with --sampler grid: grid only these, hold the rest at grid_base
    grid_base: str | None = None
    prune: bool = True  # False: every trial trains max_epochs (repeats compare like with like)
    verbose: bool = False
    command: str = ""


def make_sampler(name: str, space: Space, options: RunOptions) -> optuna.samplers.BaseSampler:
    seed = options.seed
    if name not in SAMPLERS:
        raise StudyError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    if name == "tpe":
        # constant_liar: trials running in parallel are not proposed the same config twice.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        grid = optuna.samplers.GridSampler(space.grid(options.grid_knobs), seed=seed)
        if not options.grid_knobs:
            return grid
        # A log's grid over a few knobs (flyvis: batch size x learning rate), the rest as one baseline has them.
        base = options.grid_base or next(iter(space.baselines), None)
        if base is None:
            raise StudyError(f"--grid-knobs needs a baseline of {space.name} to hold the other knobs at; the space has none")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.PartialFixedSampler(space.held_at(base, options.grid_knobs), grid)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


def open_study(space: Space, options: RunOptions, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create the study, or continue it if it was made from the same search space."""
    storage = open_storage(options.storage, create=True)
    name = options.study or space.name
    objective = space.objectives[0]
    if name in {s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)}:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        stored = study.user_attrs.get(STUDY_FINGERPRINT)
        if stored != space.fingerprint:
            raise StudyError(
                f"study {name!r} exists with a different search space (knobs or objectives changed); "
                f"pass --study NEW_NAME to start a new study, or restore {Path(study.user_attrs.get(STUDY_SPACE_PATH, '?')).name}"
            )
        return study
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction=objective.direction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([objective.name])
    study.set_user_attr(STUDY_SPACE_PATH, str(space.path))
    study.set_user_attr(STUDY_FINGERPRINT, space.fingerprint)
    study.set_user_attr(STUDY_OBJECTIVES, [[o.name, o.direction] for o in space.objectives])
    study.set_user_attr(STUDY_CREATED_BY, options.command)
    _note_on_dashboard(study, space, options.command)
    return study


def _note_on_dashboard(study: optuna.Study, space: Space, command: str) -> None:
    from optuna_dashboard import save_note

    objectives = ", ".join(f"{o.name} ({o.direction})" for o in space.objectives)
    save_note(study, f"Created by `{command}` from `{space.path.name}`.\n\nObjectives: {objectives}; the first drives ASHA.")


Queue = list[tuple[dict, dict]]
"""Configs to run first, each with the user attributes its trial gets: ``[(params, attrs), ...]``."""


def baseline_queue(space: Space) -> Queue:
    return [(params, {ATTR_BASELINE: name}) for name, params in space.baselines.items()]


def enqueue_once(study: optuna.Study, queue: Queue) -> None:
    """The queued configs go first, once per study (a resumed study does not get them again)."""
    if study.user_attrs.get(STUDY_BASELINES_QUEUED):
        return
    for params, attrs in queue:
        # A repeat study queues the same config several times on purpose; a baseline twice would be a slip.
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=ATTR_REPEAT_OF not in attrs)
    study.set_user_attr(STUDY_BASELINES_QUEUED, True)


def _driver_alive(owner: str | None) -> bool:
    """Whether the driver that owns a RUNNING trial still runs (checked for drivers on this host)."""
    import socket

    if not owner or ":" not in owner:
        return False
    host, pid = owner.rsplit(":", 1)
    if host != socket.gethostname():
        return True  # another machine's driver: leave its trials alone
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def orphaned_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose driver is gone: continued, from their checkpoint, by this driver."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in running if not _driver_alive(t.user_attrs.get(ATTR_DRIVER))]


def count_states(study: optuna.Study) -> Counts:
    counts = Counts()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        if trial.state == TrialState.COMPLETE:
            counts.complete += 1
            value = trial.value
            if counts.best is None or (value < counts.best if study.direction.name == "MINIMIZE" else value > counts.best):
                counts.best = value
        elif trial.state == TrialState.PRUNED:
            counts.pruned += 1
        else:
            counts.failed += 1
    return counts


def _quiet_ray(verbose: bool) -> None:
    """Ray's console noise (its own tables, worker logs, deprecation notes) only with -v."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not verbose:
        os.environ.setdefault("RAY_TQDM", "0")
        logging.getLogger("ray").setLevel(logging.ERROR)


def _start_ray(options: RunOptions) -> None:
    import ray

    if ray.is_initialized():
        return
    ray.init(
        address=options.address or "local",  # never attach to a cluster by accident
        include_dashboard=False,
        log_to_driver=options.verbose,
        logging_level=logging.INFO if options.verbose else logging.ERROR,
        configure_logging=True,
    )


def _concurrency(space: Space) -> int:
    """How many trials the cluster's resources hold at once."""
    import ray

    total = ray.cluster_resources()
    fits = [math.floor(total.get("CPU", 0) / space.resources.cpus + 1e-9)]
    if space.resources.gpus:
        fits.append(math.floor(total.get("GPU", 0) / space.resources.gpus + 1e-9))
    return max(1, min(fits))


def _grid_size(space: Space, grid_knobs: list[str] | None) -> int:
    """Trials a grid study needs: every grid point (baselines run besides, as Optuna's GridSampler skips enqueued trials)."""
    return math.prod(len(values) for values in space.grid(grid_knobs).values())


def _trial_folder(trial) -> str:
    """Ray's folder per trial, named by the Optuna trial number (Ray's default spells out the whole config)."""
    return f"trial_{trial.config['optuna_trial']}_{trial.trial_id}"


def run_study(space: Space, options: RunOptions, queue: Queue | None = None) -> optuna.Study:
    """Run (or continue) the study until it holds the requested number of finished trials."""
    sampler_name = options.sampler or space.sampler
    sampler = make_sampler(sampler_name, space, options)
    max_epochs = options.max_epochs or space.budget.max_epochs
    if max_epochs < 1:
        raise StudyError(f"--max-epochs must be at least 1 (got {max_epochs})")
    if not options.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(space, options, sampler)
    enqueue_once(study, baseline_queue(space) if queue is None else queue)
    default = _grid_size(space, options.grid_knobs) + len(space.baselines) if sampler_name == "grid" else space.budget.trials
    target = options.trials or study.user_attrs.get(STUDY_TRIALS_REQUESTED) or default
    study.set_user_attr(STUDY_TRIALS_REQUESTED, target)
    counts = count_states(study)
    orphans = orphaned_trials(study)
    new_trials = max(0, target - counts.finished - len(orphans))
    if not orphans and new_trials == 0:
        print(f"study {study.study_name} already has {counts.finished} finished trials (asked for {target}); pass --trials to run more")
        return study

    _quiet_ray(options.verbose)
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from studies.trainable import train_trial

    _start_ray(options)
    objective = space.objectives[0]
    bridge = OptunaBridge(study, space, max_epochs=max_epochs, new_trials=new_trials, orphans=orphans, counts=counts)
    grace = min(space.budget.grace_period, max_epochs) if options.prune else max_epochs
    study.set_user_attr(STUDY_ASHA, {"max_epochs": max_epochs, "grace_period": grace, "reduction_factor": space.budget.reduction_factor})
    scheduler = ASHAScheduler(
        time_attr="epoch", max_t=max_epochs, grace_period=grace, reduction_factor=space.budget.reduction_factor
    )
    storage_path = Path(os.environ.get("TUNE_RAY_STORAGE", Path("tune_runs") / RAY_FOLDER)).resolve()
    resources = {"cpu": space.resources.cpus, "gpu": space.resources.gpus}
    live_view = LiveView(counts, target, objective.name)
    if orphans:
        print(f"continuing {len(orphans)} interrupted trial(s) from their last checkpoint", file=sys.stderr)
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(train_trial, resources),
        tune_config=ray.tune.TuneConfig(
            metric=objective.name,
            mode=bridge.mode,
            search_alg=ConcurrencyLimiter(bridge, max_concurrent=_concurrency(space)),
            scheduler=scheduler,
            num_samples=len(orphans) + new_trials,
            time_budget_s=options.time_budget_s,
            # A reused worker keeps torch and Lightning imported: seconds saved per trial.
            reuse_actors=True,
            trial_dirname_creator=_trial_folder,
            trial_name_creator=_trial_folder,
        ),
        run_config=ray.tune.RunConfig(
            name=f"{study.study_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(storage_path),
            verbose=2 if options.verbose else 0,
            callbacks=[RecordRayEvents(bridge), live_view],
            checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=1),
            failure_config=ray.tune.FailureConfig(max_failures=2),
        ),
    )
    tuner.fit()
    interrupted = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if interrupted:
        print(
            f"{len(interrupted)} trial(s) interrupted; `tune resume {study.study_name}` continues them", file=sys.stderr
        )
    return study
