"""The tiny space with injectable faults: a trial that raises at epoch 2 and one whose loss becomes NaN."""

import copy

import tiny
from tiny import OBJECTIVES, RESOURCES, TRAINER  # noqa: F401  (the contract's names)

from studies.space import Budget, Categorical

CONFIG = copy.deepcopy(tiny.CONFIG)
CONFIG["faults"] = {"fail_at_epoch": Categorical([0, 2]), "diverge": Categorical([False, True])}
_healthy = {"model.hidden": 32, "optimizer.lr": 3e-2, "faults.fail_at_epoch": 0, "faults.diverge": False}
BASELINES = {
    "healthy": _healthy,
    "crashes": {**_healthy, "faults.fail_at_epoch": 2},
    "diverges": {**_healthy, "faults.diverge": True},
}
# No ASHA rung before the last epoch: the healthy trial must not be pruned by a faulty one.
BUDGET = Budget(max_epochs=3, grace_period=3, reduction_factor=2, trials=3)
