"""killable.py's first baseline trained with DDP on two CPU processes (gloo): one rank's process can be killed mid-trial."""

from killable import BASELINES, CONFIG, OBJECTIVES, SAMPLER, TRAINER  # noqa: F401  (the contract's names)

from studies.space import Budget, Resources

BUDGET = Budget(max_epochs=6, grace_period=6, reduction_factor=2, trials=1)  # no ASHA rung: the trial ends COMPLETE or FAIL
RESOURCES = Resources(cpus=1, workers=2)
