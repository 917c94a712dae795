"""The tiny space at one CPU a trial: two trials at once on the cluster test's two one-CPU nodes."""

from tiny import BASELINES, BUDGET, CONFIG, OBJECTIVES, SAMPLER, TRAINER  # noqa: F401  (the contract's names)

from studies.space import Resources

RESOURCES = Resources(cpus=1)
