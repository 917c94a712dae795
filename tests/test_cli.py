"""The `tune` command as a user runs it: subprocesses, a real SQLite storage, Ray's forwarded CLI."""

import csv
import hashlib
import http.server
import importlib.metadata
import io
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import SPACES, assert_readers_match_optuna, refusal, tune_cli, tune_in_this_process
from optuna.trial import TrialState

from studies.records import STUDY_OBJECTIVES
from studies.store.storage import open_storage


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """`tune run` of the tiny space in a fresh folder, as the README shows it (default storage), logged to MLflow and W&B too."""
    folder = tmp_path_factory.mktemp("cli")
    trackers = ["--log", "mlflow", "--log", "wandb"]
    ran = tune_cli("run", SPACES / "tiny.py", "--seed", 3, *trackers, cwd=folder, env={"WANDB_MODE": "offline"}, check=True)
    (folder / "run.stdout").write_text(ran.stdout)
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


def test_ray_subcommands_take_a_relative_experiment_path(finished_study):
    # Ray reads a relative path as a URI with an empty scheme and fails: tune makes it absolute first.
    experiment = next((finished_study / "tune_runs" / "ray").iterdir())
    relative = experiment.relative_to(finished_study)
    trials = subprocess.run(["tune", "ls", str(relative)], cwd=finished_study, capture_output=True, text=True)
    assert trials.returncode == 0 and "trial_id" in trials.stdout, trials.stderr
    listed = subprocess.run(
        ["tune", "list-experiments", "--limit", "5", "tune_runs/ray"], cwd=finished_study, capture_output=True, text=True
    )  # fmt: skip
    assert listed.returncode == 0 and experiment.name in listed.stdout, listed.stderr


def test_run_ends_with_where_the_study_is_and_what_to_run_next(finished_study):
    out = (finished_study / "run.stdout").read_text()
    assert "study 'tiny' is stored in sqlite:///tune_runs/tune.db; next:" in out
    for command in ("tune show tiny", "tune report tiny", "tune export tiny -o config.yaml", "tune dashboard"):
        assert f"\n  {command} " in out, out
    assert "tune_runs/tiny-report.html" in out and "http://127.0.0.1:8080/" in out


def test_python_dash_m_studies_runs_the_same_cli(finished_study):
    shown = tune_in_this_process("show", "tiny", "--top", 3, cwd=finished_study, check=True).stdout
    assert "COMPLETE" in shown and ("small_slow" in shown or "wide_fast" in shown)


def test_best_by_another_metric_within_bounds(finished_study):
    default = tune_in_this_process("best", "tiny", cwd=finished_study, check=True).stdout
    by_std = tune_in_this_process("best", "tiny", "--by", "prediction_std", cwd=finished_study, check=True).stdout
    assert default.startswith("trial ") and by_std.startswith("trial ")
    bounded = tune_in_this_process("best", "tiny", "--by", "val_mae", "--where", "prediction_std=100..", cwd=finished_study)
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
    tune_in_this_process("export", "tiny", "--by", "val_mae", "-o", out, cwd=finished_study, check=True)
    text = out.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "study 'tiny', trial" in header[0] and "Train it again: tune train" in header[-1]
    config = yaml.safe_load(text)
    assert config["data"] == {"samples": 256, "batch_size": 64}  # fixed values included
    assert set(config["model"]) == {"hidden"} and set(config["optimizer"]) == {"lr", "name"}  # nested by dots
    trained = tune_cli("train", SPACES / "tiny.py", "--config", out, "--max-epochs", 2, cwd=finished_study, check=True)
    assert "epoch 2/2: val_loss" in trained.stdout and "val_loss = " in trained.stdout


def _first_epoch_loss(capsys, *train_args) -> float:
    """`tune train ARGS` for one epoch, in this process (torch and the space already imported): its first epoch's val_loss."""
    from studies.cli import main

    assert main(["train", *map(str, train_args), "--max-epochs", "1"]) == 0
    return float(re.search(r"epoch 1/1: val_loss ([^,\s]+)", capsys.readouterr().out).group(1))


