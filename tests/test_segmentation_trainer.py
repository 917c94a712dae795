"""The surface-segmentation family: its synthetic data, TIFF loader, U-Net, callbacks, and real training runs."""

import math
import shutil

import numpy as np
import pytest
import tifffile
import torch

from objectives.segmentation import COMPONENTS, METRICS
from trainers.base import fit
from trainers.segmentation import (
    DEFAULT_CONFIG,
    SurfaceData,
    SurfaceSegmentation,
    TiffPatches,
    UNet3D,
    WeightNoiseInjection,
    kfold_split,
    paired_tiff_files,
    synthetic_papyrus,
)

# Small enough that two epochs take a couple of seconds on one CPU core.
TINY = {
    "patch_size": [8, 8, 8],
    "batch_size": 2,
    "model": {"base_channels": 2, "depth": 2},
    "skeleton_iterations": 2,
    "data": {"num_volumes": 10, "num_folds": 5},
}


def tiny(**overrides):
    config = SurfaceSegmentation().resolve(TINY)
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    return config


# ------------------------------------------------------------------------------------------- data


def test_synthetic_foreground_matches_the_logs_label_distribution():
    # The log's labels: mean 60.9 %, std 18.0 %, range 17.95 %..92.28 % ("Actual Training Label Distribution").
    _, labels = synthetic_papyrus(200, [24, 24, 24], seed=0)
    fractions = labels.flatten(1).mean(dim=1)
    assert 0.57 < fractions.mean().item() < 0.65
    assert 0.14 < fractions.std().item() < 0.22
    assert fractions.min().item() < 0.25 and fractions.max().item() > 0.87


def test_synthetic_volumes_are_seeded_and_standardised():
    images, labels = synthetic_papyrus(3, [16, 16, 16], seed=7)
    again, _ = synthetic_papyrus(3, [16, 16, 16], seed=7)
    other, _ = synthetic_papyrus(3, [16, 16, 16], seed=8)
    assert images.shape == labels.shape == (3, 1, 16, 16, 16)
    assert torch.equal(images, again) and not torch.equal(images, other)
    assert set(labels.unique().tolist()) == {0.0, 1.0}
    assert images[0].mean().item() == pytest.approx(0, abs=1e-5) and images[0].std().item() == pytest.approx(1, abs=1e-4)
    # Sheets are brighter than the gaps between them, though noise blurs them.
    assert images[labels == 1].mean() > images[labels == 0].mean()


def test_kfold_splits_are_disjoint_and_cover_every_volume():
    validation_folds = []
    for fold in range(3):
        train, validation = kfold_split(8, 3, fold)
        assert not set(train) & set(validation)
        assert sorted(train + validation) == list(range(8))
        validation_folds += validation
    assert sorted(validation_folds) == list(range(8))
    with pytest.raises(ValueError, match="fold must be"):
        kfold_split(8, 3, 3)


@pytest.fixture
def tiff_folders(tmp_path):
    """Five 10x12x14 uint8 volumes and labels (0 background, 1 surface, 2 unlabeled), by the same names."""
    volume_dir, label_dir = tmp_path / "volumes", tmp_path / "labels"
    volume_dir.mkdir()
    label_dir.mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
        label = rng.integers(0, 3, size=(10, 12, 14), dtype=np.uint8)
        volume = (label * 60 + rng.integers(0, 40, size=label.shape)).astype(np.uint8)
        tifffile.imwrite(volume_dir / f"scroll_{index}.tif", volume)
        tifffile.imwrite(label_dir / f"scroll_{index}.tif", label)
    return volume_dir, label_dir


def test_tiff_folds_are_disjoint_and_cover_every_volume(tiff_folders):
    names = [volume.name for volume, _ in paired_tiff_files(*tiff_folders)]
    assert names == [f"scroll_{index}.tif" for index in range(5)]
    seen_in_validation = []
    for fold in range(5):
        config = {"data": {"source": "tiff", "volume_dir": str(tiff_folders[0]), "label_dir": str(tiff_folders[1]),
                           "fold": fold, "num_folds": 5, "patches_per_volume": 2}, "patch_size": [8, 8, 8]}
        data = SurfaceData(SurfaceSegmentation().resolve(config))
        data.setup("fit")
        train = {volume.name for volume, _ in data.train_set.pairs}
        validation = {volume.name for volume, _ in data.val_set.pairs}
        assert not train & validation and train | validation == set(names)
        assert len(data.train_set) == 2 * len(train)
        seen_in_validation += sorted(validation)
    assert sorted(seen_in_validation) == names


def test_tiff_patches_crop_standardise_and_binarise(tiff_folders):
    pairs = paired_tiff_files(*tiff_folders)
    patches = TiffPatches(pairs, patch_size=[8, 8, 8], patches_per_volume=3, foreground_values=[1])
    image, label = patches[4]
    assert image.shape == label.shape == (1, 8, 8, 8)
    assert image.dtype == label.dtype == torch.float32
    assert set(label.unique().tolist()) <= {0.0, 1.0}
    # Label 2 (unlabeled) is background unless listed; listing it makes more foreground.
    with_unlabeled = TiffPatches(pairs, [8, 8, 8], 3, foreground_values=[1, 2], fixed_seed=0)
    only_surface = TiffPatches(pairs, [8, 8, 8], 3, foreground_values=[1], fixed_seed=0)
    assert with_unlabeled[0][1].sum() > only_surface[0][1].sum()
    # Fixed (validation) patches are the same voxels every time, standardised by their volume's statistics.
    assert torch.equal(only_surface[2][0], only_surface[2][0])
    volume = tifffile.imread(pairs[0][0]).astype(np.float64)
    d, h, w = only_surface.fixed_corners[2]
    expected = (volume[d : d + 8, h : h + 8, w : w + 8] - volume.mean()) / volume.std()
    assert np.allclose(only_surface[2][0][0].numpy(), expected, atol=1e-4)


