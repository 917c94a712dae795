"""The Ray Tune function that trains one trial through its space's trainer, inside a Ray worker.

A one-process trial trains right here, on the device Ray handed this worker. A DDP trial
(``Resources.processes > 1``) starts a Ray Train ``TorchTrainer`` from here, as Ray's Train-in-Tune
guide does: Ray Train reserves a placement group of one bundle per process, each worker is one rank
of Lightning's DDP (``ray.train.lightning``: NCCL on GPUs, gloo on CPUs), and rank 0's epoch reports
and checkpoints come back to this function, which reports them to Tune exactly as a one-process
trial does: the bridge records the same attributes either way.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import threading
import traceback
import uuid
from typing import Any, Callable

import ray
import ray.train
import ray.tune
import torch

from studies.driver.trackers import Trackers, run_name
from studies.records import (
    RESULT_DEVICE,
    RESULT_EPOCH,
    RESULT_ERROR,
    RESULT_GPU_IDS,
    RESULT_TRACEBACK,
    RESULT_WORLD_SIZE,
)
from studies.space import Resources, Space, load_space
from trainers.base import device_name, fit

RESULT_RANK = "rank"  # which DDP rank sent a report; dropped when the ranks' reports are joined


@functools.lru_cache(maxsize=8)
def _space(path: str) -> Space:
    """Loaded once per worker process: a reused actor trains many trials of one space."""
    return load_space(path)


def _accelerator(gpus: float) -> str:
    """A GPU only where Ray handed one and torch can reach CUDA: a GPU declared to Ray on a machine without one trains on CPU."""
    return "gpu" if gpus and torch.cuda.is_available() else "cpu"


def _facts(accelerator: str) -> dict[str, Any]:
    """What this process trains on: the device's name and the GPU ids Ray made visible to it (CUDA_VISIBLE_DEVICES)."""
    return {RESULT_DEVICE: device_name(accelerator), RESULT_GPU_IDS: [str(gpu) for gpu in ray.get_gpu_ids()]}


def failure_reason(exc: BaseException) -> str:
    """The error's first line; running out of memory is said plainly, as torch's CUDA and CPU allocators word it differently."""
    failures = getattr(exc, "worker_failures", None)  # a DDP rank's error, as Ray Train hands it back
    if failures:
        exc = failures[min(failures)]
    line = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in line:
        return f"out of memory: {line}"
    return line


def _worker_died(exc: BaseException) -> bool:
    """A DDP rank's process was lost (killed, its node gone), not its code's fault: Tune retries the trial from its checkpoint."""
    failures = getattr(exc, "worker_failures", None) or {}
    # Ray Train finds a lost rank by its health check and wraps the actor's error in that check's failure.
    causes = [getattr(failure, "health_check_failure", failure) for failure in failures.values()]
    return any(isinstance(cause, ray.exceptions.RayActorError) for cause in causes)


def _trial_folder() -> str:
    """This trial's folder in Ray's storage, beside its checkpoints: a path, or a URI where the storage is one."""
    storage = ray.tune.get_context().get_storage()
    filesystem = storage.storage_filesystem.type_name
    return storage.trial_fs_path if filesystem == "local" else f"{filesystem}://{storage.trial_fs_path}"


def _epoch_logs(tracking: dict[str, Any]):
    """The trial's tracker runs (see :meth:`Trackers.trial`) from what :func:`train_trial` decided for it."""
    return tracking["trackers"].trial(tracking["trial_folder"], tracking["run_name"], tracking["params"])


