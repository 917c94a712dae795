"""The replay of recorded learning curves (benchmarks/recorded.py), on real two-epoch trainings of the AbAg space."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.record_curves import append_record, read_records, train_and_record
from benchmarks.recorded import RecordedCurves, jitter_stds, recorded_problems
from studies.space import Budget, load_space

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 2
DIVERGING_LR = 1e6  # AbAg v1 at this learning rate is NaN after its first epoch


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A curve file of AbAg v1, v2 and a diverging v1, as the recorder writes it, and its problem."""
    space = load_space(REPO / "search_spaces" / "abag.py")
    space = dataclasses.replace(space, budget=Budget(max_epochs=EPOCHS))
    v1, v2 = space.baselines["AbAg v1"], space.baselines["AbAg v2"]
    path = tmp_path_factory.mktemp("curves") / "abag.jsonl.gz"
    for seed, (params, baseline) in enumerate([(v1, "AbAg v1"), (v2, "AbAg v2"), ({**v1, "optimizer.lr": DIVERGING_LR}, None)]):
        append_record(path, train_and_record(space, params, baseline, seed=seed))
    records, complete = read_records(path)
    assert complete and len(records) == 3 and records[2]["error"] == "diverged"
    return records, RecordedCurves.from_file(path)


def test_nearest_config_replays_its_recorded_curve_exactly_without_noise(recorded):
    records, problem = recorded
    quiet = dataclasses.replace(problem, noise_std=np.zeros(len(records)))
    assert problem.metric == "val_mse" and problem.max_epochs == EPOCHS
    for record in records[:2]:
        expected = [epoch["val_mse"] for epoch in record["epochs"]]
        assert [quiet.observed(record["params"], epoch, seed=0) for epoch in (1, 2)] == expected
    near_v2 = {**records[1]["params"], "model.dropout": 0.32, "optimizer.lr": 1.2e-4}
    assert quiet.nearest(near_v2) == 1
    assert quiet.observed(near_v2, 2, seed=5) == records[1]["epochs"][1]["val_mse"]


def test_noise_is_fixed_by_the_seed_and_differs_across_seeds(recorded):
    records, problem = recorded
    noisy = dataclasses.replace(problem, noise_std=np.full(len(records), 0.1))
    v1 = records[0]["params"]
    assert noisy.observed(v1, 2, seed=3) == noisy.observed(dict(v1), 2, seed=3)
    assert len({noisy.observed(v1, 2, seed=seed) for seed in range(5)}) == 5


def test_jitter_estimate_recovers_each_curves_white_noise():
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 41)
    stds = np.repeat([0.01, 0.2], 200)[:, None]
    curves = 1 + rng.uniform(0.5, 2, (400, 1)) * np.exp(-0.2 * epochs) + rng.normal(0, 1, (400, 40)) * stds
    curves[0, 10:] = np.nan  # failed before its last third: the others' median
    estimates = jitter_stds(curves)
    assert np.median(estimates[:200]) == pytest.approx(0.01, rel=0.15)
    assert np.median(estimates[200:]) == pytest.approx(0.2, rel=0.15)
    assert estimates[0] == pytest.approx(np.median(estimates[1:]))


def test_regret_is_zero_for_the_best_recorded_config_and_a_failed_one_is_the_worst(recorded):
    records, problem = recorded
    finals = [record["epochs"][-1]["val_mse"] for record in records[:2]]
    best = int(np.argmin(finals))
    assert problem.regret(records[best]["params"]) == 0
    assert problem.loss(records[2]["params"]) == max(finals)
    assert problem.regret(records[2]["params"]) == problem.regret(records[1 - best]["params"]) > 0


def test_failed_config_observes_nan_from_the_epoch_it_failed(recorded):
    records, problem = recorded
    assert len(records[2]["epochs"]) == 1  # the non-finite epoch stopped it
    assert all(math.isnan(problem.observed(records[2]["params"], epoch, seed=0)) for epoch in (1, 2))


def test_committed_curves_replay_every_recorded_config_as_its_own_nearest():
    problems = recorded_problems()
    assert {"recorded_cabbi", "recorded_abag", "recorded_flyvis"} <= set(problems)
    for problem in problems.values():
        assert all(problem.nearest(params) == index for index, params in enumerate(problem.params))
        assert min(problem.regret(params) for params in problem.params) == 0
