"""The faulty space's crashing config, trained with DDP on two CPU processes: every rank raises at epoch 2."""

import faulty
from faulty import BUDGET, CONFIG, OBJECTIVES, TRAINER  # noqa: F401  (the contract's names)

from studies.space import Resources

BASELINES = {"crashes": faulty.BASELINES["crashes"]}
RESOURCES = Resources(cpus=1, workers=2)
