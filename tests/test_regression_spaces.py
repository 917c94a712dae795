"""search_spaces/cabbi.py and search_spaces/abag.py: load, hold their logs' configs, and train for real."""

import math
from pathlib import Path

import pytest

from studies.space import Categorical, Resources, flatten, load_space
from trainers.base import fit
from trainers.regression import DEFAULT_CONFIG, MLPRegression

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"



CABBI_KNOBS = {
    "loss_config.buffer_size", "loss_config.bandwidth", "loss_config.lambda_dist", "loss_config.lambda_supcr",
    "loss_config.init_temperature", "loss_config.final_temperature", "loss_config.temp_schedule",
    "loss_config.warmup_epochs", "loss_config.stable_epoch", "loss_config.min_samples_for_dist",
    "loss_config.min_samples_for_supcr", "optimizer.weight_decay", "scheduler.max_lr", "scheduler.min_lr",
    "scheduler.warmup_steps", "scheduler.gamma",
}
ABAG_KNOBS = {
    "data.batch_size", "model.hidden_dims", "model.activation", "model.dropout", "model.xavier_init",
    "loss_config.use_focal_loss", "loss_config.focal_gamma", "loss_config.extreme_bin_multiplier",
    "optimizer.name", "optimizer.lr", "optimizer.weight_decay", "scheduler.name", "trainer.gradient_clip_val",
}


@pytest.mark.parametrize(
    "name, knobs, baselines",
    [("cabbi", CABBI_KNOBS, ["CABBI 016", "CABBI 017"]), ("abag", ABAG_KNOBS, ["AbAg v1", "AbAg v2"])],
)
def test_space_declares_every_knob_the_log_turned_and_its_versions(name, knobs, baselines):
    space = load_space(SPACES / f"{name}.py")  # loading checks every baseline value is in its knob's range
    assert set(space.knobs) == knobs
    assert list(space.baselines) == baselines
    for baseline, values in space.baselines.items():
        active = {knob for knob in space.knobs if space.active(knob, values)}
        assert set(values) == active, f"{baseline} sets {set(values) ^ active} wrongly"
    assert space.trainer is MLPRegression and space.resources == Resources(cpus=1)
    # Every fixed value and knob lands on a key the trainer knows.
    for dotted in flatten(space.config):
        section, key = dotted.split(".")
        assert key in DEFAULT_CONFIG[section], dotted


def test_each_log_version_differs_where_the_log_says():
    cabbi = load_space(SPACES / "cabbi.py").baselines
    assert (cabbi["CABBI 016"]["loss_config.buffer_size"], cabbi["CABBI 017"]["loss_config.buffer_size"]) == (384, 4096)
    assert (cabbi["CABBI 016"]["loss_config.temp_schedule"], cabbi["CABBI 017"]["loss_config.temp_schedule"]) == (
        "exponential",
        "cosine",
    )
    abag = load_space(SPACES / "abag.py")
    assert abag.baselines["AbAg v2"]["loss_config.extreme_bin_multiplier"] == 10 * abag.baselines["AbAg v1"]["loss_config.extreme_bin_multiplier"]
    assert isinstance(abag.knobs["model.hidden_dims"], Categorical)


def test_objectives_lead_with_val_mse_then_the_tails():
    cabbi, abag = load_space(SPACES / "cabbi.py"), load_space(SPACES / "abag.py")
    assert [(o.name, o.direction) for o in cabbi.objectives] == [
        ("val_mse", "minimize"),
        ("tail_rmse", "minimize"),
        ("distribution_distance", "minimize"),
    ]
    assert [(o.name, o.direction) for o in abag.objectives] == [
        ("val_mse", "minimize"),
        ("rmse_very_strong", "minimize"),
        ("spearman", "maximize"),
    ]
    # The schedules' horizon matches the trainer's, as CABBI 017 set it.
    assert cabbi.fixed["loss_config.max_epochs"] == cabbi.budget.max_epochs


def run_two_epochs(space_name, params):
    space = load_space(SPACES / f"{space_name}.py")
    reports = []
    last = fit(space.trainer(), space.training_config(params), max_epochs=2, report=lambda metrics, folder: reports.append(metrics))
    assert [m["epoch"] for m in reports] == [1.0, 2.0]
    for metrics in reports:
        for name in ["val_loss", "rmse", "std_ratio", *(o.name for o in space.objectives)]:
            assert math.isfinite(metrics[name]), f"{space_name}: {name} = {metrics[name]}"
    assert math.isfinite(last["train_loss"])
    return reports


@pytest.mark.parametrize(
    "space_name, baseline",
    [("cabbi", "CABBI 016"), ("cabbi", "CABBI 017"), ("abag", "AbAg v1"), ("abag", "AbAg v2")],
)
def test_each_baseline_trains_two_epochs_and_reports_finite_tail_metrics(space_name, baseline):
    run_two_epochs(space_name, load_space(SPACES / f"{space_name}.py").baselines[baseline])


def test_cabbi_with_distloss_and_supcr_switched_on_in_range():
    params = dict(load_space(SPACES / "cabbi.py").baselines["CABBI 017"])
    # The lowest warmup in range: the buffer losses start in the second epoch (weight 0.9 / 20).
    params.update({"loss_config.warmup_epochs": 0, "loss_config.stable_epoch": 20})
    reports = run_two_epochs("cabbi", params)
    assert reports[1]["val_loss"] > reports[1]["val_mse"]
