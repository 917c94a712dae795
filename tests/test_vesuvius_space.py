"""search_spaces/vesuvius.py loads, carries the log's configs, and each of them trains."""

import math
from pathlib import Path

import pytest

from objectives.segmentation import METRICS
from studies.space import Objective, load_space
from trainers.base import fit, resolve_config
from trainers.segmentation import DEFAULT_CONFIG, SurfaceSegmentation

SPACE_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "vesuvius.py"
BASELINE_NAMES = ["v1", "v2", "v3", "v2_optimized", "v4_aggressive_focal", "v5_variance_focused", "batch8_restart"]


@pytest.fixture(scope="module")
def space():
    return load_space(SPACE_FILE)



def test_space_declares_the_logs_objectives_and_trainer(space):
    assert space.trainer is SurfaceSegmentation
    assert space.objectives == [Objective("val_loss", "minimize"), Objective("class_balance_error", "minimize")]
    assert space.resources.cpus == 1 and space.resources.gpus == 0
    noise_knobs = [name for name, knob in space.knobs.items() if knob.when]
    assert noise_knobs == ["noise_start_epoch", "noise_frequency", "noise_std", "noise_decay"]


def test_every_baseline_is_there_with_the_logs_values(space):
    assert list(space.baselines) == BASELINE_NAMES
    v1, v2, v3 = space.baselines["v1"], space.baselines["v2"], space.baselines["v3"]
    assert (v1["background_weight"], v1["foreground_weight"], v1["focal_alpha"]) == (2.94, 1.52, 0.75)
    assert (v2["foreground_weight"], v2["threshold"], v2["loss_weights.dice_weight"]) == (3.0, 0.7, 0.4)
    assert (v3["foreground_weight"], v3["threshold"], v3["background_weight"]) == (3.6, 0.8, 0.8)
    assert space.baselines["v2_optimized"]["threshold"] == 0.6
    v4 = space.baselines["v4_aggressive_focal"]
    assert (v4["foreground_weight"], v4["learning_rate"], v4["swa_start_epoch"], v4["noise_std"]) == (5.0, 2e-4, 20, 0.002)
    v5 = space.baselines["v5_variance_focused"]
    assert (v5["loss_weights.variance_weight"], v5["noise_frequency"], v5["noise_std"]) == (0.5, 2, 0.005)
    batch8 = space.baselines["batch8_restart"]
    assert (batch8["batch_size"], batch8["learning_rate"], batch8["loss_weights.dice_weight"]) == (8, 2e-4, 0.5)
    # Every baseline names every unconditional knob, and the noise knobs exactly when noise is on.
    for name, values in space.baselines.items():
        for knob_name in space.knobs:
            if knob_name == "noise_decay":
                continue  # the log never gives it a value
            assert (knob_name in values) == space.active(knob_name, values), (name, knob_name)


def test_log_weights_sum_to_one_as_the_weighted_mean_assumes(space):
    for name, values in space.baselines.items():
        total = sum(value for key, value in values.items() if key.startswith("loss_weights."))
        assert total == pytest.approx(1.0, abs=0.051), name  # v2_optimized, v4 and batch8_restart sum to 0.95


# Shrinks a training config to seconds: 8^3 patches, 10 volumes, a 2-level U-Net.
TINY = {"patch_size": [8, 8, 8], "model": {"base_channels": 2, "depth": 2}, "data": {"num_volumes": 10}, "skeleton_iterations": 2}


@pytest.mark.parametrize("baseline", BASELINE_NAMES)
def test_each_baseline_trains_an_epoch(space, baseline):
    config = space.training_config(space.baselines[baseline])
    resolve_config(config, DEFAULT_CONFIG)  # raises on a key the trainer does not know
    config["patch_size"] = TINY["patch_size"]
    config["skeleton_iterations"] = TINY["skeleton_iterations"]
    config["model"].update(TINY["model"])
    config["data"].update(TINY["data"])
    reports = []
    metrics = fit(space.trainer(), config, max_epochs=1, report=lambda m, d: reports.append(m))
    assert len(reports) == 1
    assert set(METRICS) <= set(metrics)
    assert math.isfinite(metrics["val_loss"]) and 0 <= metrics["class_balance_error"] <= 1
