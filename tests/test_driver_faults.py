"""Faults of the driver's machine: SIGKILL at random moments across one study, and a full disk under the storage."""

import os
import random
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
import sqlalchemy.exc
from conftest import SPACES, assert_study_whole, kill_process_group, tune_cli
from optuna.trial import TrialState

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


def test_random_sigkills_then_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    requested = 8
    moments = random.Random(7)
    command = [sys.executable, "-m", "studies", "run", SPACES / "tiny.py", "--storage", url, "--trials", requested]
    env = {**os.environ, "TUNE_RAY_STORAGE": str(tmp_path / "ray"), "TUNE_HEARTBEAT_SECONDS": "1"}
    kept: dict[int, tuple] = {}
    kills = mid_trial = 0
    for _ in range(3):
        driver = subprocess.Popen(
            [str(part) for part in command], cwd=tmp_path, env=env,
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

    resumed = tune_cli("run", SPACES / "tiny.py", "--storage", url, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    after = trials_of(url)
    assert_study_whole(after, requested)
    for number, record in kept.items():
        assert stored_record(after[number]) == record, "a later driver changed a stored trial"


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


def test_full_disk_gives_one_line_and_keeps_the_storage(small_disk, tmp_path):
    url = f"sqlite:///{small_disk / 'studies.db'}"
    env = {"TUNE_RAY_STORAGE": str(tmp_path / "ray")}
    tune_cli("run", SPACES / "tiny.py", "--storage", url, "--trials", 2, cwd=tmp_path, env=env, check=True)
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
    resumed = tune_cli("run", SPACES / "tiny.py", "--storage", url, "--trials", 4, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert_study_whole(trials_of(url), 4)
