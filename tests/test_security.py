"""Nothing open: plain study names, loopback-only servers, no stored passwords, no unasked code, no 0600 outputs."""

import hashlib
import http.client
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from conftest import REPO, SPACES, refusal, tune_cli
from optuna.distributions import IntDistribution
from optuna.trial import create_trial

from studies.files import NameRefused, checked_name, write_atomically
from studies.records import ATTR_SPACE_SHA, STUDY_CREATED_BY, STUDY_SPACE_PATH, STUDY_SPACE_SHA
from studies.space import load_space
from studies.store.storage import open_storage, redacted

PASSWORD = "hunter2-secret"
POSTGRES = f"postgresql://tune:{PASSWORD}@db-host:5432/tune"


# ---------------------------------------------------------------------------------------------- study names


@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\b", "..x", "..", ".", "", "a\0b"])
def test_a_study_name_is_one_plain_path_component(name):
    with pytest.raises(NameRefused) as refused:
        checked_name(name)
    assert "\n" not in str(refused.value) and "pass --study NAME" in str(refused.value)


@pytest.mark.parametrize("name", ["tiny", "tiny-phase-A", ".hidden", "a..b", "with space"])
def test_plain_names_pass(name):
    assert checked_name(name) == name


def test_phases_refuse_a_path_prefix_before_writing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = refusal(capsys, "phases", SPACES / "state_phases.py", "--study", "../escape")
    assert line.startswith("tune: error: study prefix '../escape' is not a plain name"), line
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent / "escape").exists()


def test_report_refuses_a_stored_path_name_as_its_default_file(tmp_path, monkeypatch, capsys):
    # A study named by other means (Optuna's own API) than `tune run`, which refuses such a name.
    (tmp_path / "tune_runs").mkdir()
    url = f"sqlite:///{tmp_path / 'tune_runs' / 'tune.db'}"
    optuna.create_study(study_name="../escape", storage=open_storage(url, create=True))
    monkeypatch.chdir(tmp_path)
    line = refusal(capsys, "report", "../escape")
    assert "study name '../escape' is not a plain name" in line and "pass -o FILE" in line, line
    assert not list(tmp_path.rglob("*.html")), "a report was written"


# ---------------------------------------------------------------------------------------------- Ray on loopback

LISTENING = """
import json, os, sys
import ray
import psutil  # Ray's own copy, importable once Ray is
from studies.driver.run import RunOptions, _start_ray

_start_ray(RunOptions())
ray.get(ray.remote(lambda: 1).remote())  # a worker process up too
mine = {os.getpid(), *(child.pid for child in psutil.Process().children(recursive=True))}
found = [
    (c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
    for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in mine
]
ray.shutdown()
print(json.dumps(found))
"""


def test_a_local_run_starts_ray_listening_on_loopback_only(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    result = subprocess.run(
        [sys.executable, "-c", LISTENING], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listening = json.loads(result.stdout.strip().splitlines()[-1])
    names = {name for _, _, name in listening}
    assert "gcs_server" in names and "raylet" in names, listening
    exposed = [(ip, port, name) for ip, port, name in listening if ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert exposed == [], f"Ray listens beyond loopback: {exposed}"


# ---------------------------------------------------------------------------------------------- the dashboard


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ask(port: int, method: str, path: str, host: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers={"Host": host})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_dashboard_refuses_a_foreign_host_header_and_keeps_the_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="kept", storage=open_storage(url, create=True))
    study.add_trial(create_trial(value=1.0, params={"x": 1}, distributions={"x": IntDistribution(0, 2)}))
    study_id = study._study_id
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "studies", "dashboard", "--port", str(port), "--storage", url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _ask(port, "GET", "/api/studies", f"127.0.0.1:{port}")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "dashboard did not answer within 60 s"
                time.sleep(0.5)
        assert status == 200 and b'"kept"' in body
        assert _ask(port, "GET", "/api/studies", f"localhost:{port}")[0] == 200
        # A page of attacker.example whose name now resolves to 127.0.0.1 (DNS rebinding) reaches the port...
        for host in ("attacker.example", f"attacker.example:{port}", ""):
            status, _ = _ask(port, "DELETE", f"/api/studies/{study_id}", host)
            assert status == 403, (host, status)
        assert _ask(port, "GET", "/api/studies", f"attacker.example:{port}")[0] == 403
    finally:
        server.terminate()
        server.wait(timeout=30)
    # ...and the study is still there.
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(url, create=False))] == ["kept"]


