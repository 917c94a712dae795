"""The search-quality benchmark's problems: their stated optimum is a true lower bound, reached, and their curves cross."""

import numpy as np
import pytest

from benchmarks.curves import PROBLEMS

MAX_EPOCHS = 9
# Published minimisers of the test functions behind the asymptotes (one of Branin's three).
MINIMISERS = {
    "branin_lr": {"x1": np.pi, "x2": 2.275},
    "hartmann6_lr_optimizer": dict(
        zip(("x1", "x2", "x3", "x4", "x5", "x6"), (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573))
    ),
}
LEARNING_RATES = np.logspace(-4, 0, 4001)


def random_configs(problem, count, rng):
    for _ in range(count):
        params = {f"x{i + 1}": rng.uniform(low, high) for i, (low, high) in enumerate(problem.bounds)}
        params["learning_rate"] = 10 ** rng.uniform(-4, 0)
        params["optimizer"] = rng.choice(list(problem.optimizers))
        yield params


@pytest.mark.parametrize("name", PROBLEMS)
def test_optimum_bounds_every_config_and_is_reached(name):
    problem = PROBLEMS[name]
    optimum = problem.optimum(MAX_EPOCHS)
    losses = [problem.loss(params, MAX_EPOCHS) for params in random_configs(problem, 3000, np.random.default_rng(0))]
    assert min(losses) > optimum
    at_minimiser = [
        problem.loss({**MINIMISERS[name], "learning_rate": lr, "optimizer": optimizer}, MAX_EPOCHS) - optimum
        for lr in LEARNING_RATES
        for optimizer in problem.optimizers
    ]
    assert min(at_minimiser) == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("name", PROBLEMS)
def test_the_best_learning_rate_at_the_first_rung_is_not_the_best_at_full_budget(name):
    problem = PROBLEMS[name]
    configs = [{**MINIMISERS[name], "learning_rate": lr, "optimizer": o} for lr in LEARNING_RATES for o in problem.optimizers]
    best_early = min(configs, key=lambda params: problem.loss(params, 1))
    assert problem.regret(best_early, MAX_EPOCHS) > 0.05


def test_noise_is_fixed_by_seed_config_and_epoch():
    problem = PROBLEMS["branin_lr"]
    params = {**MINIMISERS["branin_lr"], "learning_rate": 0.01}
    assert problem.observed(params, 3, seed=1) == problem.observed(dict(reversed(params.items())), 3, seed=1)
    assert problem.observed(params, 3, seed=1) != problem.observed(params, 3, seed=2)
    assert problem.observed(params, 3, seed=1) != problem.loss(params, 3)
