"""Fine-tuning in phases: one study per phase, each warm-started from the best trial of the phase before.

A space that fine-tunes in stages declares them beside its baselines:

``PHASES``      ``{name: {"dotted.knob": value}}`` in the order they run: the knobs each phase holds
                at fixed values (frozen or not, which blocks train, the loss weights of that stage).
                The other knobs are searched within the phase.
``WARM_START``  the dotted path of a fixed value of ``CONFIG`` that the trainer loads starting weights
                from (a Lightning checkpoint file, as ``trainers.base.fit`` writes one each epoch).

``tune phases SPACE.py`` runs one ordinary study per phase, ``SPACE-phase-A``, ``SPACE-phase-B``, ...
Each holds its phase's settings fixed; its first trial is the previous phase's best config with this
phase's settings applied (baseline ``best of phase A``), then the documented baselines that agree
with the phase's settings; and every trial starts from the weights the previous phase's best trial
ended with, a copy of that checkpoint kept beside Ray's experiment folders (Ray keeps only a trial's
last checkpoint, and only while its experiment folder stays). The first phase starts from the
space's own ``WARM_START`` value. Running the command again skips the phases whose study already
holds its trials and continues the first one that does not.

Example::

    from studies.driver.phases import run_phases
    from studies.driver.run import RunOptions
    from studies.space import load_space

    run_phases(load_space("search_spaces/state_tahoe.py"), RunOptions(trials=12), phases=["A", "B"])
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from studies.driver.run import (
    Queue,
    RunOptions,
    StudyError,
    baseline_queue,
    check_before_writing,
    count_states,
    ray_storage_location,
    run_study,
)
from studies.files import checked_name
from studies.records import ATTR_BASELINE, ATTR_CHECKPOINT, STUDY_PHASE, STUDY_TRIALS_REQUESTED
from studies.space import Space, SpaceError
from studies.store.catalog import select_trial
from studies.store.storage import open_storage, study_names
from trainers.base import CHECKPOINT_FILE

WARM_START_FOLDER = "phases"  # under Ray's storage path: the checkpoints a next phase starts from


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """The weights a phase's trials start from, and where they came from, in words."""

    checkpoint: Any  # the WARM_START value the phase's trials get
    source: str
    best: FrozenTrial | None = None  # the previous phase's best trial; None for the first phase


def declared_phases(space: Space) -> dict[str, dict[str, Any]]:
    """The space's ``PHASES`` (validated when the space loaded); a space without them cannot run in phases."""
    if not space.phases:
        raise SpaceError(
            f"{space.path.name} declares no PHASES; `tune phases` needs PHASES = {{name: {{knob: value}}}} in the order they run"
        )
    return space.phases


def phase_study_name(prefix: str, phase: str) -> str:
    return f"{prefix}-phase-{phase}"


def phase_queue(space: Space, settings: Mapping[str, Any], warm_start: WarmStart, previous: str | None) -> Queue:
    """The previous phase's best config under this phase's settings, then the baselines that agree with them."""
    queue: Queue = []
    if warm_start.best is not None:
        values = {**warm_start.best.params, **settings}
        params: dict[str, Any] = {}
        for knob in space.knobs:  # parents first, so a knob this phase switches off is left out
            if knob in values and space.active(knob, params):
                params[knob] = values[knob]
        queue.append((params, {ATTR_BASELINE: f"best of phase {previous}"}))
    agree = [(params, attrs) for params, attrs in baseline_queue(space) if all(params.get(k) == v for k, v in settings.items())]
    return queue + agree


