"""Faults of the driver's machine: SIGKILL at random moments across one study, a kill while a study is being made,
two drivers making one study at the same moment, and a full disk under the storage."""

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time

import optuna
import pytest
import sqlalchemy.exc
from conftest import SPACES, assert_study_whole, kill_process_group, tune_cli
from optuna.trial import TrialState

from studies.driver.run import RunOptions, check_options, plan_study
from studies.records import STUDY_FINGERPRINT, STUDY_SETTINGS_STORED, STUDY_SPACE_PATH, STUDY_SPACE_SHA
from studies.space import load_space
from studies.store.storage import open_storage


def trials_of(url, study="tiny"):
    return optuna.load_study(study_name=study, storage=open_storage(url, create=False)).get_trials()


def stored_record(trial):
    """What a finished trial's record says; a later driver must never change it."""
    return trial.state, trial.params, trial.values, trial.intermediate_values, trial.user_attrs


def running_trials(url):
    try:
        return [t for t in trials_of(url) if t.state == TrialState.RUNNING]
    except (KeyError, ValueError, sqlalchemy.exc.OperationalError):  # no storage, tables or study yet
        return []


def test_random_sigkills_then_resume(tmp_path, tune_here):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    requested = 8
    moments = random.Random(7)
    command = [sys.executable, "-m", "studies", "run", SPACES / "tiny.py", "--storage", url, "--trials", requested]
    env = {"TUNE_RAY_STORAGE": str(tmp_path / "ray"), "TUNE_HEARTBEAT_SECONDS": "1"}
    kept: dict[int, tuple] = {}
    kills = mid_trial = 0
    for _ in range(3):
        driver = subprocess.Popen(
            [str(part) for part in command], cwd=tmp_path, env={**os.environ, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        # A random moment once trials run (Ray's start-up takes a varying while on a loaded machine).
        while driver.poll() is None and not running_trials(url):
            time.sleep(0.1)
        time.sleep(moments.uniform(0.0, 3.0))
        if driver.poll() is not None:
            break  # the study finished before the moment came
        kill_process_group(driver)
        kills += 1
        mid_trial += bool(running_trials(url))
        for trial in trials_of(url):
            if trial.state.is_finished():
                first_seen = kept.setdefault(trial.number, stored_record(trial))
                assert stored_record(trial) == first_seen, "a later driver changed a stored trial"
    print(f"{kills} SIGKILLs, {mid_trial} of them with a trial mid-training")
    assert kills >= 2, "the drivers finished before the kills; ask for more trials"

    resumed = tune_here("run", SPACES / "tiny.py", "--storage", url, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    after = trials_of(url)
    assert_study_whole(after, requested)
    for number, record in kept.items():
        assert stored_record(after[number]) == record, "a later driver changed a stored trial"


def half_made(url, direction="minimize", **attrs):
    """What a driver killed while making study tiny leaves: the study, and only the first of its settings."""
    study = optuna.create_study(study_name="tiny", storage=open_storage(url, create=True), direction=direction)
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return study


def planned(url):
    space = load_space(SPACES / "tiny.py")
    options = RunOptions(storage=url, trials=3, command="tune run tiny.py --trials 3")
    return space, plan_study(space, options, check_options(space, options)).study


def test_a_study_left_half_made_is_completed_by_the_next_run(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    tiny = SPACES / "tiny.py"
    half_made(url, **{STUDY_SPACE_PATH: str(tiny), STUDY_SPACE_SHA: "kept as the killed run wrote it"})
    space, study = planned(url)
    assert capsys.readouterr().err == "study tiny was left half-made by a run stopped while making it; completing it\n"
    attrs = study.user_attrs
    assert attrs[STUDY_FINGERPRINT] == space.fingerprint and attrs[STUDY_SPACE_SHA] == space.file_sha256
    assert attrs[STUDY_SETTINGS_STORED] and attrs["trials_requested"] == 3
    assert attrs["created_by"] == "tune run tiny.py --trials 3"
    assert [t.user_attrs["baseline"] for t in study.get_trials(states=(TrialState.WAITING,))] == ["small_slow", "wide_fast"]
    planned(url)  # made now: the next run says nothing of it
    assert capsys.readouterr().err == ""


def test_a_study_left_half_made_from_another_space_is_made_anew(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    half_made(url, direction="maximize", **{STUDY_FINGERPRINT: "another space's"})
    space, study = planned(url)
    assert capsys.readouterr().err == (
        "study tiny was left half-made by a run stopped while making it; it was being made from another search space: making it anew\n"
    )
    assert study.direction.name == "MINIMIZE"
    assert (study.user_attrs[STUDY_FINGERPRINT], study.user_attrs[STUDY_SETTINGS_STORED]) == (space.fingerprint, True)


@pytest.mark.parametrize("checked_before_made", [True, False], ids=["check-before-create", "found-while-made"])
def test_a_driver_started_while_another_makes_the_study_joins_it_once_made(tmp_path, monkeypatch, capsys, checked_before_made):
    """Two drivers start a new study at one moment, and the second finds no study (its create is then refused) or one
    still being made; either way it waits, joins the study as made, and the baselines are queued once.

    The window is too short to hit at will, so the first driver is slowed while it stores its settings, and with
    ``checked_before_made`` the second's check answers that there is no study yet; everything else is the real storage."""
    import studies.driver.run as run

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    real_names, real_note = run.study_names, run._note_on_dashboard
    storing = threading.Event()
    second = threading.current_thread()
    answered_none = []  # the second driver's first check only

    def note_slowly(study, space, command):  # the first driver is mid-way through its settings when the second opens
        storing.set()
        time.sleep(1.0)
        real_note(study, space, command)

    def names_as_before_the_first_made_it(storage):
        if threading.current_thread() is second and not answered_none:
            answered_none.append(True)
            return []
        return real_names(storage)

    monkeypatch.setattr(run, "_note_on_dashboard", note_slowly)
    if checked_before_made:
        monkeypatch.setattr(run, "study_names", names_as_before_the_first_made_it)
    first = threading.Thread(target=planned, args=(url,))
    first.start()
    assert storing.wait(timeout=60)
    space, study = planned(url)
    first.join()
    assert capsys.readouterr().err == ""  # joined as made, not taken for a study left half-made
    assert study.user_attrs[STUDY_FINGERPRINT] == space.fingerprint and study.user_attrs[STUDY_SETTINGS_STORED]
    assert [t.user_attrs["baseline"] for t in study.get_trials(states=(TrialState.WAITING,))] == ["small_slow", "wide_fast"]


def test_resume_of_a_study_left_before_it_stored_its_space_says_what_to_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    half_made(url)
    result = tune_cli("resume", "tiny", "--storage", url, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.splitlines() == [
        "tune: error: study tiny was left half-made (its run was stopped while making it, before it stored its search space); "
        "run the `tune run` or `tune phases` command that was making it again"
    ]
    assert trials_of(url) == [] and optuna.load_study(study_name="tiny", storage=open_storage(url, create=False)).user_attrs == {}


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs standing in for the disk that holds the storage (needs root: mount)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to stand in for a full disk: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder):
    """Write a file until the disk refuses more."""
    filler = folder / "filler"
    with open(filler, "wb") as stream:
        try:
            while True:
                stream.write(b"\0" * 65536)
                stream.flush()
        except OSError:
            pass
    return filler


def test_full_disk_gives_one_line_and_keeps_the_storage(small_disk, tmp_path, tune_here):
    url = f"sqlite:///{small_disk / 'studies.db'}"
    env = {"TUNE_RAY_STORAGE": str(tmp_path / "ray")}
    tune_here("run", SPACES / "tiny.py", "--storage", url, "--trials", 2, cwd=tmp_path, env=env, check=True)
    before = {t.number: stored_record(t) for t in trials_of(url)}
    filler = fill(small_disk)

    full = tune_cli("run", SPACES / "tiny.py", "--storage", url, "--trials", 4, cwd=tmp_path, env=env)
    assert full.returncode == 2, full.stderr
    message = full.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("tune: error: "), full.stderr
    assert "is full" in message[0] and "free space" in message[0], message[0]
    after = {t.number: stored_record(t) for t in trials_of(url) if t.state.is_finished()}
    assert after == {n: r for n, r in before.items() if r[0].is_finished()}
    with sqlite3.connect(small_disk / "studies.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    filler.unlink()
    resumed = tune_here("run", SPACES / "tiny.py", "--storage", url, "--trials", 4, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert_study_whole(trials_of(url), 4)