def train_trial(
    config: dict[str, Any], resources: Resources | None = None, checkpoint_every_s: float = 0.0, trackers: Trackers = Trackers()
) -> None:
    """Train ``config["training_config"]``; report each validation epoch, with a checkpoint when one is due.

    A trial is continued from Ray's checkpoint after a worker failure, or from the checkpoint an
    interrupted driver left (``resume_from``). An exception is reported as the trial's last result
    (``trial_error``) instead of raised: Ray would otherwise retry a config that will fail the same way.
    ``resources`` are the space's, or those ``--gpus-per-trial`` made of them; ``checkpoint_every_s`` paces
    a one-process trial's checkpoints (``--checkpoint-every``; the last epoch's is always saved). Every checkpoint
    holds the best epoch's weights by the first objective too; ``trackers`` log each epoch's metrics.
    """
    objective = config["objective"]
    last_epoch = 0

    def report(metrics: dict[str, Any], checkpoint: ray.tune.Checkpoint | None) -> None:
        nonlocal last_epoch
        last_epoch = int(metrics[RESULT_EPOCH])
        if objective not in metrics:
            raise KeyError(f"the trainer logged no {objective!r}; it logged {', '.join(sorted(metrics))}")
        ray.tune.report(metrics, checkpoint=checkpoint)

    try:
        space = _space(config["space_path"])
        resources = resources or space.resources
        checkpoint = ray.tune.get_checkpoint()
        resume_path = checkpoint.path if checkpoint is not None else config.get("resume_from")
        tracking = {
            "keep_best_by": (objective, "min" if space.objectives[0].direction == "minimize" else "max"),
            "trackers": trackers,
            "trial_folder": _trial_folder(),
            "run_name": run_name(config["optuna_trial"]),
            "params": config["params"],
        }
        if resources.processes > 1:
            _train_with_ddp(config, resources, resume_path, report, tracking)
            return
        accelerator = _accelerator(resources.gpus)
        facts = {**_facts(accelerator), RESULT_WORLD_SIZE: 1}
        with _epoch_logs(tracking) as log_epoch:

            def report_epoch(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
                log_epoch(metrics)
                report({**metrics, **facts}, ray.tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)

            fit(
                space.trainer(),
                config["training_config"],
                max_epochs=config["max_epochs"],
                report=report_epoch,
                resume_from=resume_path,
                stop_on_non_finite=objective,
                accelerator=accelerator,
                devices=1,
                seed=config["optuna_trial"],
                checkpoint_every_s=checkpoint_every_s,
                keep_best_by=tracking["keep_best_by"],
            )
        if not last_epoch:
            # Tune would stop the whole study on a result without the objective.
            raise RuntimeError("training ended without reporting an epoch")
    except Exception as exc:  # any trainer error ends this trial only, with its reason recorded
        if _worker_died(exc):
            raise
        ray.tune.report(
            {
                objective: math.nan,
                RESULT_EPOCH: last_epoch,
                RESULT_ERROR: failure_reason(exc),
                RESULT_TRACEBACK: traceback.format_exc(),
                RESULT_WORLD_SIZE: resources.processes if resources else 1,
            }
        )


class _ForwardEpochs(ray.train.UserCallback):
    """Runs in Ray Train's controller: hands each epoch (every rank's report, rank 0's checkpoint) to the Tune trial.

    Ray's own ``TuneReportCallback`` forwards metrics only (the checkpoint as a path in them); the bridge and
    Tune's retries need the checkpoint reported to Tune, so the trial reports it from its own thread.
    """

    def __init__(self, epochs):
        self.epochs = epochs

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        joined = {name: value for name, value in metrics[0].items() if name != RESULT_RANK}
        joined[RESULT_WORLD_SIZE] = len(metrics)
        joined[RESULT_GPU_IDS] = [gpu for rank_metrics in metrics for gpu in rank_metrics[RESULT_GPU_IDS]]
        # Blocks while the trial still copies the previous epoch's checkpoint (the queue holds one).
        self.epochs.put((joined, checkpoint))


def _ray_lightning():
    """``ray.train.lightning`` built on ``pytorch_lightning``, the package every trainer imports.

    Ray builds it on the ``lightning`` package whenever that one is importable too, and pytorch_lightning's Trainer
    refuses a strategy of the other package: while Ray's module is first imported, ``lightning`` is hidden.
    """
    hidden = {name: module for name, module in sys.modules.items() if name == "lightning" or name.startswith("lightning.")}
    sys.modules.update(dict.fromkeys([*hidden, "lightning"]))  # None: an import of it fails as if it were not installed
    try:
        import ray.train.lightning
    finally:
        for name in [name for name in sys.modules if name == "lightning" or name.startswith("lightning.")]:
            del sys.modules[name]
        sys.modules.update(hidden)
    return ray.train.lightning


def _train_rank(loop: dict[str, Any]) -> None:
    """One DDP rank, in a Ray Train worker: Lightning's DDP through Ray's strategy and cluster environment."""
    ray_lightning = _ray_lightning()

    rank = ray.train.get_context().get_world_rank()
    accelerator = _accelerator(loop["gpus"])
    facts = {**_facts(accelerator), RESULT_RANK: rank}

    # Rank 0 logs the epochs for all ranks, as it alone stores the checkpoints.
    with _epoch_logs(loop) if rank == 0 else contextlib.nullcontext(lambda metrics: None) as log_epoch:
        # Every epoch is checkpointed (fit's default): saving is collective in DDP, so the ranks must not each judge by their own clock.
        def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
            log_epoch(metrics)
            # Every rank reports (Ray Train gathers them); rank 0's checkpoint holds the model all ranks share.
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if rank == 0 and checkpoint_dir else None
            ray.train.report({**metrics, **facts}, checkpoint=checkpoint)

        fit(
            _space(loop["space_path"]).trainer(),
            loop["training_config"],
            max_epochs=loop["max_epochs"],
            report=report,
            resume_from=loop["resume_from"],
            stop_on_non_finite=loop["objective"],
            accelerator=accelerator,
            devices="auto",
            strategy=ray_lightning.RayDDPStrategy(),
            plugins=[ray_lightning.RayLightningEnvironment()],
            seed=loop["seed"],
            keep_best_by=loop["keep_best_by"],
        )


def _train_with_ddp(
    config: dict[str, Any],
    resources: Resources,
    resume_path: str | None,
    report: Callable[[dict[str, Any], ray.tune.Checkpoint | None], None],
    tracking: dict[str, Any],
) -> None:
    """Train one trial on ``resources.processes`` Ray Train workers and report rank 0's epochs to Tune; ``tracking``: what each rank logs and keeps."""
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Empty, Queue

    epochs = Queue(maxsize=1, actor_options={"num_cpus": 0})
    tune_storage = ray.tune.get_context().get_storage()
    per_worker = {"CPU": resources.cpus, **({"GPU": 1} if resources.gpus else {})}
    trainer = TorchTrainer(
        _train_rank,
        train_loop_config={
            "space_path": config["space_path"],
            "training_config": config["training_config"],
            "max_epochs": config["max_epochs"],
            "objective": config["objective"],
            "resume_from": resume_path,
            "seed": config["optuna_trial"],
            "gpus": resources.gpus,
            **tracking,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=resources.processes, use_gpu=bool(resources.gpus), resources_per_worker=per_worker
        ),
        torch_config=TorchConfig(backend="nccl" if _accelerator(resources.gpus) == "gpu" else "gloo"),
        run_config=ray.train.RunConfig(
            # A fresh name per attempt: Tune's checkpoint, not Ray Train's own restore, decides where training resumes.
            name=f"ddp-{uuid.uuid4().hex[:8]}",
            # Beside the Tune trial's own folder, on the filesystem Tune stores to (a shared one on a cluster).
            storage_path=tune_storage.trial_fs_path,
            storage_filesystem=tune_storage.storage_filesystem,
            callbacks=[_ForwardEpochs(epochs)],
            # Two kept: the one Tune may still be copying and the newest.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=0),  # retries are Tune's, counted once per trial
        ),
    )
    failures: list[BaseException] = []

    def run() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the trial's thread, which reports or re-raises it
            failures.append(exc)

    # fit() blocks until training ends; the trial's own thread reports each epoch meanwhile.
    training = threading.Thread(target=run, name="ray-train-fit", daemon=True)
    training.start()
    while training.is_alive() or epochs.qsize():
        try:
            metrics, checkpoint = epochs.get(timeout=0.5)
        except Empty:
            continue
        if metrics[RESULT_EPOCH] >= config["max_epochs"]:
            # Tune ends the trial on its last epoch: let Ray Train first end its run and free its placement group.
            training.join()
        report(metrics, checkpoint)
    if failures:
        raise failures[0]
