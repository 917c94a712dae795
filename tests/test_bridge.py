"""OptunaBridge, the searcher's state machine, driven as Ray would drive it but without Ray: every
decision is checked in a real SQLite storage, read back through a connection of its own."""

import dataclasses
import hashlib
import json
import math
from types import SimpleNamespace

import optuna
import pytest
from conftest import SPACES
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from ray.tune.search import Searcher

from studies.driver.bridge import Counts, OptunaBridge, driver_id, model_metrics
from studies.rung_tpe import MISLEAD_TRIALS
from studies.space import Objective, load_space
from studies.store.catalog import epoch_values, feasible
from studies.store.storage import open_storage

MAX_EPOCHS = 4
EPOCH_SECONDS = 1.25


@pytest.fixture(scope="module")
def space():
    return load_space(SPACES / "tiny.py")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One SQLite file for the module (creating its tables is the slow part): a driver's storage and a reader's."""
    url = f"sqlite:///{tmp_path_factory.mktemp('bridge') / 'bridge.db'}"
    return SimpleNamespace(url=url, driver=open_storage(url, create=True), reader=open_storage(url, create=False))


@pytest.fixture
def study(db, request):
    return optuna.create_study(study_name=request.node.name, storage=db.driver, direction="minimize")


@pytest.fixture
def stored(db, study):
    """What a reader sees: the study's trials through a storage connection of its own."""

    def read(number=None, name=study.study_name):
        trials = optuna.load_study(study_name=name, storage=db.reader).get_trials()
        return trials if number is None else next(t for t in trials if t.number == number)

    return read


def result(epoch, val_loss, **extra):
    """One validation epoch's result as Ray hands it to a searcher: the trainer's metrics and Ray's bookkeeping."""
    metrics = {"val_mae": 0.1} if val_loss is None else {"val_loss": val_loss, "val_mae": 0.5 * val_loss}  # None: not reported
    return {
        **metrics,
        "prediction_std": 0.5 + epoch / 10,
        "epoch": epoch,
        "epoch_seconds": EPOCH_SECONDS,
        "device": "cpu",
        "gpu_ids": [],
        "world_size": 1,
        "training_iteration": epoch,
        "time_this_iter_s": 1.3,
        "time_total_s": 1.3 * epoch,
        "done": False,
        "trial_id": "abc_00000",
        "config": {"max_epochs": MAX_EPOCHS},
        "config/max_epochs": MAX_EPOCHS,
        **extra,
    }


def bridge_for(study, space, target=10, **kwargs):
    return OptunaBridge(study, space, max_epochs=MAX_EPOCHS, target=target, **kwargs)


def train(bridge, trial_id, values, *, last_to_complete=True):
    """Report one epoch per value; the last one only to on_trial_complete, as Ray does when its scheduler stops a trial."""
    results = [result(epoch, value) for epoch, value in enumerate(values, start=1)]
    for each in results[:-1] if last_to_complete else results:
        bridge.on_trial_result(trial_id, each)
    bridge.on_trial_complete(trial_id, results[-1] if last_to_complete else None)


@pytest.mark.parametrize("at_2, gate_rung, gated", [("in order", 2, True), ("reversed", 2, False), ("in order", None, False)])
def test_the_gate_is_lifted_for_a_trial_while_the_finished_trials_show_its_rung_misleading(study, space, at_2, gate_rung, gated):
    # Rungs 1, 2, 4 of 4 epochs (eta 2): MISLEAD_TRIALS trials trained every epoch, their order at epoch 4 that of epoch 1;
    # at epoch 2, the gated scheduler's last rung, the same order or the opposite one. Six more stopped at epoch 1.
    ordered = [0.1 + n / 100 for n in range(MISLEAD_TRIALS)]
    for n, value in enumerate(ordered):
        at_gate = value if at_2 == "in order" else ordered[-1 - n]
        curve = {1: value, 2: at_gate, 4: value}
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, intermediate_values=curve))
    for n in range(6):
        study.add_trial(create_trial(state=TrialState.PRUNED, value=0.9 + n / 100, intermediate_values={1: 0.9 + n / 100}))
    bridge = bridge_for(study, space, target=20, first_rungs=[1, 2], gate_rung=gate_rung)
    assert bridge.suggest("ray_0")["gated"] is gated  # without a gate rung (no gated scheduler) there is none to apply


