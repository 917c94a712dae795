"""Kill -9 a real `tune run` mid-study, then resume it: nothing lost, nothing doubled, nothing left RUNNING."""

import os
import signal
import subprocess
import sys
import time

import optuna
import sqlalchemy.exc
from conftest import SPACES, tune_cli
from optuna.trial import TrialState

from studies.records import ATTR_CHECKPOINT_EPOCH, ATTR_CONTINUED_AT_EPOCH
from studies.storage import open_storage


def snapshot(url):
    storage = open_storage(url, create=False)  # waits out the driver's write locks
    return optuna.load_study(study_name="slow", storage=storage).get_trials()


def test_sigkill_mid_study_then_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    driver = subprocess.Popen(
        [sys.executable, "-m", "studies", "run", SPACES / "slow.py", "--storage", url, "--trials", "6", "--checkpoint-every", "0"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        # Kill once a trial has finished and another is mid-training with a checkpoint stored.
        deadline = time.monotonic() + 240
        while True:
            assert driver.poll() is None, "the study finished before it could be killed; make slow.py slower"
            assert time.monotonic() < deadline, "no trial was mid-training within 240 s"
            try:
                trials = snapshot(url)
            except (KeyError, ValueError, sqlalchemy.exc.OperationalError):  # no storage, tables or study yet
                trials = []
            finished = [t for t in trials if t.state.is_finished()]
            mid = [t for t in trials if t.state == TrialState.RUNNING and "checkpoint" in t.user_attrs]
            if finished and mid:
                break
            time.sleep(0.2)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # Ray's worker processes of the killed driver
        except ProcessLookupError:
            pass

    before = {t.number: t for t in snapshot(url)}
    interrupted = {n: t.user_attrs[ATTR_CHECKPOINT_EPOCH] for n, t in before.items() if ATTR_CHECKPOINT_EPOCH in t.user_attrs and t.state == TrialState.RUNNING}
    assert interrupted, "the kill left no trial mid-training"

    resumed = tune_cli("resume", "slow", "--storage", url, cwd=tmp_path, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    after = snapshot(url)

    assert len([t for t in after if t.state.is_finished()]) == 6
    assert not [t for t in after if t.state == TrialState.RUNNING]
    configs = [tuple(sorted(t.params.items())) for t in after]
    assert len(configs) == len(set(configs)), "a config was run twice"
    for number, trial in before.items():
        if trial.state.is_finished():  # stored results survive untouched
            kept = after[number]
            assert (kept.state, kept.params, kept.values, kept.intermediate_values) == (
                trial.state, trial.params, trial.values, trial.intermediate_values,
            )  # fmt: skip
    for number, epoch in interrupted.items():
        continued = after[number]
        # Lightning restored the checkpoint: training went on after its epoch, not from epoch 1.
        if continued.user_attrs["epochs"] > epoch:
            assert continued.user_attrs[ATTR_CONTINUED_AT_EPOCH] == epoch + 1
        assert sorted(continued.intermediate_values) == list(range(1, continued.user_attrs["epochs"] + 1))


def test_time_budget_leaves_trials_to_resume(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    first = tune_cli("run", SPACES / "slow.py", "--storage", url, "--trials", 3, "--time-budget", 5, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "interrupted; `tune resume slow` continues them" in first.stderr
    assert [t for t in snapshot(url) if t.state == TrialState.RUNNING]
    resumed = tune_cli("resume", "slow", "--storage", url, cwd=tmp_path, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    after = snapshot(url)
    assert len([t for t in after if t.state.is_finished()]) == 3
    assert not [t for t in after if t.state == TrialState.RUNNING]