def test_dashboard_refuses_a_non_loopback_host_unless_exposed_explicitly(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="kept", storage=open_storage(url, create=True))
    result = tune_cli("dashboard", "--host", "0.0.0.0", "--port", _free_port(), "--storage", url, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--host 0.0.0.0 is not a loopback address" in line and "--expose-unauthenticated-api" in line
    helped = tune_cli("dashboard", "--help", cwd=tmp_path).stdout
    assert "--expose-unauthenticated-api" in helped and "delete studies" in " ".join(helped.split())


# ---------------------------------------------------------------------------------------------- no stored password


@pytest.mark.parametrize(
    "text, shown",
    [
        (f"tune run x.py --storage {POSTGRES}", "tune run x.py --storage postgresql://tune:***@db-host:5432/tune"),
        (f"tune ls --storage='{POSTGRES}'", "tune ls --storage='postgresql://tune:***@db-host:5432/tune'"),
        ("mysql+pymysql://me:p@ss@db/x", "mysql+pymysql://me:***@db/x"),
        ("postgresql://tune@db-host/tune", "postgresql://tune@db-host/tune"),  # no password: unchanged
        ("postgresql://db-host:5432/tune", "postgresql://db-host:5432/tune"),  # a port is not a password
        ("sqlite:///tune_runs/tune.db", "sqlite:///tune_runs/tune.db"),
    ],
)
def test_passwords_in_urls_are_redacted(text, shown):
    assert redacted(text) == shown


def test_a_study_stores_and_shows_its_command_without_the_password(tmp_path):
    from studies.driver.run import RunOptions, check_options, plan_study

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    space = load_space(SPACES / "tiny.py")
    # The storage here is SQLite; the command carries a PostgreSQL URL as a copied command line would.
    options = RunOptions(storage=url, command=f"tune run tiny.py --storage {POSTGRES} --trials 2")
    study = plan_study(space, options, check_options(space, options)).study
    assert study.user_attrs[STUDY_CREATED_BY] == "tune run tiny.py --storage postgresql://tune:***@db-host:5432/tune --trials 2"
    storage = open_storage(url, create=False)
    study_id = storage.get_study_id_from_name("tiny")
    everything = json.dumps([storage.get_study_user_attrs(study_id), storage.get_study_system_attrs(study_id)], default=str)
    assert "created by" in everything.lower() and PASSWORD not in everything  # the dashboard note included


def test_the_cli_command_line_is_redacted_before_it_reaches_the_study():
    from studies.cli import _run_options_from, parse_command_line

    argv = ["run", "tiny.py", "--storage", POSTGRES]
    options = _run_options_from(parse_command_line(argv), None)
    assert PASSWORD not in options.command and "postgresql://tune:***@db-host:5432/tune" in options.command


def test_a_report_of_an_older_study_hides_its_stored_password():
    from browser import stored_small_study

    from studies.report.page import render_page

    study = stored_small_study()
    study.set_user_attr(STUDY_CREATED_BY, f"tune run flyvis.py --storage {POSTGRES}")  # stored before redaction
    page = render_page(study, [])
    assert PASSWORD not in page and "postgresql://tune:***@db-host:5432/tune" in page


# ---------------------------------------------------------------------------------------------- code that runs


@pytest.fixture
def stored_space(tmp_path):
    """A study made from a copy of the tiny space (no trial run: the Optuna side only), and that copy."""
    from studies.driver.run import RunOptions, check_options, plan_study

    space_file = tmp_path / "tiny.py"
    space_file.write_text((SPACES / "tiny.py").read_text())
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    space = load_space(space_file)
    options = RunOptions(storage=url, command="tune run tiny.py")
    study = plan_study(space, options, check_options(space, options)).study
    trial = study.ask()
    trial.suggest_int("model.hidden", 2, 32, log=True)
    study.tell(trial, 0.5)  # a COMPLETE trial for `tune repeat` to choose
    return space_file, url


def test_the_study_stores_its_space_file_hash(stored_space):
    space_file, url = stored_space
    study = optuna.load_study(study_name="tiny", storage=open_storage(url, create=False))
    assert study.user_attrs[STUDY_SPACE_PATH] == str(space_file)
    assert study.user_attrs[STUDY_SPACE_SHA] == hashlib.sha256(space_file.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", [["resume", "tiny"], ["repeat", "tiny", "--top", "1", "--seeds", "1"]])
def test_resume_and_repeat_refuse_a_changed_space_file(stored_space, command, monkeypatch, capsys):
    space_file, url = stored_space
    marker = space_file.parent / "imported"
    space_file.write_text(space_file.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")
    before = stored(url)
    monkeypatch.chdir(space_file.parent)
    line = refusal(capsys, *command, "--storage", url)
    assert f"search space {space_file} changed since study tiny last ran it" in line and "--allow-changed-space" in line
    assert not marker.exists(), "the changed space file was imported"
    assert stored(url) == before


def stored(url: str) -> tuple:
    """Every study's attributes and trials, as the storage holds them."""
    storage = open_storage(url, create=False)
    return tuple(
        (s.study_name, s.user_attrs, optuna.load_study(study_name=s.study_name, storage=storage).get_trials())
        for s in storage.get_all_studies()
    )


def test_a_changed_space_is_imported_when_allowed_and_an_older_study_checks_its_trials_hash(stored_space, tmp_path):
    from studies.store.catalog import SpaceChanged, space_file_of

    space_file, url = stored_space
    study = optuna.load_study(study_name="tiny", storage=open_storage(url, create=False))
    assert space_file_of(study) == str(space_file)
    space_file.write_text(space_file.read_text() + "\n# changed\n")
    with pytest.raises(SpaceChanged):
        space_file_of(study)
    assert space_file_of(study, allow_changed=True) == str(space_file)
    # A study stored before the study kept the hash: its trials' space_sha256 is the reference.
    older = optuna.create_study(study_name="older", storage=open_storage(url, create=False))
    older.set_user_attr(STUDY_SPACE_PATH, str(space_file))
    older.add_trial(create_trial(value=1.0, user_attrs={ATTR_SPACE_SHA: "0" * 64}))
    with pytest.raises(SpaceChanged):
        space_file_of(older)


class Planted:
    """What a tampered checkpoint could carry: unpickling it with weights_only=False runs a call of its choosing."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_with_code_in_it_is_refused_not_run(tmp_path, monkeypatch):
    from trainers.base import CHECKPOINT_FILE, fit

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's default is safe: only an explicit True stays so
    marker = tmp_path / "ran"
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    torch.save({"state_dict": {}, "planted": Planted(marker)}, folder / CHECKPOINT_FILE, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    space = load_space(SPACES / "tiny.py")
    config = space.training_config(space.baselines["small_slow"])
    with pytest.raises(Exception) as refused:
        fit(space.trainer(), config, max_epochs=1, resume_from=str(folder))
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert isinstance(refused.value, pickle.UnpicklingError), refused.value


def test_source_checkpoints_are_cached_in_the_users_own_folder(tmp_path, monkeypatch):
    import trainers.state_transition as state

    made = []

    def pretend_to_pretrain(config, path):
        made.append(Path(path))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"")
        return Path(path)

    monkeypatch.setattr(state, "pretrain_on_source", pretend_to_pretrain)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = state.source_checkpoint(state.StateTransition().resolve({}))
    assert made == [path] and path.is_relative_to(tmp_path / "cache" / "tune")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state.source_checkpoint(state.StateTransition().resolve({})).is_relative_to(tmp_path / "home" / ".cache" / "tune")


# ---------------------------------------------------------------------------------------------- file permissions


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_outputs_get_the_permissions_of_any_new_file(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_atomically(tmp_path / "config.yaml", "a: 1\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == mode
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"
