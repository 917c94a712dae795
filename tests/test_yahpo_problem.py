"""The YAHPO rbv2_xgboost problem family, against the real ONNX surrogate in shared/benchmarks."""

import statistics

import numpy as np
import optuna
import pytest

from benchmarks.yahpo import (
    DATA_ENV,
    DEFAULT_TASKS,
    HELD_OUT_TASKS,
    REFERENCE_SAMPLES,
    REFERENCE_SEED,
    Reference,
    YahpoDataError,
    YahpoXGBoost,
    artefact_free,
    data_dir,
    yahpo_problems,
)
from studies.space import Categorical, Float, Int, Space, _check_knob

try:
    data_dir()
except YahpoDataError as exc:
    pytest.skip(f"the YAHPO surrogate's data is absent: {exc}", allow_module_level=True)

TASK = "1489"  # phoneme: small, every booster trains on it
BOOSTERS_OF = {"rate_drop": {"dart"}, "skip_drop": {"dart"}}
TREE_ONLY = ("eta", "gamma", "max_depth", "min_child_weight", "colsample_bytree", "colsample_bylevel")


@pytest.fixture(scope="module")
def problem():
    return YahpoXGBoost(TASK)


def config(booster: str, **changes) -> dict:
    """A plausible config of ``booster`` with the knobs it uses (and the tree knobs, declared for every booster)."""
    params = {"booster": booster, "nrounds": 300, "lambda": 1.0, "alpha": 0.01, "subsample": 0.8}
    params.update(eta=0.05, gamma=0.01, max_depth=6, min_child_weight=3.0, colsample_bytree=0.8, colsample_bylevel=0.8)
    if booster == "dart":
        params.update(rate_drop=0.1, skip_drop=0.5)
    return {**params, **changes}


def test_problems_have_the_shared_shape():
    problems = yahpo_problems()
    assert list(problems) == [f"yahpo_xgboost_{task}" for task in DEFAULT_TASKS]
    for name, problem in problems.items():
        assert (problem.name, problem.family, problem.max_epochs) == (name, "yahpo", 27)
    with pytest.raises(ValueError, match="no task_id"):
        YahpoXGBoost("999999")


def test_the_held_out_tasks_are_other_data_sets_free_of_the_artefact():
    assert len(set(HELD_OUT_TASKS)) == len(HELD_OUT_TASKS) and not set(HELD_OUT_TASKS) & set(DEFAULT_TASKS)
    assert all(artefact_free(task) for task in HELD_OUT_TASKS)
    assert not artefact_free("6")  # letter: dart with many rounds is predicted a logloss of 0
    assert not artefact_free("60")  # waveform-5000: such a dart config at 0.035 where the best random one has 0.153
    held_out = yahpo_problems(HELD_OUT_TASKS[:2], family="yahpo-held-out")
    assert [(problem.task_id, problem.family) for problem in held_out.values()] == [
        (task, "yahpo-held-out") for task in HELD_OUT_TASKS[:2]
    ]


def test_missing_data_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(YahpoDataError) as raised:
        yahpo_problems()
    message = str(raised.value)
    assert "\n" not in message and DATA_ENV in message and "model.onnx" in message


def test_knobs_validate_as_a_space_declares_them(problem):
    knobs = problem.knobs
    assert list(knobs)[0] == "booster" and knobs["booster"].choices == ["gblinear", "gbtree", "dart"]
    assert not {"task_id", "trainsize", "repl", "num.impute.selected.cpo"} & set(knobs)
    assert knobs["nrounds"] == Int(7, 2981, log=True)
    assert isinstance(knobs["eta"], Float) and knobs["eta"].log and knobs["eta"].high == 1.0
    assert not knobs["subsample"].log and not knobs["max_depth"].log
    for name, knob in knobs.items():
        _check_knob("yahpo", name, knob, knobs)  # what load_space checks: ranges, distribution(), parents declared first
        assert knob.distribution() is not None
        assert (knob.when or {}) == ({"booster": "dart"} if name in BOOSTERS_OF else {})
    assert sum(isinstance(k, Categorical) for k in knobs.values()) == 1


