"""The tiny space with enough data that an epoch takes about a second: room to kill a driver mid-trial."""

import copy

import tiny
from tiny import BASELINES, OBJECTIVES, RESOURCES, TRAINER  # noqa: F401  (the contract's names)

from studies.space import Budget

CONFIG = copy.deepcopy(tiny.CONFIG)
CONFIG["data"] = {"samples": 8000, "batch_size": 32}
BUDGET = Budget(max_epochs=4, grace_period=2, reduction_factor=2, trials=8)