def keep_best_checkpoint(study: optuna.Study, folder: Path) -> WarmStart:
    """A stable copy, under ``folder``, of the best COMPLETE trial's last checkpoint, for the next phase to start from
    (by the first objective, within the study's constraints: the trial `tune export` picks)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise StudyError(
            f"study {study.study_name} has no COMPLETE trial to warm-start the next phase from; run it with more --trials"
        )
    best = select_trial(study)
    kept = folder / checked_name(study.study_name) / f"best_trial_{best.number}.ckpt"
    if not kept.exists():
        source = Path(best.user_attrs.get(ATTR_CHECKPOINT, "")) / CHECKPOINT_FILE
        if not source.is_file():
            raise StudyError(
                f"the checkpoint of {study.study_name} trial {best.number} ({source}) is gone; "
                f"the next phase cannot start from its weights (run that phase again under a new --study prefix)"
            )
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_name(f".{kept.name}.partial")
        shutil.copyfile(source, partial)
        os.replace(partial, kept)  # atomic: an interrupted copy never looks like a checkpoint
    return WarmStart(str(kept), f"{study.study_name} trial {best.number} ({kept})", best)


def _existing_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study | None:
    if name not in study_names(storage):
        return None
    return optuna.load_study(study_name=name, storage=storage)


def _describe(study: optuna.Study, target: int, space: Space) -> str:
    counts = count_states(study)
    best = "-" if counts.best is None else f"{counts.best:.4g} (trial {select_trial(study).number})"
    return (
        f"{counts.finished} of {target} trials ({counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed), "
        f"best {space.objectives[0].name} {best}"
    )


def run_phases(space: Space, options: RunOptions, phases: Sequence[str] | None = None) -> list[optuna.Study]:
    """Run the chosen phases (default: all, in declared order), each as its own study; print one line per phase."""
    declared = declared_phases(space)
    unknown = [p for p in phases or [] if p not in declared]
    if unknown:
        raise SpaceError(f"{space.path.name} declares no phase {', '.join(unknown)}; its phases: {', '.join(declared)}")
    order = list(declared)
    chosen = [p for p in order if p in (phases or order)]
    prefix = options.study or space.name
    # Before the storage is opened: the phase studies' names become folder names (Ray's, the kept checkpoints').
    checked_name(space.name if options.study is None else options.study, "study prefix")
    for phase in chosen:
        checked_name(phase_study_name(prefix, phase), "phase study name", f"rename phase {phase!r} in the space's PHASES")
    check_before_writing(space, options)
    storage = open_storage(options.storage, create=True)
    before = {phase: order[i - 1] if i else None for i, phase in enumerate(order)}
    for phase in chosen:
        previous = before[phase]
        if (
            previous is not None
            and previous not in chosen
            and _existing_study(phase_study_name(prefix, previous), storage) is None
        ):
            raise StudyError(
                f"phase {phase} starts from phase {previous}'s best, but study {phase_study_name(prefix, previous)} "
                f"is not in the storage; run phase {previous} first (--phases {previous} {' '.join(chosen)})"
            )
    ray_storage = ray_storage_location(options.ray_storage)
    if "://" in ray_storage:
        raise StudyError(
            "tune phases needs --ray-storage to be a folder every node reaches: trainers load a phase's weights by path"
        )
    kept_folder = Path(ray_storage) / WARM_START_FOLDER
    warm_start_path = space.warm_start
    studies = []
    for phase in chosen:
        previous = before[phase]
        if previous is None:
            own = space.fixed[warm_start_path]
            warm_start = WarmStart(own, f"the space's own {warm_start_path}: {own}")
        else:
            previous_study = optuna.load_study(study_name=phase_study_name(prefix, previous), storage=storage)
            warm_start = keep_best_checkpoint(previous_study, kept_folder)
        name = phase_study_name(prefix, phase)
        study = _existing_study(name, storage)
        target = options.trials or (study and study.user_attrs.get(STUDY_TRIALS_REQUESTED)) or space.budget.trials
        done = study is not None and count_states(study).finished >= target and not study.get_trials(states=(TrialState.RUNNING,))
        if not done:
            phase_space = dataclasses.replace(space, fixed={**space.fixed, warm_start_path: warm_start.checkpoint})
            settings = declared[phase]
            phase_options = dataclasses.replace(
                options, study=name, trials=target, held=settings, study_attrs={STUDY_PHASE: {"prefix": prefix, "phase": phase}}
            )
            study = run_study(phase_space, phase_options, queue=phase_queue(space, settings, warm_start, previous))
            if count_states(study).finished < target or study.get_trials(states=(TrialState.RUNNING,)):
                raise StudyError(f"phase {phase} stopped before its {target} trials; run the same command again to continue it")
        skipped = " (skipped: it already holds its trials)" if done else ""
        print(f"phase {phase}: {name}{skipped}, {_describe(study, target, space)}; started from {warm_start.source}", flush=True)
        studies.append(study)
    return studies