def test_model_metrics_drop_rays_bookkeeping_configs_strings_and_bools():
    metrics = model_metrics({**result(3, 0.25), "flag": True, "note": "text", "count": 7})
    assert metrics == {"val_loss": 0.25, "val_mae": 0.125, "prediction_std": pytest.approx(0.8), "count": 7.0}
    assert all(type(value) is float for value in metrics.values())


def test_suggest_tags_the_trial_and_stores_its_config_before_training(study, space, stored):
    bridge = bridge_for(study, space)
    config = bridge.suggest("ray_0")
    assert config["optuna_trial"] == 0 and config["resume_from"] is None
    assert (config["max_epochs"], config["objective"], config["space_path"]) == (MAX_EPOCHS, "val_loss", str(space.path))
    params = config["params"]
    assert set(params) == {"model.hidden", "optimizer.lr"}
    assert 2 <= params["model.hidden"] <= 32 and 1e-4 <= params["optimizer.lr"] <= 3e-1
    assert config["training_config"] == {
        "model": {"hidden": params["model.hidden"]},
        "optimizer": {"lr": params["optimizer.lr"], "name": "Adam"},
        "data": {"samples": 256, "batch_size": 64},
        "faults": {"fail_at_epoch": 0, "diverge": False},
    }
    (trial,) = stored()
    assert trial.state == TrialState.RUNNING and trial.params == params
    assert trial.user_attrs["driver"] == driver_id()
    assert json.loads(trial.user_attrs["training_config"]) == config["training_config"]
    assert trial.user_attrs["space_sha256"] == hashlib.sha256((SPACES / "tiny.py").read_bytes()).hexdigest()
    assert bridge.counts.running == 1


