"""trainers.regression: the synthetic data's difficulty, the table loader, the MLP and real Lightning runs."""

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from objectives.regression import AFFINITY_BINS, regression_metrics
from trainers.base import CHECKPOINT_FILE, CHECKPOINT_ROOT_PREFIX, fit
from trainers.regression import (
    MIN_VALIDATION_PER_BIN,
    MLPRegression,
    MLPRegressor,
    RegressionData,
    RegressionModule,
    abag_affinities,
    cabbi_interactions,
    hidden_layer_widths,
    load_table,
    warmup_decay_factor,
)

SMALL_CABBI = {"data": {"source": "cabbi", "n_samples": 320, "n_features": 8, "batch_size": 64}, "model": {"hidden_dims": [8]}}


def checkpoint_keeper(folder):
    """A ``report`` for fit that keeps each epoch's metrics and a copy of its checkpoint: fit removes its own when it returns."""
    reports = []

    def keep(metrics, checkpoint_dir):
        kept = folder / f"epoch{int(metrics['epoch'])}"
        shutil.copytree(checkpoint_dir, kept)
        reports.append((metrics, kept))

    return reports, keep


def kurtosis(values: torch.Tensor) -> float:
    centred = values.double() - values.double().mean()
    return float((centred**4).mean() / (centred**2).mean() ** 2)


def test_cabbi_targets_are_heavy_tailed():
    _, targets = cabbi_interactions(20000, seed=3)
    # A normal has kurtosis 3; the bilinear signal (9 per product) and t(3) noise give far more.
    assert kurtosis(targets) > 5


def test_cabbi_data_module_standardises_the_targets():
    config = MLPRegression().resolve({"data": {"source": "cabbi", "n_features": 32, "standardize_target": True}})
    data = RegressionData(config["data"])
    data.setup()
    targets = torch.cat([data.train_set.tensors[1], data.val_set.tensors[1]])
    assert abs(targets.mean().item()) < 1e-4 and targets.std().item() == pytest.approx(1.0, abs=1e-4)
    assert data.n_features == 32 and len(data.val_set) == pytest.approx(1024, abs=3)


def test_abag_bins_are_as_imbalanced_as_the_log_with_very_strong_rarest():
    _, targets = abag_affinities(20000, seed=1)
    counts = torch.bincount(torch.bucketize(targets, torch.tensor([5.0, 7.0, 9.0, 11.0]), right=True), minlength=5)
    very_weak, weak, moderate, strong, very_strong = counts.tolist()
    assert very_strong < very_weak < min(weak, moderate, strong)
    # v1's weights total/(5*count) are 81.2 and 2439.4 for the extremes, ~3.3-3.9 for the others:
    # very_weak ~1.5% and very_strong ~0.05% of the samples.
    assert very_weak / 20000 == pytest.approx(0.0146, abs=0.002)
    assert very_strong <= 20


def test_abag_validation_holds_every_bin():
    data = RegressionData(MLPRegression().resolve({})["data"])
    data.setup()
    bins = torch.bucketize(data.val_set.tensors[1], torch.tensor(data.bin_edges), right=True)
    val_counts = torch.bincount(bins, minlength=len(AFFINITY_BINS))
    assert val_counts.min().item() >= MIN_VALIDATION_PER_BIN
    assert val_counts.argmin().item() == AFFINITY_BINS.index("very_strong")
    assert data.train_bin_counts.argmin().item() == AFFINITY_BINS.index("very_strong")
    assert data.n_features == 150