def test_export_writes_the_best_epoch_weights_and_train_starts_from_them(finished_study, capsys):
    out, weights = finished_study / "best.yaml", finished_study / "best.ckpt"
    tune_in_this_process("export", "tiny", "-o", out, "--checkpoint", weights, cwd=finished_study, check=True)
    assert f"Its best epoch's weights: {weights}" in out.read_text()
    # At the knob's lowest rate one epoch barely moves the weights: it ends near where it started.
    slow = finished_study / "slow.yaml"
    slow.write_text(yaml.safe_dump({**yaml.safe_load(out.read_text()), "optimizer": {"lr": 1e-4, "name": "Adam"}}))
    scratch = _first_epoch_loss(capsys, SPACES / "tiny.py", "--config", slow)
    warm = _first_epoch_loss(capsys, SPACES / "tiny.py", "--config", slow, "--init", weights)
    best = optuna.load_study(study_name="tiny", storage=f"sqlite:///{finished_study / 'tune_runs' / 'tune.db'}").best_trial
    assert warm == pytest.approx(json.loads(best.user_attrs["best_epoch_metrics"])["val_loss"], rel=0.2) and warm < scratch / 2
    refused = refusal(capsys, "train", SPACES / "tiny.py", "--config", out, "--init", out)
    assert refused.startswith(f"tune: error: --init: cannot load {out} as a checkpoint")


def test_log_mlflow_and_wandb_hold_every_trial_s_epochs(finished_study):
    import mlflow

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{finished_study / 'tune_runs' / 'tune.db'}")
    client = mlflow.MlflowClient(f"sqlite:///{finished_study / 'tune_runs' / 'mlflow.db'}")
    runs = {run.info.run_name: run for run in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])}
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        run = runs[f"trial_{trial.number}"]
        assert run.info.status == "FINISHED" and run.data.params == {name: str(value) for name, value in trial.params.items()}
        logged = client.get_metric_history(run.info.run_id, "val_loss")
        assert {m.step: m.value for m in logged} == pytest.approx(trial.intermediate_values)
        [offline] = (finished_study / "tune_runs" / "ray").glob(f"tiny-*/trial_{trial.number}_*/wandb/offline-run-*")
        assert list(offline.glob("*.wandb"))  # the run's records, for `wandb sync`


TINY_CONFIG = {
    "model": {"hidden": 8}, "optimizer": {"lr": 0.01, "name": "Adam"},
    "data": {"samples": 256, "batch_size": 64}, "faults": {"fail_at_epoch": 0, "diverge": False},
}  # fmt: skip