def test_tiff_loader_names_what_is_missing(tiff_folders):
    volume_dir, label_dir = tiff_folders
    (label_dir / "scroll_3.tif").unlink()
    with pytest.raises(ValueError, match="scroll_3.tif"):
        paired_tiff_files(volume_dir, label_dir)
    too_large = TiffPatches(paired_tiff_files(volume_dir, volume_dir), [16, 16, 16], 1, [1])
    with pytest.raises(ValueError, match="smaller than patch_size"):
        too_large[0]


def test_a_tiff_datamodule_trains(tiff_folders):
    config = tiny(data={"source": "tiff", "volume_dir": str(tiff_folders[0]), "label_dir": str(tiff_folders[1]),
                        "patches_per_volume": 2})
    metrics = fit(SurfaceSegmentation(), config, max_epochs=1)
    assert math.isfinite(metrics["val_loss"])


# ------------------------------------------------------------------------------------------ model


@pytest.mark.parametrize("base_channels, depth, side", [(2, 1, 6), (4, 2, 8), (3, 3, 12), (8, 4, 16)])
def test_unet_returns_one_logit_per_voxel(base_channels, depth, side):
    net = UNet3D(base_channels=base_channels, depth=depth)
    assert net(torch.randn(2, 1, side, side, side)).shape == (2, 1, side, side, side)


def test_unet_rejects_sides_its_depth_cannot_halve():
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet3D(base_channels=2, depth=3)(torch.randn(1, 1, 8, 8, 6))


def test_config_rejects_unknown_keys():
    family = SurfaceSegmentation()
    with pytest.raises(ValueError, match="loss_weights.dice"):
        family.resolve({"loss_weights": {"dice": 0.3}})
    assert family.resolve({"model": {"depth": 2}})["model"]["base_channels"] == DEFAULT_CONFIG["model"]["base_channels"]


def test_weight_noise_schedule_starts_repeats_and_decays():
    noise = WeightNoiseInjection(start_epoch=10, frequency=2, std=0.005, decay=0.5)
    assert [noise.noise_std(epoch) for epoch in (9, 10, 11, 12, 14)] == [0.0, 0.005, 0.0, 0.0025, 0.00125]


def test_callbacks_and_trainer_options_follow_the_config():
    family = SurfaceSegmentation()

    def kinds(config):
        return sorted(type(c).__name__ for c in family.callbacks(family.resolve(config)))

    assert kinds({"noise_enabled": True}) == ["StochasticWeightAveraging", "WeightNoiseInjection"]
    assert kinds({"swa_start_epoch": None}) == []
    assert family.trainer_options(family.resolve({"gradient_clip": 0.5})) == {"gradient_clip_val": 0.5}
    assert family.trainer_options(family.resolve({"gradient_clip": 0})) == {}


# ------------------------------------------------------------------------------------------- training


def test_fit_reports_every_epoch_with_all_losses_and_metrics(tmp_path):
    reports = []

    def report(metrics, checkpoint_dir):
        reports.append(metrics)
        shutil.copytree(checkpoint_dir, tmp_path / f"epoch{int(metrics['epoch'])}")

    # SWA from the second epoch (epoch 1, counting from 0) and noise every epoch, so both callbacks run.
    config = tiny(swa_start_epoch=1, noise_enabled=True, noise_start_epoch=0, noise_frequency=1, optimizer="AdamW")
    fit(SurfaceSegmentation(), config, max_epochs=2, report=report)
    assert [r["epoch"] for r in reports] == [1.0, 2.0]
    expected = {"val_loss", *(f"val_{name}" for name in COMPONENTS), *METRICS}
    for metrics in reports:
        assert expected <= set(metrics)
        assert math.isfinite(metrics["val_loss"]) and math.isfinite(metrics["class_balance_error"])
        assert 0 <= metrics["predicted_fg_fraction"] <= 1
    # A checkpoint handed to report resumes training after its epoch.
    resumed = []
    fit(SurfaceSegmentation(), config, max_epochs=3, report=lambda m, d: resumed.append(m), resume_from=str(tmp_path / "epoch2"))
    assert [r["epoch"] for r in resumed] == [3.0]


def predicted_fg_fraction(**overrides):
    # Only the class-weighted BCE trains, so the class weights alone set where the sheet faces fall.
    config = tiny(
        optimizer="AdamW", learning_rate=0.01, swa_start_epoch=None,
        loss_weights={name: 0.0 for name in DEFAULT_CONFIG["loss_weights"]}, use_class_weights=True,
        model={"base_channels": 4}, data={"num_volumes": 20}, **overrides,
    )
    return fit(SurfaceSegmentation(), config, max_epochs=3)["predicted_fg_fraction"]


def test_threshold_and_class_weights_move_the_predicted_foreground_fraction():
    # The threshold does not touch training, so the same seed trains the same model at both.
    assert predicted_fg_fraction(threshold=0.8) < predicted_fg_fraction(threshold=0.3)
    # Weights scale the loss of their own class: background-heavy weights cut false foreground.
    # (Over seeds 0-4 these read 0.26-0.33 against 0.63-1.0.)
    background_heavy = predicted_fg_fraction(background_weight=5.0, foreground_weight=1.0)
    foreground_heavy = predicted_fg_fraction(background_weight=1.0, foreground_weight=5.0)
    assert background_heavy < foreground_heavy - 0.1
