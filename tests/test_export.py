"""`tune export`'s writer: the header, a YAML body that loads back as the stored config, written atomically."""

import datetime
import json
import os

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from studies.files import OutputError
from studies.store.catalog import SelectionError
from studies.store.export import render, training_config, write_export
from studies.store.storage import open_storage

CONFIG = {
    "model": {"hidden": 16, "activation": "tanh"},
    "optimizer": {"name": "AdamW", "lr": 1.0e-05, "betas": [0.9, 0.999]},
    "data": {"root": "data/train", "samples": 256, "shuffle": True, "cache": None},
    "tricky": {"yes": "yes", "on": "on", "number_text": "1e3", "empty": "", "nested": {"deep": {"deeper": 0.5}}},
    "zeta_first_in_order": 1,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'export.db'}"
    study = optuna.create_study(study_name="exp", storage=open_storage(url, create=True))
    lr = {"optimizer.lr": FloatDistribution(1e-6, 1e-2, log=True)}
    study.add_trial(create_trial(
        state=TrialState.COMPLETE, value=0.123456789, params={"optimizer.lr": 1e-5}, distributions=lr,
        user_attrs={
            "training_config": json.dumps(CONFIG), "epochs": 4, "baseline": "v2",
            "metric.val_loss": 0.123456789, "metric.dice": 0.91, "metric.acc": 12345678.9,
        },
    ))  # fmt: skip
    study.add_trial(create_trial(
        state=TrialState.PRUNED, params={"optimizer.lr": 1e-3}, distributions=lr,
        user_attrs={"training_config": json.dumps({"optimizer": {"lr": 1e-3}}), "epochs": 1, "metric.val_loss": 0.5},
    ))  # fmt: skip
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.2, params={"optimizer.lr": 1e-4}, distributions=lr))
    return optuna.load_study(study_name="exp", storage=open_storage(url, create=False))


def header_of(text):
    return [line[2:] for line in text.splitlines() if line.startswith("# ")]


def test_render_says_where_the_config_came_from_and_how_to_train_it_again(study, tmp_path, monkeypatch):
    (tmp_path / "search_spaces").mkdir()
    study.set_user_attr("space_path", str(tmp_path / "search_spaces" / "vesuvius.py"))
    monkeypatch.chdir(tmp_path)
    before = datetime.datetime.now().replace(microsecond=0)
    text = render(study, study.trials[0], "chosen.yaml")
    after = datetime.datetime.now()
    title, when, metrics, again = header_of(text)
    assert title == "Exported by tune from study 'exp', trial 0 (COMPLETE, baseline v2, 4 epochs)"
    assert when.startswith("on ") and when.endswith(".")
    assert before <= datetime.datetime.fromisoformat(when[3:-1]) <= after
    assert metrics == "Metrics at its last epoch: acc=1.23457e+07, dice=0.91, val_loss=0.123457"
    assert again == "Train it again: tune train search_spaces/vesuvius.py --config chosen.yaml"
    assert text.startswith("# Exported by tune") and text.count("\n# ") == 3  # the header is the first four lines


def test_a_space_outside_the_working_folder_is_named_by_its_full_path(study, tmp_path, monkeypatch):
    space = tmp_path / "elsewhere" / "space.py"
    study.set_user_attr("space_path", str(space))
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert header_of(render(study, study.trials[1], "out/p.yaml"))[-1] == f"Train it again: tune train {space} --config out/p.yaml"


def test_header_of_a_trial_without_baseline_or_epochs(tmp_path):
    study = optuna.create_study(study_name="bare")
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"training_config": json.dumps({"a": 1})}))
    title, _, metrics, again = header_of(render(study, study.trials[0], "x.yaml"))
    assert title == "Exported by tune from study 'bare', trial 0 (FAIL, ? epochs)"
    assert metrics == "Metrics at its last epoch: "
    assert again == "Train it again: tune train SPACE.py --config x.yaml"


def test_the_yaml_body_loads_back_as_the_stored_config_in_its_order(study):
    text = render(study, study.trials[0], "chosen.yaml")
    loaded = yaml.safe_load(text)
    assert loaded == CONFIG
    assert list(loaded) == list(CONFIG) and list(loaded["optimizer"]) == list(CONFIG["optimizer"])
    assert type(loaded["optimizer"]["lr"]) is float and loaded["tricky"]["yes"] == "yes" and loaded["tricky"]["number_text"] == "1e3"
    pruned = render(study, study.trials[1], "p.yaml")
    assert header_of(pruned)[0] == "Exported by tune from study 'exp', trial 1 (PRUNED, 1 epochs)"
    assert yaml.safe_load(pruned) == {"optimizer": {"lr": 1e-3}}


