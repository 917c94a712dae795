"""The tiny space with a trial that runs out of memory: it asks torch's allocator for a pebibyte, which no machine
gives, so torch raises its out-of-memory error at once without touching the memory others share."""

import copy

import tiny
import torch
from tiny import OBJECTIVES, RESOURCES  # noqa: F401  (the contract's names)

from studies.space import Budget, Categorical

PEBIBYTE = 2**50


class GreedySineRegressor(tiny.SineRegressor):
    def training_step(self, batch, index):
        if self.config["faults"]["out_of_memory"]:
            torch.empty(PEBIBYTE, dtype=torch.uint8)
        return super().training_step(batch, index)


class GreedySine(tiny.Sine):
    def build_model(self, config):
        return GreedySineRegressor(config)


TRAINER = GreedySine
CONFIG = copy.deepcopy(tiny.CONFIG)
CONFIG["faults"]["out_of_memory"] = Categorical([False, True])
_healthy = {"model.hidden": 32, "optimizer.lr": 3e-2, "faults.out_of_memory": False}
BASELINES = {"runs_out_of_memory": {**_healthy, "faults.out_of_memory": True}, "healthy": _healthy}
BUDGET = Budget(max_epochs=2, grace_period=2, reduction_factor=2, trials=2)
