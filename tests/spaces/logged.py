"""The tiny space whose training processes log what a test must see from outside: each fit's start and each
epoch's start and end, with the process id and the GPU ids the process was shown (CUDA_VISIBLE_DEVICES), as JSON
lines appended to the file named by $TUNE_TEST_EVENTS. Spaces built on it set data sizes and resources."""

import json
import os
import time

import pytorch_lightning as pl
import tiny
from tiny import BASELINES, OBJECTIVES, SAMPLER  # noqa: F401  (the contract's names)

EVENTS_VARIABLE = "TUNE_TEST_EVENTS"
# Each fit waits (a minute at most) until this many fits have started: the test then sees how many trials the
# scheduler lets train at once, not how fast workers happen to start.
STARTS_VARIABLE = "TUNE_TEST_WAIT_FOR_STARTS"


class LogTraining(pl.Callback):
    def __init__(self, hidden: int):
        self.hidden = hidden  # which baseline trains: small_slow has 4, wide_fast 32

    def _log(self, event: str, **fields) -> None:
        line = {"event": event, "time": time.time(), "pid": os.getpid(), "hidden": self.hidden, **fields}
        line["visible_gpus"] = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        with open(os.environ[EVENTS_VARIABLE], "a") as log:
            log.write(json.dumps(line) + "\n")

    def on_fit_start(self, trainer, pl_module):
        self._log("fit_start")
        deadline = time.monotonic() + 60
        wanted = int(os.environ.get(STARTS_VARIABLE, 0))
        while time.monotonic() < deadline and sum(e["event"] == "fit_start" for e in read_events(os.environ[EVENTS_VARIABLE])) < wanted:
            time.sleep(0.1)

    def on_train_epoch_start(self, trainer, pl_module):
        self._log("epoch_start", epoch=trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer, pl_module):
        # Not on_fit_end: Tune stops a trial at its last report, before its fit returns.
        self._log("epoch_end", epoch=trainer.current_epoch + 1)


class LoggedSine(tiny.Sine):
    def callbacks(self, config):
        return [LogTraining(config["model"]["hidden"])]


TRAINER = LoggedSine


def read_events(path) -> list[dict]:
    """The events logged so far, oldest first."""
    if not os.path.exists(path):
        return []
    with open(path) as log:
        return [json.loads(line) for line in log if line.endswith("\n")]
