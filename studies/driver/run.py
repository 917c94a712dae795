"""Running a study in three steps, as Syne Tune splits a tuner loop into scheduler, backend and loop:

1. :func:`plan_study`, the Optuna side: every option checked before anything is written, then the study
   opened or created in its storage, the documented configs queued once, the trial target stored.
2. :func:`build_tuner`, the Ray side: the bridge as Ray Tune's searcher, ASHA as its scheduler (its rungs rebuilt
   from the storage), the trainable with the resources of one trial, as many trials at once as the cluster holds.
3. :func:`run_study` joins them under this driver's heartbeat, continuing lost drivers' trials first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.stopper import Stopper

from studies.driver.bridge import Counts, LiveView, OptunaBridge, RecordRayEvents
from studies.driver.heartbeat import Heartbeat, claim_orphans, how_orphans_go_on, orphaned_trials
from studies.driver.trackers import EndTrialRuns, Trackers, chosen_trackers
from studies.errors import TrialsInterrupted, UserInputError
from studies.files import checked_name
from studies.records import (
    ATTR_BASELINE,
    ATTR_REPEAT_OF,
    STUDY_ASHA,
    STUDY_BASELINES_QUEUED,
    STUDY_CONSTRAINTS,
    STUDY_CREATED_BY,
    STUDY_FINGERPRINT,
    STUDY_HEADLINES,
    STUDY_OBJECTIVES,
    STUDY_SEARCH_METHOD,
    STUDY_SETTINGS_STORED,
    STUDY_SPACE_PATH,
    STUDY_SPACE_SHA,
    STUDY_TRIALS_REQUESTED,
)
from studies.samplers import SAMPLERS, SamplerSettings, hold, make_sampler, method_for
from studies.space import AshaSettings, Constraints, Resources, Space, constraint_problem
from studies.store.catalog import constraints_of, constraints_record, described_constraints, feasible, half_made, is_pareto
from studies.store.storage import artifact_store, check_url, failures_of, open_storage, redacted, study_names
from trainers.base import remove_orphaned_checkpoints

RAY_FOLDER = "ray"


class StudyError(UserInputError):
    """A study that cannot be run as asked; the message says what to do instead."""


# A lost worker (killed process, preempted node, the OOM killer) is rare and rarely strikes one trial thrice;
# a config that kills its worker every time then costs 3 attempts, not the whole budget.
MAX_RETRIES = 2
# A checkpoint costs tens of milliseconds to save and store: every epoch of a long training, but not every
# 0.05-s epoch of a small one. At most this much training is redone after a lost worker or driver.
CHECKPOINT_EVERY_S = 10.0
# A DDP trial's Tune actor only drives Ray Train, whose workers hold the CPUs and GPUs: it reserves memory, not a CPU.
DDP_DRIVER_MEMORY = 256 * 2**20


@dataclass
class RunOptions:
    study: str | None = None
    storage: str | None = None
    sampler: str | None = None
    trials: int | None = None
    max_epochs: int | None = None
    time_budget_s: float | None = None
    address: str | None = None
    ray_storage: str | None = None  # where Ray keeps checkpoints: a folder or pyarrow URI every node reaches
    seed: int | None = None
    grid_knobs: list[str] | None = None  # with --sampler grid: grid only these, hold the rest at grid_base
    grid_base: str | None = None
    prune: bool = True  # False: every trial trains max_epochs (repeats compare like with like)
    held: dict[str, Any] | None = None  # knobs every sampled trial keeps at these values (a phase's own settings)
    pareto: bool = False  # search every objective jointly (--pareto); else the space's SEARCH decides
    constraints: Constraints | None = None  # --constrain: laid over the space's CONSTRAINTS, metric by metric
    study_attrs: dict[str, Any] | None = None  # user attributes a new study is created with (what `tune resume` needs)
    gpus_per_trial: float | None = None  # replaces the space's Resources.gpus: a fraction packs trials, a whole number > 1 is DDP
    max_retries: int = MAX_RETRIES  # times a trial whose worker process died is continued from its checkpoint
    checkpoint_every_s: float = CHECKPOINT_EVERY_S  # 0: every epoch
    log: list[str] | None = None  # trackers besides TensorBoard (--log mlflow, --log wandb)
    verbose: bool = False
    command: str = ""

    def sampler_settings(self) -> SamplerSettings:
        return SamplerSettings(seed=self.seed, grid_knobs=self.grid_knobs, grid_base=self.grid_base)


def ray_storage_path() -> Path:
    """Where Ray keeps experiment folders and checkpoints: ``$TUNE_RAY_STORAGE``, else ``tune_runs/ray``."""
    return Path(os.environ.get("TUNE_RAY_STORAGE", Path("tune_runs") / RAY_FOLDER)).resolve()


def ray_storage_location(chosen: str | None) -> str:
    """``--ray-storage``: a folder every node reaches, or a URI pyarrow opens (s3://, gs://, ...); else :func:`ray_storage_path`."""
    if not chosen:
        return str(ray_storage_path())
    if "://" not in chosen:
        return str(Path(chosen).resolve())
    import pyarrow.fs

    try:
        pyarrow.fs.FileSystem.from_uri(chosen)  # what Ray does with it: fail here, in one line, before any trial starts
    except Exception as exc:  # pyarrow raises ArrowInvalid, ArrowNotImplementedError, OSError... for a URI it cannot open
        reason = str(exc).strip().splitlines()[0]
        raise StudyError(f"--ray-storage {chosen}: {reason}; pass a shared folder or a URI pyarrow opens") from exc
    return chosen


# A study's settings are a dozen storage writes, made in well under a second; a driver that has not stored them within
# this was stopped while making it, and the study is completed or made anew as half-made.
MAKING_TIMEOUT_S = 10.0


def open_study(space: Space, options: RunOptions, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create the study, or continue it if it was made from the same search space; one left half-made is completed or made anew."""
    storage = open_storage(options.storage, create=True)
    name = options.study or space.name
    if name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        _wait_until_made(study)  # another driver may be making it this moment: its baselines must not be queued twice
        if half_made(study):
            return _complete_or_remake(study, storage, space, options, sampler)
        stored = study.user_attrs.get(STUDY_FINGERPRINT)
        if stored != space.fingerprint:
            raise StudyError(
                f"study {name!r} exists with a different search space (knobs or objectives changed); "
                f"pass --study NEW_NAME to start a new study, or restore {Path(study.user_attrs.get(STUDY_SPACE_PATH, '?')).name}"
            )
        _check_same_search(study, options)
        sha = space.file_sha256
        # The file `tune resume` and `tune repeat` import: as this run loaded it (or as `--allow-changed-space` accepted it).
        if study.user_attrs.get(STUDY_SPACE_PATH) == str(space.path) and study.user_attrs.get(STUDY_SPACE_SHA) != sha:
            study.set_user_attr(STUDY_SPACE_SHA, sha)
        return study
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=_directions(space, options))
    except optuna.exceptions.DuplicatedStudyError:  # another driver made it since the check above: join it once made
        return open_study(space, options, sampler)
    return _store_settings(study, space, options)


def _wait_until_made(study: optuna.Study, timeout: float = MAKING_TIMEOUT_S) -> None:
    """Wait while the driver that made ``study`` stores its settings; past ``timeout`` it counts as stopped mid-way."""
    deadline = time.monotonic() + timeout
    while half_made(study) and time.monotonic() < deadline:
        time.sleep(0.2)


def _directions(space: Space, options: RunOptions) -> list[str]:
    """The Optuna study's directions: every objective's in a Pareto search, else the first objective's."""
    return [o.direction for o in space.objectives][: None if options.pareto else 1]


def _check_same_search(study: optuna.Study, options: RunOptions) -> None:
    """A study goes on with the search it was made with: of every objective or of the first, within the same constraints."""
    if is_pareto(study) != options.pareto:
        made, fix = ("a Pareto search", "pass --pareto") if is_pareto(study) else ("a first-objective search", "drop --pareto")
        raise StudyError(
            f"study {study.study_name} was made with {made}; {fix} to continue it (`tune resume` does), or pass --study NEW_NAME"
        )
    if constraints_of(study) != (options.constraints or {}):
        made = described_constraints(constraints_of(study)) or "no constraints"
        raise StudyError(
            f"study {study.study_name} was made with {made}; pass the same --constrain to continue it (`tune resume` does), "
            "or pass --study NEW_NAME"
        )


def _complete_or_remake(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    space: Space,
    options: RunOptions,
    sampler: optuna.samplers.BaseSampler,
) -> optuna.Study:
    """A study left half-made (no trial ever started): completed when this space may be the one it was made from, else made anew."""
    directions = _directions(space, options)
    made_from = [d.name.lower() for d in study.directions]
    own = study.user_attrs.get(STUDY_FINGERPRINT) in (None, space.fingerprint) and made_from == directions
    what = "completing it" if own else "it was being made from another search space: making it anew"
    print(f"study {study.study_name} was left half-made by a run stopped while making it; {what}", file=sys.stderr, flush=True)
    if not own:
        optuna.delete_study(study_name=study.study_name, storage=storage)
        study = optuna.create_study(study_name=study.study_name, storage=storage, sampler=sampler, directions=directions)
    return _store_settings(study, space, options)


def _store_settings(study: optuna.Study, space: Space, options: RunOptions) -> optuna.Study:
    """What a new study stores about itself; :func:`plan_study` marks the study made once its own writes are done too."""
    # First: a half-made study that stores its space path stores its phase too, so `tune resume` runs it as its phase.
    for key, value in (options.study_attrs or {}).items():
        study.set_user_attr(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in space.objectives][: len(study.directions)])
    study.set_user_attr(STUDY_SPACE_PATH, str(space.path))
    study.set_user_attr(STUDY_SPACE_SHA, space.file_sha256)
    study.set_user_attr(STUDY_FINGERPRINT, space.fingerprint)
    study.set_user_attr(STUDY_OBJECTIVES, [[o.name, o.direction] for o in space.objectives])
    study.set_user_attr(STUDY_HEADLINES, space.headlines)
    study.set_user_attr(STUDY_CONSTRAINTS, constraints_record(options.constraints or {}))
    command = redacted(options.command)  # a storage URL's password is never stored
    study.set_user_attr(STUDY_CREATED_BY, command)
    _note_on_dashboard(study, space, command)
    return study


def _note_on_dashboard(study: optuna.Study, space: Space, command: str) -> None:
    from optuna_dashboard import save_note

    objectives = ", ".join(f"{o.name} ({o.direction})" for o in space.objectives)
    searched = "searched jointly (Pareto), the first drives ASHA" if is_pareto(study) else "the first drives ASHA"
    within = described_constraints(constraints_of(study))
    constrained = f"\n\nConstraints: {within}; the sampler learns to avoid configs outside them." if within else ""
    save_note(study, f"Created by `{command}` from `{space.path.name}`.\n\nObjectives: {objectives}; {searched}.{constrained}")


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


def count_states(study: optuna.Study) -> Counts:
    counts = Counts()
    minimize = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        if trial.state == TrialState.COMPLETE:
            counts.complete += 1
            value = trial.values[0]  # the first objective's, in a Pareto study too
            better = counts.best is None or (value < counts.best if minimize else value > counts.best)
            if better and feasible(trial):
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
    # The Optuna storage holds the answers: Ray's CSV and TensorBoard copies of every result would only cost driver time.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not verbose:
        os.environ.setdefault("RAY_TQDM", "0")
        # Ray's own error logs too: every trial error and a lost storage reach the user as one line, and the storage.
        logging.getLogger("ray").setLevel(logging.CRITICAL)


# Ray's switch for a machine that runs no cluster (its default on macOS and Windows): the node's address is 127.0.0.1,
# and Ray's GCS, raylet and workers then listen on loopback only. Ray reads it when imported and where it looks up
# the node's address; its own processes inherit it.
RAY_NO_CLUSTER = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _loopback_only() -> None:
    """A local Ray, started by this driver, that nothing off this machine can reach: a local run needs no other machine."""
    from ray._private import ray_constants

    os.environ[RAY_NO_CLUSTER] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # Ray may have been imported before the variable was set


def _start_ray(options: RunOptions) -> None:
    import ray

    if ray.is_initialized():
        return
    if not options.address:
        _loopback_only()
    try:
        ray.init(
            address=options.address or "local",  # never attach to a cluster by accident
            include_dashboard=False,
            log_to_driver=options.verbose,
            logging_level=logging.INFO if options.verbose else logging.CRITICAL,
            configure_logging=True,
        )
    except (ConnectionError, ValueError) as exc:  # Ray's words for an address that is unreachable or malformed
        raise StudyError(
            f"no Ray cluster answers at --address {options.address} ({str(exc).strip().splitlines()[0]}); "
            "start one with `ray start --head`, check the address, or give this driver the cluster's "
            "RAY_AUTH_MODE and RAY_AUTH_TOKEN"
        ) from exc


# Set by Ctrl-C while trials run: the run then ends as a spent --time-budget ends it (Ray Tune's own Ctrl-C handling
# would too, but then returns as if the run were done).
CTRL_C = threading.Event()


@contextlib.contextmanager
def _ctrl_c_ends_the_run():
    """A first Ctrl-C stops every trial where it is, its last checkpoint stored; a second one stops at once."""
    CTRL_C.clear()
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield
        return

    def press(signum, frame) -> None:
        if CTRL_C.is_set():
            raise KeyboardInterrupt
        CTRL_C.set()
        print("\nstopping the trials (Ctrl-C again stops at once)", file=sys.stderr, flush=True)

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ray Tune's would take the signal from this one
    previous = signal.signal(signal.SIGINT, press)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _StopOnCtrlC(Stopper):
    """Ray Tune's stopper for Ctrl-C: it ends the run as ``time_budget_s`` does (no trial is stopped on its own)."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return CTRL_C.is_set()


def trial_resources(space: Space, options: RunOptions) -> Resources:
    """The space's resources per trial, or what ``--gpus-per-trial`` makes of them."""
    if options.gpus_per_trial is None:
        return space.resources
    resources = space.resources.with_gpus(options.gpus_per_trial)
    if resources.problem():
        raise StudyError(f"--gpus-per-trial {options.gpus_per_trial:g}: {resources.problem()}")
    return resources


def _tune_request(resources: Resources) -> dict[str, float]:
    """Ray Tune's request per trial: a one-process trial trains in its Tune actor; a DDP trial's workers
    get their own placement group from Ray Train, so its Tune actor holds no CPU or GPU of theirs."""
    if resources.processes == 1:
        return {"cpu": resources.cpus, "gpu": resources.gpus}
    return {"cpu": 0, "memory": DDP_DRIVER_MEMORY}


def _concurrency(resources: Resources) -> int:
    """How many trials the cluster's resources hold at once; a trial bigger than the cluster is refused."""
    import ray

    total = ray.cluster_resources()
    per_trial = {"GPU": resources.gpus, "CPU": resources.cpus * resources.processes}
    for kind, amount in per_trial.items():
        if amount > total.get(kind, 0) + 1e-9:
            raise StudyError(
                f"a trial needs {amount:g} {kind} (RESOURCES or --gpus-per-trial) but the Ray cluster has {total.get(kind, 0):g}; "
                "ask for less or pass --address of a larger cluster"
            )
    return max(1, min(math.floor(total[kind] / amount + 1e-9) for kind, amount in per_trial.items() if amount))


def _grid_size(space: Space, grid_knobs: list[str] | None) -> int:
    """Trials a grid study needs: every grid point (baselines run besides, as Optuna's GridSampler skips enqueued trials)."""
    return math.prod(len(values) for values in space.grid(grid_knobs).values())


def _trial_folder(trial) -> str:
    """Ray's folder per trial, named by the Optuna trial number (Ray's default spells out the whole config)."""
    return f"trial_{trial.config['optuna_trial']}_{trial.trial_id}"


def run_study(space: Space, options: RunOptions, queue: Queue | None = None) -> optuna.Study:
    """Run (or continue) the study until it holds the requested number of finished trials.

    Raises :class:`TrialsInterrupted` when the run ends with trials of its own unfinished (``--time-budget``).
    """
    checked = check_before_writing(space, options)
    # A storage that fails mid-run (disk full, server gone) ends the run with one line; what it holds stays.
    with failures_of(options.storage), contextlib.ExitStack() as lifetime:
        plan = plan_study(space, options, checked, queue)
        study = plan.study
        heartbeat = lifetime.enter_context(Heartbeat(open_storage(options.storage, create=False), study.study_name))
        orphans = claim_orphans(study, heartbeat.storage)
        # Other live drivers' trials count too: each driver starts only what the study still lacks.
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        new_trials = max(0, plan.target - plan.counts.finished - len(running))
        if not orphans and new_trials == 0:
            elsewhere = f" and {len(running)} running in other drivers" if running else ""
            print(
                f"study {study.study_name} already has {plan.counts.finished} finished trials{elsewhere} "
                f"(asked for {plan.target}); pass --trials to run more"
            )
            return study
        bridge = OptunaBridge(
            study, space, max_epochs=plan.asha.max_epochs, target=plan.target, orphans=orphans, counts=plan.counts,
            artifacts=artifact_store(options.storage, create=True), first_rungs=plan.asha.first_rungs,
            gate_rung=plan.asha.gate_rung,
        )  # fmt: skip
        if orphans:  # before build_tuner starts the progress bar: a line of its own
            print(how_orphans_go_on(orphans), file=sys.stderr, flush=True)
        tuner = build_tuner(plan, bridge, options, trials=len(orphans) + new_trials)
        with _ctrl_c_ends_the_run():
            tuner.fit()
        remove_orphaned_checkpoints()  # of trials killed on this machine; another node's go at its next trial there
        if CTRL_C.is_set():
            raise KeyboardInterrupt(f"`tune resume {study.study_name}` continues the study")
        interrupted = orphaned_trials(study, heartbeat.storage, mine_too=True)
        if interrupted:
            raise TrialsInterrupted(f"{len(interrupted)} trial(s) interrupted; `tune resume {study.study_name}` continues them")
        return study


def check_before_writing(space: Space, options: RunOptions) -> CheckedOptions:
    """Every option checked, then whether a trial fits the cluster (Ray started): a refusal leaves nothing behind."""
    checked = check_options(space, options)
    _quiet_ray(options.verbose)
    _start_ray(options)
    _concurrency(checked.resources)  # whether a trial fits is the cluster's to say
    return checked


@dataclass(frozen=True)
class CheckedOptions:
    """A run's options once every one is known to be usable: what planning needs, decided before any write."""

    sampler_name: str
    sampler: optuna.samplers.BaseSampler
    asha: AshaSettings
    resources: Resources
    ray_storage: str
    pareto: bool = False  # every objective searched jointly
    constraints: Constraints = dataclasses.field(default_factory=dict)  # the space's, with --constrain laid over them
    trackers: Trackers = Trackers()


def check_options(space: Space, options: RunOptions) -> CheckedOptions:
    """Every option checked against the space; raises :class:`StudyError` (or the sampler's or space's error) in one line."""
    # Ray's experiment folders are named after the study: a name is one plain path component (`--study ""` included).
    checked_name(space.name if options.study is None else options.study)
    check_url(options.storage)  # None: $TUNE_STORAGE's, before Ray starts
    pareto = options.pareto or space.search == "pareto"
    if pareto and len(space.objectives) < 2:
        only = space.objectives[0].name
        raise StudyError(f"--pareto needs two or more OBJECTIVES to search jointly; {space.path.name} declares {only} only")
    for metric, (low, high) in (options.constraints or {}).items():
        problem = constraint_problem(metric, low, high, space.declared_metrics)
        if problem:
            raise StudyError(f"--constrain {problem}")
    sampler_name = method_for(options.sampler, space.sampler, pareto)
    sampler = hold(make_sampler(sampler_name, space, options.sampler_settings()), options.held)
    method = SAMPLERS[sampler_name]
    for option, count in (("--trials", options.trials), ("--max-epochs", options.max_epochs)):
        if count is not None and count < 1:  # 0 must not read as "not given" and fall back to the space's budget
            raise StudyError(f"{option} must be at least 1 (got {count})")
    if options.time_budget_s is not None and not 0 < options.time_budget_s < math.inf:
        raise StudyError(f"--time-budget must be a number of seconds above 0 (got {options.time_budget_s:g})")
    max_epochs = options.max_epochs or space.budget.max_epochs
    if options.max_retries < 0:
        raise StudyError(f"--max-retries must be 0 or more (got {options.max_retries})")
    if not options.checkpoint_every_s >= 0:  # NaN included
        raise StudyError(f"--checkpoint-every must be 0 (every epoch) or more seconds (got {options.checkpoint_every_s:g})")
    check_address(options.address)
    return CheckedOptions(
        sampler_name=sampler_name,
        sampler=sampler,
        asha=space.asha(max_epochs, prune=options.prune, brackets=method.brackets, gated=method.gated),
        resources=trial_resources(space, options),
        ray_storage=ray_storage_location(options.ray_storage),
        pareto=pareto,
        constraints={**space.constraints, **(options.constraints or {})},
        trackers=chosen_trackers(options.log, space.name if options.study is None else options.study),
    )


# How long --address gets to accept a connection. A cluster's GCS answers at once; a wrong address is refused at once
# or never (a firewall). Ray's own wait for it (ray.init) lasts minutes and takes neither Ctrl-C nor SIGTERM.
ADDRESS_PROBE_S = 5.0


def check_address(address: str | None) -> None:
    """``--address`` accepts a connection at its host and port (Ray's GCS, or a ``ray://`` client server), or one line says so."""
    if not address or address in ("auto", "local"):
        return  # a local Ray, or Ray's own lookup of this machine's latest `ray start`
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "ray"):
        return  # another scheme is Ray's to read
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")  # an IPv6 address is written [::1]:6379
    if scheme and not host:
        return  # ray://HOST: Ray Client's default port
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StudyError(f"--address {address} is not HOST:PORT; pass the address `ray start --head` printed, such as 10.0.0.5:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=ADDRESS_PROBE_S) as connection:
            speaks_grpc = os.environ.get("RAY_USE_TLS", "0") not in ("", "0") or _answers_http2(connection)
    except OSError as exc:  # refused, timed out, an unknown host name, no route
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise StudyError(
            f"no Ray cluster answers at --address {address} ({reason}); "
            "start one with `ray start --head`, or check the address (the head's HOST:PORT that `ray start --head` printed)"
        ) from exc
    if not speaks_grpc:  # Ray would wait minutes for a GCS there, deaf to Ctrl-C
        raise StudyError(
            f"the server at --address {address} is not a Ray cluster (it does not answer as Ray's gRPC does); "
            "pass the head's HOST:PORT that `ray start --head` printed (port 6379 unless it was changed)"
        )


# An HTTP/2 client's opening: the connection preface, then an empty SETTINGS frame (RFC 9113, section 3.4).
HTTP2_OPENING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4  # the frame type every HTTP/2 server sends first


def _answers_http2(connection: socket.socket) -> bool:
    """Whether the server answers as an HTTP/2 one does: Ray's GCS and Ray Client are gRPC servers.

    By hand: a 9-byte frame header is all it takes, and Ray's own client has no check that gives up in seconds.
    """
    connection.sendall(HTTP2_OPENING)
    header = b""
    while len(header) < 9:
        received = connection.recv(9 - len(header))
        if not received:
            return False  # closed: an HTTP/1 server, or something else
        header += received
    return header[3] == HTTP2_SETTINGS


@dataclass
class StudyPlan:
    """The Optuna side of a run: the study, how many finished trials it should hold, and how the Ray side runs them."""

    space: Space
    study: optuna.Study
    target: int
    counts: Counts
    asha: AshaSettings
    resources: Resources
    ray_storage: str
    trackers: Trackers = Trackers()


def plan_study(space: Space, options: RunOptions, checked: CheckedOptions, queue: Queue | None = None) -> StudyPlan:
    """Open or create the study, queue its first configs once, and store the trial target and ASHA's rungs."""
    if not options.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The search as checked (the space's SEARCH and CONSTRAINTS included): what a new study is made with, an old one must match.
    searched = dataclasses.replace(options, pareto=checked.pareto, constraints=checked.constraints)
    study = open_study(space, searched, checked.sampler)
    enqueue_once(study, baseline_queue(space) if queue is None else queue)
    if checked.sampler_name == "grid":
        default = _grid_size(space, options.grid_knobs) + len(space.baselines)
    else:
        default = space.budget.trials
    target = options.trials or study.user_attrs.get(STUDY_TRIALS_REQUESTED) or default
    study.set_user_attr(STUDY_TRIALS_REQUESTED, target)
    study.set_user_attr(STUDY_ASHA, dataclasses.asdict(checked.asha))
    method = {"sampler": checked.sampler_name, "grid_knobs": options.grid_knobs, "grid_base": options.grid_base}
    study.set_user_attr(STUDY_SEARCH_METHOD, method)
    if not study.user_attrs.get(STUDY_SETTINGS_STORED):
        study.set_user_attr(STUDY_SETTINGS_STORED, True)  # last: a study without it was left half-made, and is made again
    return StudyPlan(
        space, study, target, count_states(study), checked.asha, checked.resources, checked.ray_storage, checked.trackers
    )


def build_tuner(plan: StudyPlan, bridge: OptunaBridge, options: RunOptions, trials: int):
    """Ray Tune's Tuner: the bridge searches, ASHA stops, each trial trains with the plan's resources."""
    _quiet_ray(options.verbose)
    import ray.tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search import ConcurrencyLimiter

    from studies.driver.rungs import stored_curves, stored_rungs_asha
    from studies.driver.trainable import train_trial

    _start_ray(options)
    asha, resources, study = plan.asha, plan.resources, plan.study
    scheduler = stored_rungs_asha(asha, stored_curves(study), stop_reasons=bridge.stop_reasons)
    concurrency = _concurrency(resources)  # before the live view starts, so that a refusal is one line
    plan.trackers.prepare()
    live_view = LiveView(plan.counts, plan.target, bridge.metric)
    return ray.tune.Tuner(
        ray.tune.with_resources(
            ray.tune.with_parameters(
                train_trial, resources=resources, checkpoint_every_s=options.checkpoint_every_s, trackers=plan.trackers
            ),
            _tune_request(resources),
        ),
        tune_config=ray.tune.TuneConfig(
            metric=bridge.metric,
            mode=bridge.mode,
            search_alg=ConcurrencyLimiter(bridge, max_concurrent=concurrency),
            scheduler=scheduler,
            num_samples=trials,
            time_budget_s=options.time_budget_s,
            # A reused worker keeps torch and Lightning imported: seconds saved per trial. A DDP trial's actor is
            # not reused: ending it ends the Ray Train run it drives.
            reuse_actors=resources.processes == 1,
            trial_dirname_creator=_trial_folder,
            trial_name_creator=_trial_folder,
        ),
        run_config=ray.tune.RunConfig(
            name=f"{study.study_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=plan.ray_storage,
            verbose=2 if options.verbose else 0,
            # Ray's result.json stays: Ray's own `tune ls PATH` and `list-trials` read it.
            callbacks=[RecordRayEvents(bridge), live_view, JsonLoggerCallback(), EndTrialRuns(plan.trackers)],
            checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=1),
            failure_config=ray.tune.FailureConfig(max_failures=options.max_retries),
            stop=_StopOnCtrlC(),
        ),
    )
