"""The generated learning-curve tasks: scaled as stated, varied as stated, and the same task from the same index."""

import math
import statistics

import numpy as np
import optuna
import pytest
from scipy.stats import spearmanr

from benchmarks.documented import config_at
from benchmarks.generated import (
    CORNER_FIRST_TASK,
    EXTRA_KNOB_KINDS,
    EXTRA_KNOBS,
    HELD_OUT_TASKS,
    MANY_KNOBS_FIRST_TASK,
    NOISY_EPOCH_STD,
    NOISY_FIRST_TASK,
    NOISY_RUN_STD,
    TASKS,
    corner_problems,
    generated_problems,
    generated_task,
    held_out_problems,
    local_optimum,
    many_knobs_problems,
    noisy_problems,
    unseen_problems,
)


@pytest.fixture(scope="module")
def tasks():
    return generated_problems()


def random_configs(task, count, seed):
    """``count`` configs drawn as random search draws them, through Optuna's RandomSampler and the knobs' own suggest."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(count):
        trial = study.ask()
        yield {name: knob.suggest(trial, name) for name, knob in task.knobs.items()}


def test_every_task_is_scaled_so_the_best_is_0_and_a_typical_config_1(tasks):
    for task in tasks.values():
        finals = [task.value(params, task.max_epochs) for params in random_configs(task, 1000, seed=0)]
        trained = [value for value in finals if math.isfinite(value)]
        assert min(trained) > -1e-6, f"{task.name}: a random config beats the refined best"
        assert 0.8 < statistics.median(trained) < 1.25, task.name


def test_regret_is_the_final_value_0_at_the_least_and_none_for_a_diverged_config(tasks):
    task = next(task for task in tasks.values() if math.isfinite(task.diverge_above))
    params = {**next(random_configs(task, 1, seed=4)), "learning_rate": 1e-4}
    assert task.regret(params) == max(0.0, task.value(params, task.max_epochs)) and math.isfinite(task.regret(params))
    assert math.isnan(task.regret({**params, "learning_rate": 1.0}))


def test_early_rungs_range_from_faithful_to_misleading(tasks):
    agreement = {}
    for task in tasks.values():
        configs = [p for p in random_configs(task, 300, seed=1) if math.isfinite(task.regret(p))]
        agreement[task.name] = spearmanr([task.value(p, 1) for p in configs], [task.regret(p) for p in configs])[0]
    assert max(agreement.values()) > 0.7, agreement
    assert min(agreement.values()) < 0.3, agreement


def test_a_learning_rate_past_the_limit_diverges_before_the_last_epoch(tasks):
    diverging = [task for task in tasks.values() if math.isfinite(task.diverge_above)]
    assert diverging, "no generated task diverges"
    for task in diverging:
        params = next(random_configs(task, 1, seed=2))
        assert math.isnan(task.observed({**params, "learning_rate": 1.0}, task.max_epochs, seed=0)), task.name
        assert math.isfinite(task.observed({**params, "learning_rate": 1e-5}, task.max_epochs, seed=0)), task.name


def test_the_same_index_gives_the_same_task_and_noise_is_fixed_by_seed(tasks):
    again = generated_task(3)
    params = next(random_configs(again, 1, seed=3))
    assert again.observed(params, 5, seed=1) == tasks["generated_3"].observed(params, 5, seed=1)
    assert again.observed(params, 5, seed=1) != again.observed(params, 5, seed=2)
    assert again.observed(params, 5, seed=1) != again.value(params, 5)


def test_the_held_out_sets_follow_the_first_tasks_in_turn_each_a_family_of_its_own(tasks):
    once_held_out, held_out = held_out_problems("once-held-out", 2), held_out_problems("held-out", 2)
    unseen = unseen_problems(2)  # past the last held-out set's HELD_OUT_TASKS
    assert list(unseen) == [f"generated_{index}" for index in (TASKS + 2 * HELD_OUT_TASKS, TASKS + 2 * HELD_OUT_TASKS + 1)]
    assert {task.family for task in unseen.values()} == {"unseen"}
    assert list(once_held_out) == [f"generated_{index}" for index in (TASKS, TASKS + 1)]
    assert list(held_out) == [f"generated_{index}" for index in (TASKS + HELD_OUT_TASKS, TASKS + HELD_OUT_TASKS + 1)]
    assert not set(held_out) & set(tasks) and not set(once_held_out) & set(tasks)
    first = held_out[f"generated_{TASKS + HELD_OUT_TASKS}"]
    assert first.family == "held-out" and first.knobs == generated_task(TASKS + HELD_OUT_TASKS).knobs
    params = next(random_configs(first, 1, seed=0))
    assert first.value(params, first.max_epochs) == generated_task(TASKS + HELD_OUT_TASKS).value(params, first.max_epochs)


def test_a_corner_task_is_its_task_with_the_best_config_at_one_end_of_2_or_3_knobs():
    corner = corner_problems(4)
    assert list(corner) == [f"generated_{index}" for index in range(CORNER_FIRST_TASK, CORNER_FIRST_TASK + 4)]
    for task in corner.values():
        plain = generated_task(int(task.name.rpartition("_")[2]))
        assert task.family == "corner" and task.knobs == plain.knobs and task.max_epochs == plain.max_epochs
        assert 2 <= len(task.corner) <= 3 and set(task.corner.values()) <= {0, 1}, task.corner
        numeric = task.numeric_knobs
        rng = np.random.default_rng(0)
        starts = rng.uniform(0.0, 1.0, (4, len(numeric)))
        at_ends = starts.copy()
        for name, end in task.corner.items():
            at_ends[:, numeric.index(name)] = end
        best_at_ends = min(task.regret(config_at(task, local_optimum(task, start, 0)[0], 0)) for start in at_ends)
        assert best_at_ends < 1e-3, f"{task.name}: the corner holds no best config ({best_at_ends:.3f})"
        random_regrets = [task.regret(params) for params in random_configs(task, 300, seed=5)]
        assert min(r for r in random_regrets if math.isfinite(r)) > 0.05, f"{task.name}: random configs find its corner"
        if task.corner.get("learning_rate") == 1:  # a range whose best rate is its greatest ends below divergence
            assert math.isinf(task.diverge_above), task.name


def test_a_many_knobs_task_is_its_task_with_8_to_14_knobs_added_that_move_the_loss_less_than_its_own():
    many = many_knobs_problems(2)
    assert list(many) == [f"generated_{index}" for index in range(MANY_KNOBS_FIRST_TASK, MANY_KNOBS_FIRST_TASK + 2)]
    for task in many.values():
        plain = generated_task(int(task.name.rpartition("_")[2]))
        assert task.family == "many-knobs" and task.max_epochs == plain.max_epochs
        added = list(task.knobs)[len(plain.knobs) :]
        assert dict(list(task.knobs.items())[: len(plain.knobs)]) == plain.knobs, "the task's own knobs change"
        assert EXTRA_KNOBS[0] <= len(added) <= EXTRA_KNOBS[1] and all(n.rpartition("_")[0] in EXTRA_KNOB_KINDS for n in added)
        finals = [task.value(params, task.max_epochs) for params in random_configs(task, 500, seed=0)]
        trained = [value for value in finals if math.isfinite(value)]
        assert min(trained) > -1e-6 and 0.8 < statistics.median(trained) < 1.25, task.name
        # From the same random configs, redraw only the added knobs, or only the task's own: each moves the final value,
        # the added ones less (most of them barely matter).
        rng = np.random.default_rng(1)
        own = len(plain.numeric_knobs)
        unit = rng.uniform(0.0, 1.0, (200, len(task.numeric_knobs)))
        redrawn_added, redrawn_own = unit.copy(), unit.copy()
        redrawn_added[:, own:] = rng.uniform(0.0, 1.0, (200, len(added)))
        redrawn_own[:, :own] = rng.uniform(0.0, 1.0, (200, own))

        def moved(other: np.ndarray) -> float:
            change = [task.value(config_at(task, a, 0), task.max_epochs) - task.value(config_at(task, b, 0), task.max_epochs)
                      for a, b in zip(unit, other)]  # fmt: skip
            return float(np.nanmedian(np.abs(change)))

        by_added, by_own = moved(redrawn_added), moved(redrawn_own)
        assert 0.01 < by_added < by_own, f"{task.name}: the added knobs move the final value {by_added:.3f}, its own {by_own:.3f}"


def test_a_noisy_task_is_its_task_seen_through_more_noise_some_of_it_the_same_at_every_epoch_of_a_run():
    noisy = noisy_problems(2)
    assert list(noisy) == [f"generated_{index}" for index in range(NOISY_FIRST_TASK, NOISY_FIRST_TASK + 2)]
    for task in noisy.values():
        plain = generated_task(int(task.name.rpartition("_")[2]))
        assert task.family == "noisy" and task.knobs == plain.knobs and task.max_epochs == plain.max_epochs
        assert NOISY_EPOCH_STD[0] <= task.noise_std <= NOISY_EPOCH_STD[1] and plain.noise_std < NOISY_EPOCH_STD[0]
        assert NOISY_RUN_STD[0] <= task.run_noise_std <= NOISY_RUN_STD[1] and plain.run_noise_std == 0
        configs = list(random_configs(task, 400, seed=2))
        last = task.max_epochs
        assert all(task.value(params, last) == plain.value(params, last) for params in configs[:20] if plain.regret(params) >= 0)
        # A run's offset shows as the noise at its first and last epochs agreeing, by run / (run + epoch) variance.
        first_noise = [task.observed(params, 1, 0) - task.value(params, 1) for params in configs]
        last_noise = [task.observed(params, last, 0) - task.value(params, last) for params in configs]
        trained = [(a, b) for a, b in zip(first_noise, last_noise) if math.isfinite(a) and math.isfinite(b)]
        agreement = np.corrcoef(np.array(trained).T)[0, 1]
        expected = task.run_noise_std**2 / (task.run_noise_std**2 + task.noise_std**2)
        assert abs(agreement - expected) < 0.15, f"{task.name}: noise correlation {agreement:.2f}, expected {expected:.2f}"
