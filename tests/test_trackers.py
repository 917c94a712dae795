"""What a trial logs and keeps besides the study's record, without Ray: the trackers `--log` picks, a trainer family's
own Lightning logger, and the best epoch's weights carried from checkpoint to checkpoint (the studies that run them
on Ray are in test_study_run.py, test_cli.py and test_resources.py)."""

import csv
import shutil

import pytest
import torch
from conftest import SPACES

from studies.driver.trackers import chosen_trackers
from studies.errors import UserInputError
from studies.space import load_space
from trainers.base import BEST_CHECKPOINT_FILE, fit

BASELINE = {"model.hidden": 8, "optimizer.lr": 0.3}  # a rate high enough that the loss does not fall every epoch


def test_trackers_are_checked_and_mlflow_writes_beside_the_study_unless_told(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(UserInputError, match="--log neptune is not a tracker tune knows; choose from mlflow, wandb"):
        chosen_trackers(["neptune"], "tiny")
    assert chosen_trackers(None, "tiny").mlflow_uri is None and chosen_trackers(None, "tiny").wandb_offline is None
    both = chosen_trackers(["mlflow", "wandb"], "tiny")
    assert both.experiment == "tiny" and both.wandb_offline is True
    assert both.mlflow_uri == f"sqlite:///{tmp_path.resolve() / 'tune_runs' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert chosen_trackers(["mlflow"], "tiny").mlflow_uri == "http://127.0.0.1:5000"
    assert not (tmp_path / "tune_runs").exists()  # checking writes nothing


def test_a_family_that_names_its_own_logger_keeps_it(tmp_path):
    space = load_space(SPACES / "own_logger.py")
    config = {**space.training_config(BASELINE), "csv_log_dir": str(tmp_path)}
    fit(space.trainer(), config, max_epochs=2)
    with open(tmp_path / "metrics.csv") as stream:
        epochs = [row for row in csv.DictReader(stream) if row["val_loss"]]
    assert len(epochs) == 2


def test_every_checkpoint_holds_the_best_epoch_and_a_continued_fit_keeps_it(tmp_path):
    space = load_space(SPACES / "tiny.py")
    config = space.training_config(BASELINE)
    kept, losses = {}, {}

    def report(metrics, checkpoint_dir):
        epoch = int(metrics["epoch"])
        losses[epoch] = metrics["val_loss"]
        kept[epoch] = shutil.copytree(checkpoint_dir, tmp_path / f"epoch{epoch}")

    fit(space.trainer(), config, max_epochs=3, report=report, keep_best_by=("val_loss", "min"))
    for epoch, folder in kept.items():
        best = torch.load(folder / BEST_CHECKPOINT_FILE, weights_only=True)
        assert best["epoch"] + 1 == min((e for e in losses if e <= epoch), key=losses.get)  # Lightning counts epochs from 0
        assert set(best["state_dict"]) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    # Continued in another fit (its own folder): the best so far is kept, not replaced by the next epoch whatever its loss.
    fit(space.trainer(), config, max_epochs=4, report=report, resume_from=str(kept[3]), keep_best_by=("val_loss", "min"))
    # The rate overshoots at epoch 4: Lightning's own ModelCheckpoint, which forgets its score in a new folder, would keep it.
    assert losses[4] > losses[3]
    assert torch.load(kept[4] / BEST_CHECKPOINT_FILE, weights_only=True)["epoch"] + 1 == 3
