"""The logged tiny space asking half a GPU per trial: two trials share each GPU (`--gpus-per-trial 1` gives each its own)."""

import copy

import logged
from logged import BASELINES, OBJECTIVES, SAMPLER, TRAINER  # noqa: F401  (the contract's names)

from studies.space import Budget, Resources

CONFIG = copy.deepcopy(logged.tiny.CONFIG)
CONFIG["data"] = {"samples": 2000, "batch_size": 64}  # a few seconds a trial: long enough for trials to overlap
BUDGET = Budget(max_epochs=2, grace_period=2, reduction_factor=2, trials=6)
RESOURCES = Resources(cpus=1, gpus=0.5)
