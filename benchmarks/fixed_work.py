"""A search space whose every epoch costs a fixed amount of CPU work, for measuring orchestration.

The validation loss is a known bowl in (x, y) that sharpens with epochs, so ASHA has a real signal
to prune on; the work is dense matrix products for ``work.epoch_seconds`` of CPU time.
"""

import time

import pytorch_lightning as pl
import torch

from studies.space import Budget, Float, Objective, Resources
from trainers.base import TrainerFamily


def busy(seconds: float) -> None:
    """Keep one core busy for ``seconds`` of this thread's CPU time (plain Python: one thread, no BLAS pool)."""
    total, stop = 0.0, time.thread_time() + seconds
    while time.thread_time() < stop:
        for i in range(1000):
            total += i * 0.5


class FixedWorkModel(pl.LightningModule):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.weight = torch.nn.Parameter(torch.zeros(1))  # Lightning needs something to optimise

    def training_step(self, batch, _):
        busy(self.config["work"]["epoch_seconds"])
        return (self.weight * batch[0]).sum() * 0.0

    def validation_step(self, batch, _):
        x, y = self.config["x"], self.config["y"]
        epoch = self.current_epoch + 1
        self.log("val_loss", (x - 0.3) ** 2 + (y + 0.2) ** 2 + 1.0 / epoch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class OneBatch(pl.LightningDataModule):
    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(1, 1)), batch_size=1)

    val_dataloader = train_dataloader


class FixedWork(TrainerFamily):
    def build_model(self, config):
        return FixedWorkModel(config)

    def build_data(self, config):
        return OneBatch()


TRAINER = FixedWork
CONFIG = {"x": Float(-1.0, 1.0), "y": Float(-1.0, 1.0), "work": {"epoch_seconds": 0.5}}
OBJECTIVES = [Objective("val_loss", "minimize")]
BUDGET = Budget(max_epochs=9, grace_period=1, reduction_factor=3, trials=18)
RESOURCES = Resources(cpus=1)