def test_train_says_first_what_it_trains_with_the_threads_of_a_trial(tmp_path):
    from studies.space import load_space

    config = tmp_path / "chosen.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    threads = max(int(load_space(SPACES / "tiny.py").resources.cpus), 1)  # Ray's OMP_NUM_THREADS for a trial's CPUs
    # OMP_NUM_THREADS left empty: a count the user sets is the one a trial (and `tune train`) would take.
    trained = tune_cli("train", SPACES / "tiny.py", "--config", config, "--max-epochs", 1, cwd=tmp_path, env={"OMP_NUM_THREADS": ""})
    assert trained.returncode == 0, trained.stderr
    lines = trained.stdout.splitlines()
    assert lines[0] == f"training {SPACES / 'tiny.py'} with {config}: loading the space"
    assert lines[1] == f"1 epoch on cpu with {threads} thread{'s' if threads != 1 else ''}, as a trial would"
    assert "epoch 1/1: val_loss" in trained.stdout and "final metrics:" in lines and "  val_loss = " in trained.stdout


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"nosuch_key": 3}, "unknown config key nosuch_key; known keys: model, optimizer, data, faults"),
        ({"optimizer": {"lr": 0.01, "momentum": 0.9}}, "unknown config key optimizer.momentum; known keys: lr, name"),
        ({"model": {"hidden": "wide"}}, "config key model.hidden is 'wide', a str; the knob takes int"),
        ({"model": 5}, "config key model must be a mapping of hidden"),
    ],
)
def test_train_refuses_a_config_its_space_does_not_take_before_training(tmp_path, monkeypatch, capsys, changed, message):
    (tmp_path / "chosen.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, **changed}))
    monkeypatch.chdir(tmp_path)
    line = refusal(capsys, "train", SPACES / "tiny.py", "--config", "chosen.yaml")
    assert line == f"tune: error: --config chosen.yaml: {message}"
    assert [path.name for path in tmp_path.iterdir()] == ["chosen.yaml"]


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
    # A study name becomes folder and file names (Ray's storage, the report): a path would write outside them.
    "study name escaping its folder": (["run", SPACES / "tiny.py", "--study", "../../x"], "study name '../../x' is not a plain name"),
    "study name nesting folders": (["run", SPACES / "tiny.py", "--study", "a/b"], "study name 'a/b' is not a plain name"),
    "empty study name": (["run", SPACES / "tiny.py", "--study", ""], "study name '' is not a plain name"),
    "repeat into a path": (["repeat", "tiny", "--into", "../x"], "study name '../x' is not a plain name"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_storage_untouched(finished_study, monkeypatch, capsys, case):
    args, message = BAD_INPUTS[case]
    before = fingerprint(finished_study)
    monkeypatch.chdir(finished_study)
    assert message in refusal(capsys, *args)
    assert fingerprint(finished_study) == before


@pytest.mark.parametrize("command", [["run", SPACES / "tiny.py"], ["ls"]])
def test_a_malformed_tune_storage_is_named_as_the_variable(finished_study, monkeypatch, capsys, command):
    before = fingerprint(finished_study)
    monkeypatch.chdir(finished_study)
    monkeypatch.setenv("TUNE_STORAGE", "tune.db")
    assert "$TUNE_STORAGE 'tune.db' is not a URL; use sqlite:///FILE.db" in refusal(capsys, *command)
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


@pytest.mark.timeout(60)  # Ray's own wait for an address nobody answers lasts minutes: the timeout fails a hang
def test_unreachable_address_is_one_line_before_any_write(tmp_path, monkeypatch, capsys):
    assert_address_refused(tmp_path, monkeypatch, capsys, "127.0.0.1:1", "no Ray cluster answers at --address 127.0.0.1:1")


@pytest.mark.timeout(60)
def test_an_address_where_a_web_server_answers_is_not_taken_for_ray(tmp_path, monkeypatch, capsys):
    # A port that accepts connections but is no Ray GCS: Ray would wait minutes there too.
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # its request log would share stderr with the refusal
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{web.server_address[1]}"
        assert_address_refused(tmp_path, monkeypatch, capsys, address, f"the server at --address {address} is not a Ray cluster")
    finally:
        web.shutdown()


def assert_address_refused(tmp_path, monkeypatch, capsys, address: str, says: str) -> None:
    storage = tmp_path / "s.db"
    monkeypatch.chdir(tmp_path)
    line = refusal(capsys, "run", SPACES / "tiny.py", "--address", address, "--storage", f"sqlite:///{storage}")
    assert line.startswith(f"tune: error: {says}") and "ray start --head" in line
    assert not storage.exists(), "a refused address must not create the storage"
    assert not (tmp_path / "tune_runs").exists()


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


# A typo or a missing file is answered before torch, Ray or Lightning is imported: in well under a second or two.
HEAVY = {"torch", "ray", "pytorch_lightning", "lightning", "plotly"}
CHEAP_REFUSALS = {
    "run a missing space": (["run", "nosuch.py"], "search space nosuch.py does not exist; pass the path of a .py file such as search_spaces/vesuvius.py"),
    "phases of a missing space": (["phases", "nosuch.py"], "search space nosuch.py does not exist"),
    "train a missing space": (["train", "nosuch.py", "--config", "nosuch.yaml"], "search space nosuch.py does not exist"),
    "train a missing config": (["train", SPACES / "tiny.py", "--config", "nosuch.yaml"], "cannot read --config nosuch.yaml"),
    "show without a storage": (["show", "tiny"], "no study storage at tune_runs/tune.db"),
    "report without a storage": (["report", "tiny"], "no study storage at tune_runs/tune.db"),
    "repeat without a storage": (["repeat", "tiny"], "no study storage at tune_runs/tune.db"),
    "resume without a storage": (["resume", "tiny"], "no study storage at tune_runs/tune.db"),
    # Counts below 1 and no time at all are refused as typed: a 0 would have read as "not given", the space's budget.
    "run no trials": (["run", SPACES / "tiny.py", "--trials", 0], "--trials: takes a whole number of at least 1, not '0'"),
    "run fewer than no trials": (["run", SPACES / "tiny.py", "--trials", -3], "--trials: takes a whole number of at least 1"),
    "run no epochs": (["run", SPACES / "tiny.py", "--max-epochs", 0], "argument --max-epochs: takes a whole number"),
    "run no time": (["run", SPACES / "tiny.py", "--time-budget", -5], "argument --time-budget: takes a number of seconds"),
    "train no epochs": (["train", SPACES / "tiny.py", "--config", "x.yaml", "--max-epochs", 0], "argument --max-epochs: takes"),
    "show fewer than no rows": (["show", "tiny", "--top", -1], "argument --top: takes a whole number of at least 1, not '-1'"),
    "show no rows": (["show", "tiny", "--top", 0], "argument --top: takes a whole number of at least 1, not '0'"),
}


@pytest.mark.parametrize("case", sorted(CHEAP_REFUSALS))
def test_a_typo_is_one_line_before_torch_or_ray_is_imported(tmp_path, case):
    args, message = CHEAP_REFUSALS[case]
    # One run, Python's import log on stderr beside the refusal (its lines begin "import time:").
    result = tune_cli(*args, cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    logged = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("import time:")]
    assert result.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("tune: error: ") and message in lines[0], lines
    if case == "run a missing space":
        assert lines == [f"tune: error: {message}"]
    assert not any(tmp_path.iterdir()), "a refusal writes nothing"
    imported = {line.rpartition("|")[2].strip().split(".")[0] for line in logged}
    assert logged and not imported & HEAVY, f"imported before answering: {sorted(imported & HEAVY)}"


def made_trial(number: int, rng, knobs, state=TrialState.COMPLETE):
    params = {name: rng.random() for name in knobs}
    loss = 5 * params["knob4"] + 0.2 * params["knob1"] + 0.01 * rng.random()  # knob4 matters most, then knob1
    metrics = {"metric.val_loss": loss, "metric.dice": 1 - loss / 6, "metric.extra": 0.5}
    attrs = {**metrics, "epochs": 4 if state == TrialState.COMPLETE else 1, "train_seconds": 1.5, "baseline": "v1" if number == 0 else ""}
    value = loss if state == TrialState.COMPLETE else None
    return optuna.trial.create_trial(state=state, value=value, params=params, distributions=knobs, user_attrs=attrs)


@pytest.fixture(scope="module")
def made_studies(tmp_path_factory):
    """Studies built with Optuna alone (no Ray): `made` with 40 finished trials, `young` with one COMPLETE trial."""
    folder = tmp_path_factory.mktemp("made")
    (folder / "tune_runs").mkdir()
    storage = open_storage(f"sqlite:///{folder / 'tune_runs' / 'tune.db'}", create=True)
    knobs = {f"knob{i}": optuna.distributions.FloatDistribution(0, 1) for i in range(6)}
    rng = random.Random(0)
    for name, trials in (("made", 40), ("young", 1)):
        study = optuna.create_study(study_name=name, storage=storage)
        study.set_user_attr(STUDY_OBJECTIVES, [["val_loss", "minimize"], ["dice", "maximize"]])
        for number in range(trials):
            study.add_trial(made_trial(number, rng, knobs, TrialState.PRUNED if number % 5 == 4 else TrialState.COMPLETE))
    return folder


def header(shown: str) -> list[str]:
    return shown.splitlines()[0].split()


@pytest.mark.parametrize("command", ["export", "report"])
def test_an_output_path_that_is_a_folder_is_one_line_and_leaves_no_file(made_studies, tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(made_studies)
    line = refusal(capsys, command, "made", "-o", tmp_path)
    assert line == f"tune: error: cannot write {tmp_path}: it is a folder; pass a file path"
    assert not any(tmp_path.iterdir()), "no temporary file is left beside it"


def test_dashboard_on_a_port_in_use_is_one_line_naming_the_port(made_studies, monkeypatch, capsys):
    monkeypatch.chdir(made_studies)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refusal(capsys, "dashboard", "--port", port)
    assert line.startswith(f"tune: error: cannot serve on 127.0.0.1:{port}: Address already in use; pass --port"), line


def test_show_reads_as_a_person_reads_a_study(made_studies):
    shown = tune_in_this_process("show", "made", cwd=made_studies, check=True).stdout
    columns = header(shown)
    assert columns[:6] == ["trial", "state", "baseline", "epochs", "val_loss", "dice"]
    params = columns[6:]
    assert len(params) == 4 and params[0] == "knob4" and set(params) <= {f"knob{i}" for i in range(6)}, columns
    assert len(shown.splitlines()) == 11  # the header and --top's default 10
    # Too few COMPLETE trials to rank the params: the first four, in the order they were drawn.
    assert header(tune_in_this_process("show", "young", cwd=made_studies, check=True).stdout)[6:] == ["knob0", "knob1", "knob2", "knob3"]


def test_show_columns_all_or_chosen(made_studies):
    every = header(tune_in_this_process("show", "made", "--columns", "all", cwd=made_studies, check=True).stdout)
    assert {"train_s", "extra", *(f"knob{i}" for i in range(6))} <= set(every)
    chosen = tune_in_this_process("show", "made", "--columns", "trial,knob5,extra", "--top", 3, cwd=made_studies, check=True).stdout
    assert header(chosen) == ["trial", "knob5", "extra"] and len(chosen.splitlines()) == 4
    refused = tune_in_this_process("show", "made", "--columns", "trial,nosuch", cwd=made_studies)
    assert refused.returncode == 2 and refused.stderr.startswith("tune: error: --columns names nosuch; the columns are all, or some of: trial,")


def test_ls_show_best_print_json_and_csv_for_scripts(made_studies):
    storage = open_storage(f"sqlite:///{made_studies / 'tune_runs' / 'tune.db'}", create=False)
    study = optuna.load_study(study_name="made", storage=storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)

    listed = json.loads(tune_in_this_process("ls", "--json", cwd=made_studies, check=True).stdout)
    assert {row["study"]: (row["complete"], row["pruned"], row["best_trial"]) for row in listed} == {
        "made": (len(complete), 40 - len(complete), best.number),
        "young": (1, 0, 0),
    }
    rows = list(csv.DictReader(io.StringIO(tune_in_this_process("ls", "--csv", cwd=made_studies, check=True).stdout)))
    assert [row["study"] for row in rows] == ["made", "young"] and rows[0]["complete"] == str(len(complete))

    shown = json.loads(tune_in_this_process("show", "made", "--json", "--top", 3, cwd=made_studies, check=True).stdout)
    assert len(shown) == 3 and shown[0]["trial"] == best.number and shown[0]["state"] == "COMPLETE"
    assert shown[0]["val_loss"] == best.user_attrs["metric.val_loss"] and shown[0]["knob5"] == best.params["knob5"]
    table = list(csv.DictReader(io.StringIO(tune_in_this_process("show", "made", "--csv", cwd=made_studies, check=True).stdout)))
    assert len(table) == 10 and table[0]["trial"] == str(best.number) and "train_s" in table[0]

    chosen = json.loads(tune_in_this_process("best", "made", "--json", cwd=made_studies, check=True).stdout)
    assert chosen["study"] == "made" and chosen["trial"] == best.number
    assert chosen["params"] == best.params and chosen["metrics"]["dice"] == best.user_attrs["metric.dice"]
    (row,) = csv.DictReader(io.StringIO(tune_in_this_process("best", "made", "--by", "dice", "--csv", cwd=made_studies, check=True).stdout))
    by_dice = max(complete, key=lambda t: t.user_attrs["metric.dice"])
    assert row["trial"] == str(by_dice.number) and float(row["knob4"]) == by_dice.params["knob4"]


def test_version():
    shown = subprocess.run([sys.executable, "-m", "studies", "--version"], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == f"tune {importlib.metadata.version('tune')}"
