"""Real studies on a real local Ray: what the bridge writes into the Optuna storage."""

import json
import re

import optuna
import pytest
import torch
from conftest import SPACES
from optuna.trial import TrialState

import studies
from studies.driver.repeat import repeat_queue, spread_table
from studies.driver.run import RunOptions, StudyError, run_study
from studies.records import (
    ATTR_BASELINE,
    ATTR_BEST_CHECKPOINT,
    ATTR_REASON,
    ATTR_TRACEBACK,
    ATTR_TRAINING_CONFIG,
)
from studies.space import load_space
from studies.store.storage import open_storage
from trainers.base import BEST_CHECKPOINT_FILE


@pytest.fixture(scope="module")
def tiny_study(ray_cluster, tmp_path_factory):
    """The tiny space's default study (6 trials, 4 epochs, ASHA grace 1, factor 2), run once through the Python API."""
    folder = tmp_path_factory.mktemp("tiny")
    url = f"sqlite:///{folder / 'studies.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNE_RAY_STORAGE", str(folder / "ray"))
        study = studies.run(SPACES / "tiny.py", storage=url, seed=1)
    assert isinstance(study, optuna.Study)
    return study, url, folder


def test_study_holds_requested_trials_none_running(tiny_study):
    study, _, _ = tiny_study
    trials = study.get_trials()
    assert len([t for t in trials if t.state.is_finished()]) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_baselines_run_first_under_their_names(tiny_study):
    study, _, _ = tiny_study
    named = {t.user_attrs.get(ATTR_BASELINE): t for t in study.get_trials()}
    assert named["small_slow"].number == 0 and named["small_slow"].params == {"model.hidden": 4, "optimizer.lr": 1e-3}
    assert named["wide_fast"].number == 1 and named["wide_fast"].params == {"model.hidden": 32, "optimizer.lr": 3e-2}


def test_complete_trials_trained_the_full_budget(tiny_study):
    study, _, _ = tiny_study
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete, "ASHA let no trial reach max_epochs"
    for trial in complete:
        assert trial.user_attrs["epochs"] == 4
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4]
        assert trial.value == pytest.approx(trial.intermediate_values[4])
        assert trial.value == pytest.approx(trial.user_attrs["metric.val_loss"])
        for other in ("metric.val_mae", "metric.prediction_std", "metric.train_loss"):
            assert other in trial.user_attrs


def test_asha_stopped_trials_are_pruned_with_their_curves(tiny_study):
    study, _, _ = tiny_study
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "ASHA stopped no trial in a 6-trial study with reduction factor 2"
    for trial in pruned:
        epochs = trial.user_attrs["epochs"]
        assert 1 <= epochs < 4
        # Stopped only at an ASHA rung (grace 1, factor 2: epochs 1 and 2), with every epoch's value kept.
        assert epochs in (1, 2)
        assert sorted(trial.intermediate_values) == list(range(1, epochs + 1))
        # Why, in the words of the rule that stopped it: ASHA's rung, or one of the default method's gated rules.
        reasons = (
            rf"ASHA: outside the best 1/2 at epoch {epochs}",
            rf"gate: at epoch {epochs} too far behind trial \d+, the best that trained every epoch, to pass it even gaining "
            "from here as much as any such trial did",
            r"repeat: its first 2 epochs are trial \d+'s exactly",
        )
        assert any(re.fullmatch(reason, trial.user_attrs["pruned_by"]) for reason in reasons), trial.user_attrs["pruned_by"]


def test_every_trial_records_provenance(tiny_study):
    study, _, _ = tiny_study
    sha = load_space(SPACES / "tiny.py").file_sha256
    for trial in study.get_trials():
        attrs = trial.user_attrs
        assert attrs["space_sha256"] == sha
        assert attrs["device"] == "cpu"
        assert attrs["train_seconds"] > 0
        assert attrs["best_epoch"] in trial.intermediate_values
        assert json.loads(attrs[ATTR_TRAINING_CONFIG])["optimizer"]["lr"] == trial.params["optimizer.lr"]
        if trial.state == TrialState.COMPLETE:  # a trial's last epoch is checkpointed whatever --checkpoint-every says
            assert attrs["checkpoint"] and attrs["checkpoint_epoch"] == attrs["epochs"] == 4


