"""Model families: one LightningModule and LightningDataModule pair each, trained by :func:`trainers.base.fit`.

Trainers know no Ray and no Optuna: they get a nested config dict and a ``report`` function.
"""

from trainers.base import TrainerFamily, fit

__all__ = ["TrainerFamily", "fit"]
