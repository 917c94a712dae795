"""A tiny real study for the service's tests: a Lightning MLP fitting a noisy sine on 2 CPU cores.

``hidden`` and ``lr`` matter, so ASHA and the sampler have something to find; ``fail_at_epoch``
and ``diverge`` let a test ask for a trial that raises or whose loss becomes NaN.
"""

import math

import pytorch_lightning as pl
import torch
from torch import nn

from studies.space import Budget, Float, Int, Objective, Resources
from trainers.base import TrainerFamily


class SineRegressor(pl.LightningModule):
    def __init__(self, config):
        super().__init__()
        self.config = config
        hidden = config["model"]["hidden"]
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def training_step(self, batch, _):
        x, y = batch
        if self.config["faults"]["fail_at_epoch"] == self.current_epoch + 1:
            raise RuntimeError(f"injected failure at epoch {self.current_epoch + 1}")
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.config["faults"]["diverge"]:
            loss = loss * float("nan")
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        prediction = self.net(x)
        self.log("val_loss", nn.functional.mse_loss(prediction, y), on_epoch=True)
        self.log("val_mae", (prediction - y).abs().mean(), on_epoch=True)
        self.log("prediction_std", prediction.std(), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.config["optimizer"]["lr"])


class SineData(pl.LightningDataModule):
    def __init__(self, config):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(config["data"]["samples"], 1, generator=generator) * 2 * math.pi
        y = torch.sin(x) + 0.05 * torch.randn(x.shape, generator=generator)
        split = int(0.8 * len(x))
        self.train_set = torch.utils.data.TensorDataset(x[:split], y[:split])
        self.val_set = torch.utils.data.TensorDataset(x[split:], y[split:])
        self.batch_size = config["data"]["batch_size"]

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.val_set, batch_size=256)


class Sine(TrainerFamily):
    def build_model(self, config):
        return SineRegressor(config)

    def build_data(self, config):
        return SineData(config)


TRAINER = Sine
CONFIG = {
    "model": {"hidden": Int(2, 32, log=True, grid=[4, 16])},
    "optimizer": {"lr": Float(1e-4, 3e-1, log=True, grid=[1e-3, 3e-2]), "name": "Adam"},
    "data": {"samples": 256, "batch_size": 64},
    "faults": {"fail_at_epoch": 0, "diverge": False},
}
BASELINES = {"small_slow": {"model.hidden": 4, "optimizer.lr": 1e-3}, "wide_fast": {"model.hidden": 32, "optimizer.lr": 3e-2}}
OBJECTIVES = [Objective("val_loss", "minimize"), Objective("val_mae", "minimize"), Objective("prediction_std", "maximize")]
BUDGET = Budget(max_epochs=4, grace_period=1, reduction_factor=2, trials=6)
# One trial at a time on 2 cores: a second trial's new worker spends longer importing torch than a tiny trial trains, and
# Ray Tune then hands the pending trial to the first worker and drops the new one, CPU spent for nothing.
RESOURCES = Resources(cpus=2)
SAMPLER = "bohb"  # one bracket, as the tests built on this space expect: every trial judged first at epoch 1