def write_table(frame: pd.DataFrame, folder, suffix: str):
    path = folder / f"affinity{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_load_table_reads_numeric_features_and_the_target(tmp_path, suffix):
    frame = pd.DataFrame(
        {
            "antibody": ["a", "b", "c", "d"],
            "charge": [1.0, 2.0, None, 4.0],
            "area": [10.0, 20.0, 30.0, 40.0],
            "pkd": [6.0, 8.0, 9.0, 12.0],
        }
    )
    path = write_table(frame, tmp_path, suffix)
    features, targets = load_table(path, "pkd")
    # The text column is not a feature; the row with a missing charge is dropped.
    assert features.tolist() == [[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]]
    assert targets.tolist() == [6.0, 8.0, 12.0]
    # Only the columns used count: without charge, no row is missing anything.
    features, _ = load_table(path, "pkd", feature_columns=["area"])
    assert features.tolist() == [[10.0], [20.0], [30.0], [40.0]]
    with pytest.raises(ValueError, match="target_column 'kd' is not in"):
        load_table(path, "kd")
    with pytest.raises(ValueError, match=r"feature_columns \['volume'\]"):
        load_table(path, "pkd", feature_columns=["volume"])


def test_a_table_trains_end_to_end(tmp_path):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, 3, generator=generator)
    frame = pd.DataFrame(features.numpy(), columns=["x1", "x2", "x3"])
    frame["pkd"] = (8 + 2 * features[:, 0]).numpy()
    path = write_table(frame, tmp_path, ".parquet")
    config = {"data": {"source": "table", "path": str(path), "target_column": "pkd", "batch_size": 32}}
    metrics = fit(MLPRegression(), config, max_epochs=2)
    assert math.isfinite(metrics["val_mse"]) and math.isfinite(metrics["rmse"])


def test_mlp_sizes_match_the_abag_log():
    def parameters(hidden_dims):
        return sum(p.numel() for p in MLPRegressor(150, hidden_layer_widths(hidden_dims)).parameters())

    # "v1: ~78,000 parameters" for 150 → 256 → 128 → 1 (without its unstated extras), "v2: ~240,000".
    assert parameters([256, 128]) == 150 * 256 + 256 + 256 * 128 + 128 + 128 + 1 == 71_681
    assert parameters("512,256,128,64") == 249_857


def test_mlp_activation_xavier_init_and_embedding_head():
    network = MLPRegressor(10, [8, 4], activation="gelu", dropout=0.1, xavier_init=True, embedding_dim=3)
    assert any(isinstance(m, torch.nn.GELU) for m in network.modules())
    assert all(torch.all(m.bias == 0) for m in network.modules() if isinstance(m, torch.nn.Linear))
    predictions, embeddings = network(torch.randn(5, 10))
    assert predictions.shape == (5,) and embeddings.shape == (5, 3)
    assert MLPRegressor(10, [8])(torch.randn(5, 10))[1] is None


def test_warmup_then_decay_by_gamma_down_to_the_floor():
    # CABBI 017: warmup_steps 5, gamma 0.85; epoch 0 at 1/5 of max_lr, the peak at epoch 4.
    factors = [warmup_decay_factor(e, warmup_steps=5, gamma=0.85, floor=1e-3) for e in range(7)]
    assert factors == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 0.85, 0.85**2])
    assert warmup_decay_factor(200, warmup_steps=5, gamma=0.85, floor=1e-3) == 1e-3


def test_config_errors_name_the_key():
    family = MLPRegression()
    with pytest.raises(ValueError, match="loss_config.lamda_dist"):
        family.resolve({"loss_config": {"lamda_dist": 0.5}})
    with pytest.raises(ValueError, match="scheduler.name='onecycle'"):
        family.resolve({"scheduler": {"name": "onecycle"}})
    with pytest.raises(TypeError, match="config key model must be a mapping"):
        family.resolve({"model": "gelu"})
    assert family.resolve({"model": {"activation": "gelu"}})["model"]["hidden_dims"] == [256, 128]
    # fit resolves first, so a bad config fails with the same error before anything is built.
    with pytest.raises(ValueError, match="model.activation='tanh' is unknown"):
        fit(family, {"model": {"activation": "tanh"}}, max_epochs=1)


def test_trainer_options_carry_clipping_and_accumulation():
    family = MLPRegression()
    options = family.trainer_options(family.resolve({"trainer": {"gradient_clip_val": 1.0, "accumulate_grad_batches": 8}}))
    assert options == {"gradient_clip_val": 1.0, "accumulate_grad_batches": 8}


