"""The logged tiny space, one trial at a time on a 2-CPU Ray, with epochs long enough to kill its worker mid-trial."""

import copy

import logged
from logged import BASELINES, OBJECTIVES, SAMPLER, TRAINER  # noqa: F401  (the contract's names)

from studies.space import Budget, Resources

CONFIG = copy.deepcopy(logged.tiny.CONFIG)
CONFIG["data"] = {"samples": 8000, "batch_size": 32}  # about a second an epoch
BUDGET = Budget(max_epochs=6, grace_period=6, reduction_factor=2, trials=2)  # no ASHA rung: trials end COMPLETE or FAIL
RESOURCES = Resources(cpus=2)