def test_a_space_of_the_knobs_suggests_configs_the_problem_reads(problem):
    space = Space(problem.name, None, problem.knobs, problem.knobs, {}, {}, [], None, None, None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    boosters = set()
    for _ in range(30):
        params = space.suggest(study.ask())
        boosters.add(params["booster"])
        assert ("rate_drop" in params) == (params["booster"] == "dart")
        assert np.isfinite(problem.observed(params, 3, seed=0)) and problem.regret(params) >= 0
    assert boosters == {"gblinear", "gbtree", "dart"}


def test_fidelity_steps_are_trainsize_fractions(problem):
    assert [round(problem.trainsize(e), 3) for e in (1, 3, 9, 27)] == [0.037, 0.111, 0.333, 1.0]
    assert problem.trainsize(0) == 0.03
    with pytest.raises(ValueError):
        problem.trainsize(28)


def test_observed_is_deterministic_per_seed_and_differs_across_seeds(problem):
    params = config("gbtree")
    assert problem.observed(params, 9, seed=1) == problem.observed(dict(params), 9, seed=1)
    by_seed = [problem.observed(params, 9, seed) for seed in range(200)]
    assert len(set(by_seed)) == 200
    assert problem.observed(params, 9, seed=1) != problem.observed(params, 10, seed=1)
    # Noise around the surrogate's value, with the std the problem states (200 draws: within 25 %).
    assert statistics.mean(by_seed) == pytest.approx(
        problem.loss_at(params, problem.trainsize(9)), abs=3 * problem.noise_std / 10
    )
    assert statistics.stdev(by_seed) == pytest.approx(problem.noise_std, rel=0.25)
    assert 0 < problem.noise_std < 0.05 * problem.reference.median


def test_inactive_knobs_change_nothing(problem):
    linear = config("gblinear")
    # The tree knobs are declared for every booster, and gblinear ignores them: loss and noise alike.
    other_tree_knobs = {**linear, "eta": 0.9, "max_depth": 14, "gamma": 5.0, "colsample_bytree": 0.1}
    assert problem.loss(other_tree_knobs) == problem.loss(linear)
    assert problem.observed(other_tree_knobs, 5, seed=3) == problem.observed(linear, 5, seed=3)
    assert problem.loss({k: v for k, v in linear.items() if k not in TREE_ONLY}) == problem.loss(linear)
    # rate_drop / skip_drop only act for dart; a gbtree config may carry or omit them.
    tree = config("gbtree")
    assert problem.loss({**tree, "rate_drop": 0.9}) == problem.loss(tree)
    assert problem.loss(config("dart", rate_drop=0.9)) != problem.loss(config("dart"))
    assert problem.loss({**tree, "eta": 0.5}) != problem.loss(tree)  # the shared knobs do act for trees
    with pytest.raises(ValueError, match="rate_drop"):
        problem.loss({k: v for k, v in config("dart").items() if k != "rate_drop"})
    assert problem.used(linear) == {k: v for k, v in linear.items() if k not in TREE_ONLY}


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_regret_is_zero_at_the_sample_best_and_one_at_its_median(task):
    problem = YahpoXGBoost(task)
    reference = problem.reference
    assert problem.regret(reference.best_params) == 0.0
    assert reference.best < reference.median
    # The reference sample drawn again: its median config has regret 1, its best 0 (batched: up to float32 rounding).
    sample = problem.sample(REFERENCE_SAMPLES, REFERENCE_SEED)
    assert reference.best_params in sample
    regrets = (problem.losses(sample) - reference.best) / (reference.median - reference.best)
    assert regrets.min() == pytest.approx(0, abs=1e-4) and np.median(regrets) == pytest.approx(1)
    # Less training data is worse for good configs: the best one, and most of the sample's top 50.
    epoch_1 = problem.loss_at(reference.best_params, problem.trainsize(1))
    assert epoch_1 > problem.observed(reference.best_params, 27, seed=0) - 3 * problem.noise_std
    assert epoch_1 > reference.best
    top = [sample[i] for i in np.argsort(regrets)[:50]]
    assert np.mean(problem.losses(top, problem.trainsize(1)) > problem.losses(top)) >= 0.8


def test_regret_clamps_at_zero_for_a_config_beating_the_sample(problem, monkeypatch):
    reference = problem.reference
    beaten = Reference(reference.best_params, reference.best + 0.01, reference.median)
    monkeypatch.setattr(YahpoXGBoost, "reference", property(lambda self: beaten))
    assert problem.regret(reference.best_params) == 0.0
