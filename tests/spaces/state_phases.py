"""The ST-Tahoe space and its phases at test size, trained from scratch so that a phase's warm start shows."""

import copy

from search_spaces import state_tahoe
from search_spaces.state_tahoe import BASELINES, OBJECTIVES, PHASES, RESOURCES, TRAINER, WARM_START  # noqa: F401  (the contract's names)
from studies.space import Budget

CONFIG = copy.deepcopy(state_tahoe.CONFIG)
CONFIG["model"]["checkpoint"] = None  # no source pretraining: phase B's first epoch shows whether phase A's weights were loaded
BUDGET = Budget(max_epochs=4, grace_period=1, reduction_factor=2, trials=3)
