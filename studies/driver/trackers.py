"""Experiment trackers: each trial's logged metrics, epoch by epoch, through Lightning's own loggers.

Every trial writes TensorBoard event files into its folder of Ray's storage (``tensorboard --logdir`` on an
experiment's folder shows every trial). ``--log mlflow`` adds an MLflow run per trial and ``--log wandb`` a
Weights & Biases run, each in an experiment (project) named after the study and named after the trial.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ray.tune import Callback

from studies.errors import UserInputError
from studies.store.storage import DEFAULT_FOLDER

TRACKERS = ("mlflow", "wandb")  # what --log adds to TensorBoard; each is the name of its Python package too
TENSORBOARD_FOLDER = "tensorboard"  # in each trial's folder
MLFLOW_DEFAULT_FILE = "mlflow.db"  # in tune_runs/: MLflow's own advice for a local store (its file store is in maintenance)


@dataclass(frozen=True)
class Trackers:
    """What a run tracks, decided on the driver and handed to every trial's processes, which build the loggers."""

    experiment: str = ""  # the study's name: MLflow's experiment, W&B's project
    mlflow_uri: str | None = None  # --log mlflow: where the runs go
    wandb_offline: bool | None = None  # --log wandb: whether W&B runs offline (WANDB_MODE=offline); None: no W&B

    def prepare(self) -> None:
        """Create the MLflow experiment once, here: trials that start together would each try to, and all but one fail."""
        if self.mlflow_uri is None:
            return
        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its database set-up notes say nothing a tune user needs
        if self.mlflow_uri.startswith("sqlite:///"):  # MLflow makes the file, not its folder
            Path(self.mlflow_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        client = mlflow.MlflowClient(self.mlflow_uri)
        if client.get_experiment_by_name(self.experiment) is None:
            client.create_experiment(self.experiment)

    @contextlib.contextmanager
    def trial(
        self, trial_folder: str, run_name: str, params: Mapping[str, Any]
    ) -> Iterator[Callable[[Mapping[str, float]], None]]:
        """One trial's runs, told its params: yields the function that logs an epoch's reported metrics, at the epoch as step.

        The metrics are those the study records, the training epoch's averages included (Lightning would log the last
        epoch's after Tune has stopped the trial). A trial Tune ends (done or pruned) ends its runs as finished, an error as
        failed; where Tune ends the worker first, :class:`EndTrialRuns` ends its MLflow run.
        """
        from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

        loggers = [TensorBoardLogger(trial_folder, name=TENSORBOARD_FOLDER, version="", default_hp_metric=False)]
        if self.mlflow_uri is not None:
            loggers.append(MLFlowLogger(self.experiment, run_name, tracking_uri=self.mlflow_uri))
        if self.wandb_offline is not None:
            loggers.append(WandbLogger(run_name, trial_folder, project=self.experiment, offline=self.wandb_offline))
        for logger in loggers:
            logger.log_hyperparams(dict(params))

        def log_epoch(metrics: Mapping[str, float]) -> None:
            for logger in loggers:
                logger.log_metrics(dict(metrics), step=int(metrics["epoch"]))
                logger.save()

        def finish(status: str = "success") -> None:
            for logger in loggers:
                logger.finalize(status)
                if isinstance(logger, WandbLogger):
                    logger.experiment.finish()  # a reused worker's next trial starts a run of its own

        try:
            yield log_epoch
        except SystemExit:  # how Tune ends a trial at its last report, done or pruned
            finish()
            raise
        except BaseException:
            finish("failed")
            raise
        finish()


def run_name(optuna_trial: int) -> str:
    """A trial's run name in every tracker."""
    return f"trial_{optuna_trial}"


class EndTrialRuns(Callback):
    """On the driver: each ended trial's MLflow run is ended, should Tune have ended the trial's worker while it waited in its
    last report (as it does with the last trials of a run): the run is then not left RUNNING."""

    def __init__(self, trackers: Trackers):
        self.trackers = trackers

    def _end(self, trial, status: str) -> None:
        if self.trackers.mlflow_uri is None:
            return
        import mlflow

        client = mlflow.MlflowClient(self.trackers.mlflow_uri)
        experiment = client.get_experiment_by_name(self.trackers.experiment)
        name = run_name(trial.config["optuna_trial"])
        for run in client.search_runs(
            [experiment.experiment_id], f"attributes.run_name = '{name}' AND attributes.status = 'RUNNING'"
        ):
            client.set_terminated(run.info.run_id, status)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "FAILED")


def chosen_trackers(kinds: list[str] | None, experiment: str) -> Trackers:
    """The trackers ``--log`` names, each package checked (nothing is written): TensorBoard alone when it names none.

    MLflow writes to ``$MLFLOW_TRACKING_URI`` (a server, ``sqlite:///...``), else to ``tune_runs/mlflow.db``;
    W&B runs offline when ``$WANDB_MODE`` is ``offline``.
    """
    kinds = list(dict.fromkeys(kinds or []))
    for kind in kinds:
        if kind not in TRACKERS:
            raise UserInputError(f"--log {kind} is not a tracker tune knows; choose from {', '.join(TRACKERS)}")
        if importlib.util.find_spec(kind) is None:
            raise UserInputError(f"--log {kind} needs the {kind} package, which is not installed: pip install -e '.[trackers]'")
    mlflow_uri = None
    if "mlflow" in kinds:
        mlflow_uri = (
            os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(DEFAULT_FOLDER) / MLFLOW_DEFAULT_FILE).resolve()}"
        )
    wandb_offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") if "wandb" in kinds else None
    return Trackers(experiment, mlflow_uri, wandb_offline)