def test_study_is_labelled_for_the_dashboard(tiny_study):
    study, url, _ = tiny_study
    assert study.metric_names == ["val_loss"]
    assert study.user_attrs["objectives"] == [["val_loss", "minimize"], ["val_mae", "minimize"], ["prediction_std", "maximize"]]
    # Made through the Python API: the call is the study's provenance.
    assert study.user_attrs["created_by"] == f"studies.run({str(SPACES / 'tiny.py')!r}, storage={url!r}, seed=1)"


def _run_trials(study):
    """The fixture's own 6 trials (a later test adds more to the study, run in another Ray folder)."""
    return [t for t in study.get_trials() if t.number < 6]


def test_each_trial_logs_its_epochs_for_tensorboard_in_its_ray_folder(tiny_study):
    study, _, folder = tiny_study
    for trial in _run_trials(study):
        [events] = (folder / "ray").glob(f"tiny-*/trial_{trial.number}_*/tensorboard/events.out.tfevents.*")
        logged = events.read_bytes()  # each scalar's tag is stored as is, once per epoch
        assert logged.count(b"val_loss") == logged.count(b"train_loss") == trial.user_attrs["epochs"]


def test_complete_trials_keep_their_best_epoch_weights_as_artifacts_beside_the_storage(tiny_study, tmp_path):
    study, _, folder = tiny_study
    store = optuna.artifacts.FileSystemArtifactStore(folder / "artifacts")
    complete = [t for t in _run_trials(study) if t.state == TrialState.COMPLETE]
    for trial in complete:
        # What the dashboard lists for download.
        [stored] = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
        assert (stored.artifact_id, stored.filename) == (trial.user_attrs[ATTR_BEST_CHECKPOINT], BEST_CHECKPOINT_FILE)
        weights = tmp_path / f"trial_{trial.number}.ckpt"
        optuna.artifacts.download_artifact(artifact_store=store, file_path=str(weights), artifact_id=stored.artifact_id)
        assert torch.load(weights, weights_only=True)["epoch"] + 1 == trial.user_attrs["best_epoch"]  # Lightning counts from 0
    assert complete and all(ATTR_BEST_CHECKPOINT not in t.user_attrs for t in _run_trials(study) if t not in complete)


def test_resume_with_more_trials_continues_without_repeating_baselines(tiny_study, ray_storage):
    study, url, _ = tiny_study
    more = studies.resume(study.study_name, storage=url, trials=8, seed=2)
    trials = more.get_trials()
    assert len([t for t in trials if t.state.is_finished()]) == 8
    assert [t.user_attrs.get(ATTR_BASELINE) for t in trials].count("small_slow") == 1
    # What was stored before is still there, unchanged.
    before = {t.number: (t.state, t.params, t.intermediate_values) for t in study.get_trials()}
    after = {t.number: (t.state, t.params, t.intermediate_values) for t in trials if t.number in before}
    assert before == after


def test_failures_are_recorded_and_the_study_goes_on(ray_cluster, storage_url, ray_storage):
    study = run_study(load_space(SPACES / "faulty.py"), RunOptions(storage=storage_url, trials=3, command="test"))
    by_name = {t.user_attrs[ATTR_BASELINE]: t for t in study.get_trials()}
    crashed = by_name["crashes"]
    assert crashed.state == TrialState.FAIL
    assert crashed.user_attrs[ATTR_REASON] == "RuntimeError: injected failure at epoch 2"
    assert "Traceback" in crashed.user_attrs[ATTR_TRACEBACK]
    assert crashed.user_attrs["epochs"] == 1 and list(crashed.intermediate_values) == [1]
    diverged = by_name["diverges"]
    assert diverged.state == TrialState.FAIL
    assert diverged.user_attrs[ATTR_REASON] == "diverged"
    assert by_name["healthy"].state == TrialState.COMPLETE