class RecordingRegression(MLPRegression):
    """MLPRegression that keeps every config it resolves and the config each hook is given."""

    def __init__(self):
        super().__init__()
        self.resolved, self.received, self.model = [], {}, None

    def resolve(self, config):
        self.resolved.append(super().resolve(config))
        return self.resolved[-1]

    def build_model(self, config):
        self.received["build_model"] = config
        self.model = super().build_model(config)
        return self.model

    def build_data(self, config):
        self.received["build_data"] = config
        return super().build_data(config)

    def callbacks(self, config):
        self.received["callbacks"] = config
        return super().callbacks(config)

    def trainer_options(self, config):
        self.received["trainer_options"] = config
        return super().trainer_options(config)


def test_fit_resolves_once_and_every_hook_gets_the_resolved_config():
    family = RecordingRegression()
    fit(family, SMALL_CABBI, max_epochs=1)
    assert len(family.resolved) == 1
    resolved = family.resolved[0]
    assert resolved["data"]["source"] == "cabbi" and resolved["optimizer"]["name"] == "adam"  # the defaults filled in
    assert set(family.received) == {"build_model", "build_data", "callbacks", "trainer_options"}
    assert all(config is resolved for config in family.received.values())
    assert family.model.config is resolved


SMALL = {"data": {"n_samples": 640, "batch_size": 64}, "model": {"hidden_dims": [16]}}


def train(config, epochs):
    family = MLPRegression()
    resolved = family.resolve(config)
    model, data = RegressionModule(resolved), RegressionData(resolved["data"])
    trainer = pl.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, **family.trainer_options(resolved),
    )
    trainer.fit(model, datamodule=data)
    return trainer, model, data


@pytest.mark.parametrize(
    "schedule, expected_lr",
    [
        # After 3 epochs the LambdaLR has stepped 3 times: factor 4/5 of max_lr.
        ({"name": "warmup_decay", "max_lr": 1e-3, "warmup_steps": 5, "gamma": 0.85, "min_lr": 1e-7}, 8e-4),
        # Cosine from lr 1e-3 to 1e-5 over T_0 = 20 epochs, 3 epochs in.
        ({"name": "cosine_warm_restarts", "T_0": 20, "min_lr": 1e-5}, 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * 3 / 20)) / 2),
        # No plateau yet in 3 epochs with patience 5: unchanged.
        ({"name": "reduce_on_plateau", "patience": 5}, 1e-3),
    ],
)
def test_learning_rate_schedules(schedule, expected_lr):
    trainer, _, _ = train({**SMALL, "optimizer": {"name": "adamw", "lr": 1e-3}, "scheduler": schedule}, epochs=3)
    assert isinstance(trainer.optimizers[0], torch.optim.AdamW)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(expected_lr)


def test_validation_metrics_cover_the_whole_validation_set():
    trainer, model, data = train({**SMALL, "loss_config": {"class_weights": True, "extreme_bin_multiplier": 10.0}}, epochs=1)
    model.eval()
    with torch.no_grad():
        features, targets = data.val_set.tensors
        predictions = model(features)
    expected = regression_metrics(predictions, targets, data.bin_edges)
    logged = trainer.callback_metrics
    assert logged["val_mse"].item() == pytest.approx(expected["mse"], rel=1e-5)
    for name in ("rmse", "pearson", "spearman", "r2", "tail_rmse", "std_ratio", "distribution_distance", "rmse_very_strong"):
        assert logged[name].item() == pytest.approx(expected[name], rel=1e-5, abs=1e-6), name
    # val_loss is the weighted training loss, so it differs from plain MSE.
    assert logged["val_loss"].item() != pytest.approx(logged["val_mse"].item())
    assert "train_loss" in logged