def test_a_trial_that_trains_max_epochs_is_complete_with_its_last_value_and_metrics(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    train(bridge, "ray_0", [0.5, 0.2, 0.3, 0.25])
    trial = stored(0)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.25
    assert trial.intermediate_values == {1: 0.5, 2: 0.2, 3: 0.3, 4: 0.25}
    metrics = {name: value for name, value in trial.user_attrs.items() if name.startswith("metric.")}
    assert metrics == {"metric.val_loss": 0.25, "metric.val_mae": 0.125, "metric.prediction_std": pytest.approx(0.9)}
    attrs = trial.user_attrs
    assert (attrs["epochs"], attrs["train_seconds"], attrs["device"], attrs["gpu_ids"], attrs["world_size"]) == (4, 5.0, "cpu", [], 1)
    assert attrs["best_epoch"] == 2
    assert json.loads(attrs["best_epoch_metrics"]) == {"val_loss": 0.2, "val_mae": 0.1, "prediction_std": pytest.approx(0.7)}
    assert "fail_reason" not in attrs and "traceback" not in attrs
    assert (bridge.counts.complete, bridge.counts.running, bridge.counts.best) == (1, 0, 0.25)


def test_a_trial_stopped_early_is_pruned_with_its_curve_and_the_epoch_it_reached(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    train(bridge, "ray_0", [0.9, 0.7])
    trial = stored(0)
    assert trial.state == TrialState.PRUNED and trial.value == 0.7  # Optuna gives a PRUNED trial its last reported value
    assert trial.intermediate_values == {1: 0.9, 2: 0.7}
    assert (trial.user_attrs["epochs"], trial.user_attrs["train_seconds"], trial.user_attrs["metric.val_loss"]) == (2, 2.5, 0.7)
    assert (bridge.counts.pruned, bridge.counts.complete, bridge.counts.best) == (1, 0, None)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_objective_fails_as_diverged(study, space, stored, bad):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    train(bridge, "ray_0", [0.4, bad])
    trial = stored(0)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "diverged"
    assert trial.user_attrs["traceback"] == f"val_loss became {bad} at epoch 2"
    assert trial.intermediate_values == {1: 0.4}  # the non-finite value is not part of the curve
    assert trial.user_attrs["epochs"] == 2
    assert bridge.counts.failed == 1


def test_a_trial_error_result_fails_with_its_reason_and_traceback(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    bridge.on_trial_result("ray_0", result(1, 0.4))
    long_traceback = "Traceback (most recent call last):\n" + "  frame\n" * 2000 + "RuntimeError: injected failure at epoch 2"
    bridge.on_trial_result(
        "ray_0",
        {"trial_error": "RuntimeError: injected failure at epoch 2", "trial_traceback": long_traceback, "epoch": 1, "world_size": 1},
    )
    bridge.on_trial_complete("ray_0")
    trial = stored(0)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "RuntimeError: injected failure at epoch 2"
    assert trial.user_attrs["traceback"] == long_traceback[-8000:] and len(long_traceback) > 8000
    assert trial.intermediate_values == {1: 0.4} and trial.user_attrs["epochs"] == 1
    assert (bridge.counts.failed, bridge.counts.running) == (1, 0)


def test_a_trial_error_in_the_final_result_fails_too(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    bridge.on_trial_complete("ray_0", {"trial_error": "ValueError: bad config", "trial_traceback": "tb", "epoch": 0})
    trial = stored(0)
    assert (trial.state, trial.user_attrs["fail_reason"], trial.user_attrs["traceback"]) == (TrialState.FAIL, "ValueError: bad config", "tb")


def test_a_missing_objective_fails_saying_which(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    bridge.suggest("ray_1")
    train(bridge, "ray_0", [None, None])  # the trainer logged val_mae but never val_loss
    bridge.on_trial_complete("ray_1")  # no result at all
    for number, epochs in [(0, 2), (1, 0)]:
        trial = stored(number)
        assert trial.state == TrialState.FAIL and trial.user_attrs["epochs"] == epochs
        assert trial.user_attrs["fail_reason"] == "the trainer reported no val_loss"
        assert trial.intermediate_values == {}
    assert bridge.counts.failed == 2


def test_fail_from_ray_records_rays_own_error_once(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    bridge.on_trial_result("ray_0", result(1, 0.6))
    bridge.on_trial_complete("ray_0", error=True)  # Ray's failure: the callback tells it, with Ray's message
    assert stored(0).state == TrialState.RUNNING and bridge.counts.running == 1
    bridge.fail_from_ray("ray_0", "RayActorError: the worker died", "Traceback ...\nRayActorError: the worker died")
    bridge.fail_from_ray("ray_0", "again", "")  # a trial already recorded, and one never seen, change nothing
    bridge.fail_from_ray("unknown", "never seen", "")
    trial = stored(0)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "RayActorError: the worker died"
    assert trial.user_attrs["traceback"] == "Traceback ...\nRayActorError: the worker died"
    assert trial.user_attrs["epochs"] == 1 and trial.intermediate_values == {1: 0.6}
    assert (bridge.counts.failed, bridge.counts.running) == (1, 0)


def test_suggest_finishes_once_finished_and_running_trials_reach_the_target(study, space, stored):
    lr = {"optimizer.lr": FloatDistribution(1e-4, 3e-1, log=True), "model.hidden": IntDistribution(2, 32, log=True)}
    for state, value in [(TrialState.COMPLETE, 0.3), (TrialState.FAIL, None)]:  # another driver's finished trials
        study.add_trial(create_trial(state=state, value=value, params={"optimizer.lr": 1e-3, "model.hidden": 4}, distributions=lr))
    bridge = bridge_for(study, space, target=4)
    assert bridge.suggest("ray_0")["optuna_trial"] == 2
    assert bridge.suggest("ray_1")["optuna_trial"] == 3
    assert bridge.suggest("ray_2") == Searcher.FINISHED
    train(bridge, "ray_0", [0.5, 0.4, 0.3, 0.2])
    assert bridge.suggest("ray_3") == Searcher.FINISHED  # a finished trial still holds its slot
    assert len(stored()) == 4


def test_enqueued_baselines_are_suggested_first_and_do_not_count_until_taken(study, space, stored):
    study.enqueue_trial({"model.hidden": 4, "optimizer.lr": 1e-3}, user_attrs={"baseline": "small_slow"})
    bridge = bridge_for(study, space, target=1)
    config = bridge.suggest("ray_0")
    assert config["params"] == {"model.hidden": 4, "optimizer.lr": 1e-3}
    assert config["training_config"]["model"] == {"hidden": 4}
    assert bridge.suggest("ray_1") == Searcher.FINISHED
    (trial,) = stored()
    assert trial.state == TrialState.RUNNING and trial.user_attrs["baseline"] == "small_slow"


def test_a_slot_another_driver_took_meanwhile_puts_the_surplus_trial_back(study, space, db, stored, monkeypatch):
    rival = optuna.load_study(study_name=study.study_name, storage=db.reader)
    asked = study.ask

    def rival_asks_first(*args, **kwargs):
        rival.ask()  # the other driver's ask lands between this driver's count and its own ask
        return asked(*args, **kwargs)

    monkeypatch.setattr(study, "ask", rival_asks_first)
    bridge = bridge_for(study, space, target=1)
    assert bridge.suggest("ray_0") == Searcher.FINISHED
    assert [t.state for t in stored()] == [TrialState.RUNNING, TrialState.WAITING]
    assert bridge.running == {} and bridge.counts.running == 0


def test_a_slot_another_driver_gave_back_since_the_last_ask_is_taken(study, space, db, stored):
    rival = optuna.load_study(study_name=study.study_name, storage=db.reader)
    rivals = rival.ask()
    bridge = bridge_for(study, space, target=2)
    assert bridge.suggest("ray_0")["optuna_trial"] == 1  # its ask read the rival's trial as RUNNING
    db.reader.set_trial_state_values(rivals._trial_id, TrialState.WAITING)  # the rival's surplus trial, back in the queue
    assert bridge.suggest("ray_1")["optuna_trial"] == 0
    assert [t.state for t in stored()] == [TrialState.RUNNING, TrialState.RUNNING]


def test_repeated_and_out_of_order_epochs_are_stored_once(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    bridge.on_trial_result("ray_0", result(1, 0.5))
    bridge.on_trial_result("ray_0", result(2, 0.3))
    bridge.on_trial_result("ray_0", result(2, 0.01))  # delivered twice, the second time with another value
    bridge.on_trial_result("ray_0", result(1, 0.02))  # a stale epoch, late
    bridge.on_trial_result("ray_0", result(3, 0.2))
    final = result(4, 0.25)
    bridge.on_trial_result("ray_0", final)
    bridge.on_trial_complete("ray_0", final)  # the last result comes again with the completion
    trial = stored(0)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.25
    assert trial.intermediate_values == {1: 0.5, 2: 0.3, 3: 0.2, 4: 0.25}
    assert trial.user_attrs["train_seconds"] == 4 * EPOCH_SECONDS
    assert trial.user_attrs["best_epoch"] == 3
    assert json.loads(trial.user_attrs["best_epoch_metrics"])["val_loss"] == 0.2


def test_a_stale_result_with_the_completion_does_not_turn_a_complete_trial_into_a_pruned_one(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    for epoch, value in enumerate([0.5, 0.4, 0.3, 0.2], start=1):
        bridge.on_trial_result("ray_0", result(epoch, value))
    bridge.on_trial_complete("ray_0", result(2, 0.9))
    trial = stored(0)
    assert (trial.state, trial.value, trial.user_attrs["epochs"], trial.user_attrs["metric.val_loss"]) == (TrialState.COMPLETE, 0.2, 4, 0.2)


def test_record_checkpoint_stores_the_path_its_epoch_and_the_time_so_far(study, space, stored):
    bridge = bridge_for(study, space)
    bridge.suggest("ray_0")
    bridge.on_trial_result("ray_0", result(1, 0.5))
    bridge.on_trial_result("ray_0", result(2, 0.4))
    bridge.record_checkpoint("ray_0", "ray/exp/trial_0/checkpoint_000001", 2)
    bridge.record_checkpoint("unknown", "elsewhere", 9)  # a trial this driver does not run: ignored
    attrs = stored(0).user_attrs
    assert (attrs["checkpoint"], attrs["checkpoint_epoch"], attrs["train_seconds"]) == ("ray/exp/trial_0/checkpoint_000001", 2, 2.5)
    bridge.on_trial_result("ray_0", result(3, 0.3))
    bridge.record_checkpoint("ray_0", "ray/exp/trial_0/checkpoint_000002", 3)
    attrs = stored(0).user_attrs
    assert (attrs["checkpoint"], attrs["checkpoint_epoch"], attrs["train_seconds"]) == ("ray/exp/trial_0/checkpoint_000002", 3, 3.75)


def lost_driver_trial(study, space, stored, values, checkpoint_epoch):
    """A trial whose driver reported ``values`` and checkpointed at ``checkpoint_epoch``, then was lost (left RUNNING)."""
    lost = bridge_for(study, space, target=1)
    lost.suggest("ray_lost")
    for epoch, value in enumerate(values, start=1):
        lost.on_trial_result("ray_lost", result(epoch, value))
        if epoch == checkpoint_epoch:
            lost.record_checkpoint("ray_lost", f"ray/lost/checkpoint_{epoch}", epoch)
    (frozen,) = stored()
    assert frozen.state == TrialState.RUNNING
    return frozen


def test_an_orphan_goes_on_in_the_same_trial_from_its_checkpoint_epoch(db, study, space, stored):
    frozen = lost_driver_trial(study, space, stored, [0.5, 0.4, 0.35], checkpoint_epoch=2)
    driver = optuna.load_study(study_name=study.study_name, storage=db.driver)  # the next driver loads the study anew
    bridge = bridge_for(driver, space, target=1, orphans=[frozen])
    config = bridge.suggest("ray_1")
    assert config["optuna_trial"] == frozen.number and config["params"] == frozen.params
    assert config["resume_from"] == "ray/lost/checkpoint_2"
    assert config["training_config"] == json.loads(frozen.user_attrs["training_config"])
    assert bridge.suggest("ray_2") == Searcher.FINISHED  # the orphan holds the study's one slot: no new trial
    # Training goes on from epoch 2: epoch 3, reported by the lost driver after its checkpoint, is trained again.
    bridge.on_trial_result("ray_1", result(3, 0.3))
    bridge.on_trial_complete("ray_1", result(4, 0.25))
    (trial,) = stored()
    assert trial.number == frozen.number and trial.state == TrialState.COMPLETE and trial.value == 0.25
    assert trial.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3, 4: 0.25}  # epoch 3 as it was trained again
    attrs = trial.user_attrs
    assert (attrs["continued_at_epoch"], attrs["epochs"]) == (3, 4)
    assert attrs["train_seconds"] == 5 * EPOCH_SECONDS  # three epochs before the driver was lost, two after
    assert attrs["driver"] == driver_id()
    assert bridge.counts.complete == 1 and bridge.counts.running == 0


def test_an_orphans_best_epoch_counts_the_epochs_before_its_driver_was_lost(study, space, stored):
    frozen = lost_driver_trial(study, space, stored, [0.5, 0.1], checkpoint_epoch=2)
    bridge = bridge_for(study, space, target=1, orphans=[frozen])
    bridge.suggest("ray_1")
    bridge.on_trial_result("ray_1", result(3, 0.3))
    bridge.on_trial_complete("ray_1", result(4, 0.25))
    assert stored(frozen.number).user_attrs["best_epoch"] == 2


def test_an_orphan_that_had_trained_every_epoch_is_told_complete_without_a_second_curve_point(study, space, stored):
    frozen = lost_driver_trial(study, space, stored, [0.5, 0.4, 0.3, 0.2], checkpoint_epoch=4)
    bridge = bridge_for(study, space, target=1, orphans=[frozen])
    assert bridge.suggest("ray_1")["resume_from"] == "ray/lost/checkpoint_4"
    bridge.on_trial_complete("ray_1", result(4, 0.2))  # the restored last checkpoint reports its epoch again
    trial = stored(frozen.number)
    assert trial.state == TrialState.COMPLETE and trial.value == 0.2
    assert trial.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.3, 4: 0.2}
    assert (trial.user_attrs["continued_at_epoch"], trial.user_attrs["epochs"]) == (4, 4)
    assert trial.user_attrs["train_seconds"] == 4 * EPOCH_SECONDS  # the restored epoch, reported again, was not trained again


def test_an_orphan_that_fails_on_continuing_keeps_the_epochs_it_had_reached(study, space, stored):
    frozen = lost_driver_trial(study, space, stored, [0.5, 0.4, 0.3], checkpoint_epoch=2)
    bridge = bridge_for(study, space, target=1, orphans=[frozen])
    bridge.suggest("ray_1")
    bridge.on_trial_complete("ray_1", {"trial_error": "FileNotFoundError: checkpoint gone", "trial_traceback": "tb", "epoch": 0})
    trial = stored(frozen.number)
    assert (trial.state, trial.user_attrs["fail_reason"]) == (TrialState.FAIL, "FileNotFoundError: checkpoint gone")
    assert trial.user_attrs["epochs"] == 2  # as of its checkpoint
    assert trial.user_attrs["train_seconds"] == 3 * EPOCH_SECONDS  # every epoch trained, the one lost after the checkpoint too
    curve = trial.intermediate_values
    assert (curve[1], curve[2], sorted(curve)) == (0.5, 0.4, [1, 2, 3]) and math.isnan(curve[3])  # past the checkpoint: not kept


def test_an_orphan_without_a_checkpoint_trains_again_from_the_start_in_the_same_trial(study, space, stored):
    frozen = lost_driver_trial(study, space, stored, [0.5], checkpoint_epoch=None)
    bridge = bridge_for(study, space, target=1, orphans=[frozen])
    config = bridge.suggest("ray_1")
    assert config["resume_from"] is None and config["optuna_trial"] == frozen.number
    train(bridge, "ray_1", [0.45, 0.4])
    (trial,) = stored()
    assert trial.state == TrialState.PRUNED and trial.user_attrs["epochs"] == 2
    assert trial.user_attrs["continued_at_epoch"] == 1 and sorted(trial.intermediate_values) == [1, 2]


def test_an_orphan_restarted_from_scratch_stores_the_curve_that_ran_last_and_the_time_of_every_attempt(study, space, stored):
    frozen = lost_driver_trial(study, space, stored, [0.5, 0.4, 0.35], checkpoint_epoch=None)
    bridge = bridge_for(study, space, target=1, orphans=[frozen])
    assert bridge.suggest("ray_1")["resume_from"] is None
    train(bridge, "ray_1", [0.6, 0.45, 0.3, 0.2])
    trial = stored(frozen.number)
    assert (trial.state, trial.value) == (TrialState.COMPLETE, 0.2)
    assert trial.intermediate_values == {1: 0.6, 2: 0.45, 3: 0.3, 4: 0.2}  # none of the lost attempt's values
    attrs = trial.user_attrs
    assert (attrs["epochs"], attrs["continued_at_epoch"], attrs["best_epoch"], attrs["metric.val_loss"]) == (4, 1, 4, 0.2)
    assert attrs["train_seconds"] == 7 * EPOCH_SECONDS  # three epochs of the lost attempt, four of this one


def test_a_maximized_objective_keeps_the_highest_value_as_best(db, space, stored, request):
    maximizing = dataclasses.replace(space, objectives=[Objective("prediction_std", "maximize"), Objective("val_loss")])
    study = optuna.create_study(study_name=f"{request.node.name}-max", storage=db.driver, direction="maximize")
    counts = Counts()
    bridge = OptunaBridge(study, maximizing, max_epochs=2, target=3, counts=counts)
    assert (bridge.metric, bridge.mode) == ("prediction_std", "max")
    for trial_id, values in [("a", [0.9, 0.5]), ("b", [0.6, 0.8]), ("c", [0.7, 0.7])]:
        bridge.suggest(trial_id)
        for epoch, value in enumerate(values, start=1):
            bridge.on_trial_result(trial_id, {**result(epoch, 0.3), "prediction_std": value})
        bridge.on_trial_complete(trial_id)
    trials = stored(name=study.study_name)
    assert [t.value for t in trials] == [0.5, 0.8, 0.7]
    assert [t.user_attrs["best_epoch"] for t in trials] == [1, 2, 1]
    assert (counts.complete, counts.best) == (3, 0.8)


def constrained_study(db, name, constraints, directions=("minimize", "minimize", "maximize")):
    """A study of tiny.py within ``constraints``, as `tune run --constrain` makes it: a Pareto study of its three objectives,
    or of the first alone with one direction."""
    study = optuna.create_study(study_name=name, storage=db.driver, directions=list(directions))
    study.set_user_attr("constraints", constraints)
    return study


def test_a_pareto_study_keeps_every_objective_per_epoch_and_each_trials_violation(db, space, stored, request):
    study = constrained_study(db, f"{request.node.name}-pareto", {"prediction_std": [0.65, None]})
    counts = Counts()
    bridge = bridge_for(study, space, counts=counts)
    for trial_id, values in [("a", [0.4, 0.3, 0.2, 0.1]), ("b", [0.9])]:
        bridge.suggest(trial_id)
        train(bridge, trial_id, values)
    complete, pruned = stored(0, name=study.study_name), stored(1, name=study.study_name)
    assert complete.state == TrialState.COMPLETE and complete.values == pytest.approx([0.1, 0.05, 0.9])
    assert pruned.state == TrialState.PRUNED and pruned.values is None
    for trial, losses in [(complete, [0.4, 0.3, 0.2, 0.1]), (pruned, [0.9])]:
        assert not trial.intermediate_values  # Optuna's multi-objective TPE cannot rank PRUNED trials that have them
        epochs = range(1, len(losses) + 1)
        assert epoch_values(trial, 0) == pytest.approx(dict(zip(epochs, losses)))
        assert epoch_values(trial, 1) == pytest.approx({e: 0.5 * v for e, v in zip(epochs, losses)})
        assert epoch_values(trial, 2) == pytest.approx({e: 0.5 + e / 10 for e in epochs})
    # prediction_std at least 0.65: how far below it each trial ended, as Optuna's constraints_func would store it.
    assert complete.system_attrs["constraints"] == pytest.approx([0.65 - 0.9])
    assert pruned.system_attrs["constraints"] == pytest.approx([0.65 - 0.6])
    assert (feasible(complete), feasible(pruned), counts.best) == (True, False, 0.1)


@pytest.mark.parametrize(
    "constraints, extra, reason",
    [
        ({"dice": [0.5, None]}, {}, "the trainer reported no dice"),
        ({"val_mae": [None, 2.0]}, {"val_mae": math.nan}, "diverged"),
    ],
)
def test_a_constrained_metric_that_is_not_reported_or_diverged_fails(db, space, stored, request, constraints, extra, reason):
    study = constrained_study(db, f"{request.node.name}-constrained", constraints, directions=["minimize"])
    bridge = bridge_for(study, space)
    bridge.suggest("a")
    bridge.on_trial_complete("a", result(1, 0.4, **extra))
    trial = stored(0, name=study.study_name)
    assert (trial.state, trial.user_attrs["fail_reason"]) == (TrialState.FAIL, reason)