def test_training_config_of_a_trial_tune_did_not_run_is_a_selection_error(study, tmp_path):
    assert training_config(study.trials[0]) == CONFIG
    with pytest.raises(SelectionError) as raised:
        training_config(study.trials[2])
    assert str(raised.value) == "trial 2 has no stored training config (it was not run by tune)"
    with pytest.raises(SelectionError):
        write_export(study, study.trials[2], str(tmp_path / "none.yaml"))
    assert not (tmp_path / "none.yaml").exists()


def test_write_export_writes_the_rendered_file_and_replaces_an_old_one_whole(study, tmp_path):
    output = tmp_path / "chosen.yaml"
    output.write_text("old: config\n")
    old_inode = output.stat().st_ino
    written = write_export(study, study.trials[0], str(output))
    assert written == output
    assert yaml.safe_load(output.read_text()) == CONFIG
    assert header_of(output.read_text())[0].startswith("Exported by tune from study 'exp', trial 0")
    assert output.stat().st_ino != old_inode  # a new file renamed over the old one, not the old one rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chosen.yaml"]  # no temporary file left beside it


def test_write_export_into_the_working_folder_by_a_bare_name(study, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_export(study, study.trials[1], "bare.yaml").read_text() == (tmp_path / "bare.yaml").read_text()
    assert yaml.safe_load((tmp_path / "bare.yaml").read_text()) == {"optimizer": {"lr": 1e-3}}


def test_a_failed_write_leaves_the_old_file_as_it_was(study, tmp_path, monkeypatch):
    output = tmp_path / "chosen.yaml"
    output.write_text("old: config\n")

    def disk_full(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        write_export(study, study.trials[0], str(output))
    assert output.read_text() == "old: config\n"


def test_write_export_refuses_a_missing_folder_in_one_line(study, tmp_path):
    output = tmp_path / "no" / "such" / "chosen.yaml"
    with pytest.raises(OutputError) as raised:
        write_export(study, study.trials[0], str(output))
    assert str(raised.value) == f"cannot write {output}: folder {output.parent} does not exist"
    assert not (tmp_path / "no").exists()


def test_write_export_writes_the_trial_s_best_weights_beside_the_yaml(tmp_path):
    study = optuna.create_study(study_name="weights", storage=open_storage(f"sqlite:///{tmp_path / 'w.db'}", create=True))
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    uploaded = tmp_path / "best.ckpt"
    uploaded.write_bytes(b"the best epoch's tensors")
    trial = study.ask()
    store = optuna.artifacts.FileSystemArtifactStore(artifacts)
    artifact_id = optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(uploaded), study_or_trial=trial)
    trial.set_user_attr("best_checkpoint", artifact_id)
    trial.set_user_attr("training_config", json.dumps(CONFIG))
    study.tell(trial, 0.1)
    output, weights = tmp_path / "out" / "chosen.yaml", tmp_path / "out" / "chosen.ckpt"
    output.parent.mkdir()
    write_export(study, study.trials[0], str(output), str(weights), artifacts)
    assert weights.read_bytes() == b"the best epoch's tensors"
    assert f"Its best epoch's weights: {weights} (`--init {weights}` starts training from them)" in header_of(output.read_text())
    assert sorted(p.name for p in output.parent.iterdir()) == ["chosen.ckpt", "chosen.yaml"]  # nothing staged left behind


def test_write_export_refuses_weights_it_does_not_have_before_writing_anything(study, tmp_path):
    output, weights = tmp_path / "chosen.yaml", tmp_path / "chosen.ckpt"
    with pytest.raises(SelectionError, match="trial 1 of exp kept no best-epoch weights"):  # a PRUNED trial keeps none
        write_export(study, study.trials[1], str(output), str(weights), tmp_path)
    lost = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'lost.db'}", create=True))
    lost.add_trial(create_trial(value=0.1, user_attrs={"best_checkpoint": "gone", "training_config": json.dumps(CONFIG)}))
    with pytest.raises(SelectionError, match=f"the best-epoch weights of trial 0 are not in {tmp_path}"):
        write_export(lost, lost.trials[0], str(output), str(weights), tmp_path)
    assert not output.exists() and not weights.exists() and not list(tmp_path.glob(".chosen*"))
