"""The tiny space trained with Lightning DDP on two CPU processes (gloo), as a two-GPU trial would train on GPUs."""

import tiny
from tiny import BASELINES, CONFIG, OBJECTIVES, TRAINER  # noqa: F401  (the contract's names)

from studies.space import Budget, Resources

BUDGET = Budget(max_epochs=2, grace_period=2, reduction_factor=2, trials=1)
RESOURCES = Resources(cpus=1, workers=2)
SAMPLER = tiny.SAMPLER