def test_dist_and_supcr_train_and_resume_with_their_buffer(tmp_path):
    config = {
        "data": {"source": "cabbi", "n_samples": 640, "n_features": 16, "standardize_target": True,
                 "bin_edges": [-2.0, -1.0, 1.0, 2.0], "batch_size": 32},
        "model": {"hidden_dims": [16], "embedding_dim": 4},
        "loss_config": {"lambda_dist": 0.5, "lambda_supcr": 0.01, "buffer_size": 256, "warmup_epochs": 0,
                        "stable_epoch": 1, "min_samples_for_dist": 64, "min_samples_for_supcr": 64, "max_epochs": 4},
    }
    reports, keep = checkpoint_keeper(tmp_path)
    fit(MLPRegression(), config, max_epochs=2, report=keep)
    assert [m["epoch"] for m, _ in reports] == [1.0, 2.0]
    assert all(math.isfinite(m["val_loss"]) and math.isfinite(m["tail_rmse"]) for m, _ in reports)
    # At epoch 1 the buffer weight is 0.9 and the buffer full: val_loss carries DistLoss on top of MSE.
    assert reports[1][0]["val_loss"] > reports[1][0]["val_mse"]
    checkpoint = torch.load(reports[1][1] / "last.ckpt", weights_only=False)
    assert checkpoint["state_dict"]["loss.buffer.filled"].item() == 256
    resumed = []
    fit(MLPRegression(), config, max_epochs=3, resume_from=reports[1][1], report=lambda m, folder: resumed.append(m))
    assert [m["epoch"] for m in resumed] == [3.0] and math.isfinite(resumed[0]["val_loss"])


@pytest.mark.parametrize("every_s, saved", [(0.0, [True, True, True]), (3600.0, [False, False, True])])
def test_checkpoints_are_paced_and_the_last_epoch_always_saved(every_s, saved):
    checkpoints = []

    def keep(metrics, folder):
        checkpoints.append(folder is not None and os.path.isfile(os.path.join(folder, CHECKPOINT_FILE)))

    fit(MLPRegression(), SMALL_CABBI, max_epochs=3, report=keep, checkpoint_every_s=every_s)
    assert checkpoints == saved


def test_resumed_from_the_last_epoch_reports_that_epoch_again(tmp_path):
    # A driver lost after the last epoch's checkpoint was stored, before the trial's end was: nothing is left to train.
    reports, keep = checkpoint_keeper(tmp_path)
    fit(MLPRegression(), SMALL_CABBI, max_epochs=2, report=keep)
    last_metrics, last_checkpoint = reports[-1]
    again = []
    fit(MLPRegression(), SMALL_CABBI, max_epochs=2, resume_from=last_checkpoint, report=lambda m, folder: again.append((m, folder)))
    assert [folder for _, folder in again] == [None]  # the checkpoint is stored already
    assert again[0][0] == pytest.approx(last_metrics, nan_ok=True)  # bins absent from validation are NaN


# A trial's process killed at its first checkpoint, as the kernel's out-of-memory killer ends one: no cleanup of its own runs.
KILLED_AT_FIRST_CHECKPOINT = f"""
import os, signal
from trainers.base import fit
from trainers.regression import MLPRegression
fit(MLPRegression(), {SMALL_CABBI!r}, max_epochs=3, report=lambda metrics, folder: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_a_killed_trainings_checkpoints_are_removed_by_the_next_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    killed = subprocess.Popen([sys.executable, "-c", KILLED_AT_FIRST_CHECKPOINT], stderr=subprocess.PIPE, text=True)
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, stderr[-2000:]
    left = list(tmp_path.glob(f"{CHECKPOINT_ROOT_PREFIX}{killed.pid}_*"))
    assert len(left) == 1 and list(left[0].rglob(CHECKPOINT_FILE)), "the killed training left no checkpoint to remove"
    # A live process's folder (this one's parent's, as another trial training beside it) is not an orphan.
    beside = tmp_path / f"{CHECKPOINT_ROOT_PREFIX}{os.getppid()}_beside"
    beside.mkdir()
    fit(MLPRegression(), SMALL_CABBI, max_epochs=1)
    assert not left[0].exists()
    assert beside.exists()
    assert sorted(tmp_path.iterdir()) == [beside]  # this training removed its own folder on its way out