def test_same_name_with_a_different_space_is_refused(ray_cluster, storage_url, ray_storage):
    run_study(load_space(SPACES / "tiny.py"), RunOptions(storage=storage_url, study="shared", trials=1, max_epochs=1))
    storage = open_storage(storage_url, create=False)
    before = [(t.number, t.state) for t in optuna.load_study(study_name="shared", storage=storage).get_trials()]
    with pytest.raises(StudyError, match="different search space.*--study NEW_NAME"):
        run_study(load_space(SPACES / "faulty.py"), RunOptions(storage=storage_url, study="shared", trials=2))
    after = [(t.number, t.state) for t in optuna.load_study(study_name="shared", storage=storage).get_trials()]
    assert before == after


def test_grid_sampler_runs_the_whole_grid(ray_cluster, storage_url, ray_storage):
    space = load_space(SPACES / "tiny.py")
    study = run_study(space, RunOptions(storage=storage_url, sampler="grid", max_epochs=1, command="test"))
    searched = {(t.params["model.hidden"], t.params["optimizer.lr"]) for t in study.get_trials()}
    grid = {(h, lr) for h in (4, 16) for lr in (1e-3, 3e-2)}
    assert grid <= searched
    assert len(study.get_trials()) == len(grid) + len(space.baselines)


def test_partial_grid_holds_the_other_knobs_at_a_baseline(ray_cluster, storage_url, ray_storage):
    space = load_space(SPACES / "tiny.py")
    options = RunOptions(storage=storage_url, sampler="grid", grid_knobs=["model.hidden"], grid_base="wide_fast", max_epochs=1)
    study = run_study(space, options)
    searched = [t for t in study.get_trials() if ATTR_BASELINE not in t.user_attrs]
    assert sorted(t.params["model.hidden"] for t in searched) == [4, 16]
    assert {t.params["optimizer.lr"] for t in searched} == {3e-2}  # wide_fast's learning rate


def test_repeat_retrains_the_top_configs_with_new_seeds(tiny_study, ray_storage):
    study, url, _ = tiny_study
    queue = repeat_queue(study, top=2, seeds=2)
    top_two = [t.number for t in sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)[:2]]
    space = load_space(SPACES / "tiny.py")
    repeated = run_study(space, RunOptions(storage=url, study="tiny-repeat", trials=len(queue), prune=False), queue=queue)
    trials = repeated.get_trials()
    assert sorted(t.user_attrs["repeat_of"] for t in trials) == sorted(top_two * 2)
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["epochs"] == 4 for t in trials)
    for number in top_two:
        runs = [t for t in trials if t.user_attrs["repeat_of"] == number]
        assert runs[0].params == runs[1].params == study.trials[number].params
        assert runs[0].value != runs[1].value  # each repeat has its own seed
    table = spread_table(repeated)
    assert sorted(table["trial"]) == sorted(top_two) and set(table["seeds"]) == {2}
    assert "val_loss std" in table and "prediction_std mean" in table


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trials": 0}, "--trials must be at least 1 (got 0)"),  # 0 would have read as "not given": the space's budget
        ({"trials": -3}, "--trials must be at least 1 (got -3)"),
        ({"max_epochs": 0}, "--max-epochs must be at least 1 (got 0)"),
        ({"time_budget_s": -5}, "--time-budget must be a number of seconds above 0 (got -5)"),
    ],
)
def test_counts_below_one_and_no_time_are_refused_before_the_study_is_written(tmp_path, storage_url, options, message):
    with pytest.raises(StudyError) as raised:
        run_study(load_space(SPACES / "tiny.py"), RunOptions(storage=storage_url, **options))
    assert str(raised.value) == message
    assert not any(tmp_path.iterdir())
