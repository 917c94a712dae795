"""The slow space's budget on the tiny space's data, its trials holding before their second epoch while the file named by
$TUNE_TEST_HOLD exists: a test that kills a driver then knows its trials are mid-training with a checkpoint stored,
whatever the machine's speed, and no epoch spends CPU on being long."""

import os
import time

import pytorch_lightning as pl
import tiny
from slow import BASELINES, BUDGET, OBJECTIVES, RESOURCES  # noqa: F401  (the contract's names)
from tiny import CONFIG  # noqa: F401  (the contract's names)

HOLD_VARIABLE = "TUNE_TEST_HOLD"
HOLD_LIMIT_S = 300  # a driver the test failed to kill still ends


class HoldAfterFirstEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        hold, deadline = os.environ.get(HOLD_VARIABLE), time.monotonic() + HOLD_LIMIT_S
        while trainer.current_epoch >= 1 and hold and os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.2)


class HeldSine(tiny.Sine):
    def callbacks(self, config):
        return [HoldAfterFirstEpoch()]


TRAINER = HeldSine
