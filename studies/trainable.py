"""The Ray Tune function that trains one trial through its space's trainer, inside a Ray worker."""

from __future__ import annotations

import functools
import math
import traceback
from typing import Any

import ray.tune

from studies.bridge import RESULT_DEVICE, RESULT_EPOCH, RESULT_ERROR, RESULT_TRACEBACK
from studies.space import Space, load_space
from trainers.base import device_name, fit


@functools.lru_cache(maxsize=8)
def _space(path: str) -> Space:
    """Loaded once per worker process: a reused actor trains many trials of one space."""
    return load_space(path)


def train_trial(config: dict[str, Any]) -> None:
    """Train ``config["training_config"]``; report each validation epoch with a checkpoint.

    A trial is continued from Ray's checkpoint after a worker failure, or from the checkpoint an
    interrupted driver left (``resume_from``). An exception is reported as the trial's last result
    (``trial_error``) instead of raised: Ray would otherwise retry a config that will fail the same way.
    """
    objective = config["objective"]
    last_epoch = 0
    device = "cpu"

    def report(metrics: dict[str, float], checkpoint_dir: str) -> None:
        nonlocal last_epoch
        last_epoch = int(metrics[RESULT_EPOCH])
        if objective not in metrics:
            raise KeyError(f"the trainer logged no {objective!r}; it logged {', '.join(sorted(metrics))}")
        ray.tune.report({**metrics, RESULT_DEVICE: device}, checkpoint=ray.tune.Checkpoint.from_directory(checkpoint_dir))

    try:
        space = _space(config["space_path"])
        accelerator = "gpu" if ray.tune.get_context().get_trial_resources().required_resources.get("GPU", 0) else "cpu"
        device = device_name(accelerator)
        checkpoint = ray.tune.get_checkpoint()
        resume_path = checkpoint.path if checkpoint is not None else config.get("resume_from")
        fit(
            space.trainer(),
            config["training_config"],
            max_epochs=config["max_epochs"],
            report=report,
            resume_from=resume_path,
            stop_on_non_finite=objective,
            accelerator=accelerator,
            devices=1,
            seed=config["optuna_trial"],
        )
    except Exception as exc:  # any trainer error ends this trial only, with its reason recorded
        last_line = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
        ray.tune.report(
            {
                objective: math.nan,
                RESULT_EPOCH: last_epoch,
                RESULT_ERROR: last_line,
                RESULT_TRACEBACK: traceback.format_exc(),
            }
        )
