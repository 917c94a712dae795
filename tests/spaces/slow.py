"""The tiny space with epochs of about a second, most of it asleep: room to kill a driver mid-trial, little CPU spent."""

import copy
import time

import pytorch_lightning as pl
import tiny
from tiny import OBJECTIVES, RESOURCES  # noqa: F401  (the contract's names)

from studies.space import Budget

EPOCH_SLEEP_S = 0.8  # besides 2000 samples' training, about 0.2 s of CPU an epoch


class SleepEachEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        time.sleep(EPOCH_SLEEP_S)


class SlowSine(tiny.Sine):
    def callbacks(self, config):
        return [SleepEachEpoch()]


TRAINER = SlowSine
# The good baseline first: with RESOURCES' 2 CPUs a 2-core machine trains one trial at a time, so small_slow reaches its
# rung after wide_fast's value there and ASHA stops it. Every study of this space then holds a PRUNED trial; with the
# two the other way round, whether any was pruned hung on how the random configs after them ranked, and once none was.
BASELINES = {name: tiny.BASELINES[name] for name in ("wide_fast", "small_slow")}
CONFIG = copy.deepcopy(tiny.CONFIG)
# Enough data that a good config fits the sine within 4 epochs (prediction_std about 0.7) and a poor one does not: the
# Pareto tests' constraint prediction_std >= 0.6 then splits the trials.
CONFIG["data"] = {"samples": 2000, "batch_size": 32}
BUDGET = Budget(max_epochs=4, grace_period=2, reduction_factor=2, trials=8)
