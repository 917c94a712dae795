"""The `tune` command as a user runs it: subprocesses, a real SQLite storage, Ray's forwarded CLI."""

import hashlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import SPACES, assert_readers_match_optuna, tune_cli

from studies.store.storage import open_storage


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """`tune run` of the tiny space in a fresh folder, as the README shows it (default storage)."""
    folder = tmp_path_factory.mktemp("cli")
    tune_cli("run", SPACES / "tiny.py", "--seed", 3, cwd=folder, check=True)
    return folder


def fingerprint(folder: Path) -> str:
    return hashlib.sha256((folder / "tune_runs" / "tune.db").read_bytes()).hexdigest()


def test_tune_is_ours_and_ray_subcommands_still_work(finished_study):
    script = Path(shutil.which("tune"))
    assert "studies.cli" in script.read_text(), f"{script} is not tune's entry point"
    ours = subprocess.run(["tune", "--help"], capture_output=True, text=True, check=True).stdout
    assert "Hyperparameter studies" in ours and "export" in ours
    experiments = (finished_study / "tune_runs" / "ray").resolve()
    listed = subprocess.run(["tune", "list-experiments", str(experiments)], capture_output=True, text=True, check=True)
    experiment = next(experiments.iterdir())
    assert experiment.name in listed.stdout
    # `tune ls PATH` is Ray's trial listing; `tune ls` alone lists our studies.
    trials = subprocess.run(["tune", "ls", str(experiment)], capture_output=True, text=True, check=True)
    assert "trial_id" in trials.stdout
    studies = subprocess.run(["tune", "ls"], cwd=finished_study, capture_output=True, text=True, check=True)
    assert "tiny" in studies.stdout and "complete" in studies.stdout


def test_python_dash_m_studies_runs_the_same_cli(finished_study):
    shown = tune_cli("show", "tiny", "--top", 3, cwd=finished_study, check=True).stdout
    assert "COMPLETE" in shown and ("small_slow" in shown or "wide_fast" in shown)


def test_best_by_another_metric_within_bounds(finished_study):
    default = tune_cli("best", "tiny", cwd=finished_study, check=True).stdout
    by_std = tune_cli("best", "tiny", "--by", "prediction_std", cwd=finished_study, check=True).stdout
    assert default.startswith("trial ") and by_std.startswith("trial ")
    bounded = tune_cli("best", "tiny", "--by", "val_mae", "--where", "prediction_std=100..", cwd=finished_study)
    assert bounded.returncode == 2 and "satisfies prediction_std in [100.0, inf]" in bounded.stderr


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_readers_answer_as_optuna_loading_every_trial_would(finished_study, tmp_path, kind):
    url = f"sqlite:///{finished_study / 'tune_runs' / 'tune.db'}"
    if kind == "journal":
        copy = f"journal:{tmp_path / 'copy.log'}"
        optuna.copy_study(from_study_name="tiny", from_storage=open_storage(url, create=False), to_storage=open_storage(copy, create=True))
        url = copy
    assert_readers_match_optuna(url, "tiny")


def test_export_round_trip_trains_the_exported_config(finished_study):
    out = finished_study / "chosen.yaml"
    tune_cli("export", "tiny", "--by", "val_mae", "-o", out, cwd=finished_study, check=True)
    text = out.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "study 'tiny', trial" in header[0] and "Train it again: tune train" in header[-1]
    config = yaml.safe_load(text)
    assert config["data"] == {"samples": 256, "batch_size": 64}  # fixed values included
    assert set(config["model"]) == {"hidden"} and set(config["optimizer"]) == {"lr", "name"}  # nested by dots
    trained = tune_cli("train", SPACES / "tiny.py", "--config", out, "--max-epochs", 2, cwd=finished_study, check=True)
    assert "epoch 2/2: val_loss" in trained.stdout and "val_loss = " in trained.stdout


BAD_INPUTS = {
    "missing space": (["run", "no_such_space.py"], "does not exist"),
    "unknown sampler": (["run", SPACES / "tiny.py", "--sampler", "annealing"], "unknown sampler 'annealing'"),
    "malformed storage": (["run", SPACES / "tiny.py", "--storage", "not-a-url"], "is not a URL"),
    "unreachable storage": (["ls", "--storage", "sqlite:////no/such/folder/x.db"], "no study storage at"),
    "unknown study": (["export", "nope", "-o", "x.yaml"], "no study 'nope' in the storage (studies: tiny)"),
    "unknown trial": (["export", "tiny", "--trial", "999", "-o", "x.yaml"], "has no trial 999"),
    "unknown metric": (["best", "tiny", "--by", "accuracy"], "no trial of tiny recorded 'accuracy'"),
    "unwritable output": (["export", "tiny", "-o", "/no/such/folder/x.yaml"], "folder /no/such/folder does not exist"),
    "bad bound": (["best", "tiny", "--where", "val_mae<3"], "is not NAME=LOW..HIGH"),
    "no seeds": (["repeat", "tiny", "--seeds", "0"], "--top and --seeds must be at least 1"),
    "negative checkpoint pacing": (["run", SPACES / "tiny.py", "--checkpoint-every", "-1"], "--checkpoint-every must be 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_storage_untouched(finished_study, case):
    args, message = BAD_INPUTS[case]
    before = fingerprint(finished_study)
    result = tune_cli(*args, cwd=finished_study)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tune: error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert fingerprint(finished_study) == before


BAD_SPACES = {
    "unimportable.py": ("CONFIG = {\n", "failed to import: SyntaxError"),
    "incomplete.py": ("CONFIG = {}\n", "lacks OBJECTIVES, BUDGET, TRAINER"),
    "inverted_range.py": (
        "from tiny import *\nfrom studies.space import Float\nCONFIG = {'lr': Float(1.0, 0.1)}\n",
        "knob lr needs low < high",
    ),
    "baseline_outside.py": (
        "from tiny import *\nBASELINES = {'v9': {'optimizer.lr': 5.0}}\n",
        "baseline 'v9' sets optimizer.lr=5.0, outside the knob's range",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_SPACES))
def test_invalid_space_modules_are_refused_clearly(tmp_path, name):
    source, message = BAD_SPACES[name]
    (tmp_path / "tiny.py").write_text((SPACES / "tiny.py").read_text())
    (tmp_path / name).write_text(source)
    result = tune_cli("run", tmp_path / name, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "tune_runs").exists(), "a refused space must not create a storage"


def test_dashboard_serves_the_study_over_http(finished_study):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "studies", "dashboard", "--port", str(port)],
        cwd=finished_study, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert f"http://127.0.0.1:{port}/" in server.stdout.readline()
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as answer:
                    body = answer.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "dashboard did not answer within 60 s"
                time.sleep(0.5)
        assert '"study_name": "tiny"' in body or '"study_name":"tiny"' in body
    finally:
        server.terminate()
        server.wait(timeout=30)
