"""A study in a real PostgreSQL server: two drivers on two hosts share it, and it survives the server's restart."""

import os
import subprocess
import sys
import time
import uuid

import optuna
import pytest
import sqlalchemy.exc
from conftest import SPACES, assert_readers_match_optuna, assert_study_whole, kill_process_group
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from studies.driver.heartbeat import driver_alive, last_beats
from studies.records import ATTR_CONTINUED_AT_EPOCH, ATTR_DRIVER
from studies.space import load_module
from studies.store.storage import StorageError, open_storage

OTHER_HOST = "tune-other-host"
HOLD_VARIABLE = load_module(SPACES / "held.py").HOLD_VARIABLE  # its trials wait while the named file exists


def trials_of(url, study):
    try:
        return optuna.load_study(study_name=study, storage=open_storage(url, create=False)).get_trials()
    except (KeyError, StorageError, sqlalchemy.exc.OperationalError):  # no tables or study yet, or the server restarting
        return []


def start_driver(*args, env, cwd, host=None):
    """`tune ARGS` in its own process group; ``host``: under another hostname (a UTS namespace), as on another machine.

    Its stderr goes to a file (a pipe nobody reads would fill with the progress line and stall it): ``driver.errors()``.
    """
    command = [sys.executable, "-m", "studies", *map(str, args)]
    if host:
        command = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *command]
    log = cwd / f"driver-{host or 'here'}.stderr"
    with open(log, "w") as stderr:
        driver = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    driver.errors = log.read_text
    return driver


def wait_for(condition, what, driver, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the driver ended before {what}: {driver.errors()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.3)


def test_two_drivers_on_two_hosts_share_one_study(postgres_url, tmp_path, tune_here):
    if subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot give the second driver another hostname here (unshare --uts needs CAP_SYS_ADMIN)")
    # Both started at once (the study made by whichever is first): the second driver started only once the study existed
    # could still be starting Ray when the first had run all its trials on a busy machine.
    study, requested = f"shared-{uuid.uuid4().hex[:8]}", 12
    env = {"TUNE_HEARTBEAT_SECONDS": "1", "TUNE_RAY_STORAGE": str(tmp_path / "ray")}
    # Every epoch checkpointed: the lost host's trials hold a checkpoint to continue from.
    args = ("run", SPACES / "held.py", "--storage", postgres_url, "--study", study, "--trials", requested, "--checkpoint-every", 0)
    # Both drivers' trials wait after their first epoch until the other host is killed: a 0.3 s poll could miss them
    # mid-training, and on a busy machine this driver could otherwise run every trial before the other one started.
    hold = tmp_path / "hold"
    hold.touch()
    env[HOLD_VARIABLE] = str(hold)
    there = start_driver(*args, env=env, cwd=tmp_path, host=OTHER_HOST)
    here = start_driver(*args, env=env, cwd=tmp_path)
    try:
        def both_training():
            running = [t for t in trials_of(postgres_url, study) if t.state == TrialState.RUNNING]
            owners = [t.user_attrs.get(ATTR_DRIVER, "") for t in running]
            checkpointed = [t for t in running if "checkpoint" in t.user_attrs]
            elsewhere = [t for t in checkpointed if t.user_attrs[ATTR_DRIVER].startswith(f"{OTHER_HOST}:")]
            return elsewhere and any(not owner.startswith(f"{OTHER_HOST}:") for owner in owners)

        wait_for(both_training, "trial of each driver running at once", there)
        kill_process_group(there)  # the other machine is lost mid-trial
        hold.unlink()  # this driver's trials, and the lost host's continued by `tune resume` below, train on
        # 3: this driver saw the lost machine's trials orphaned as it ended, and says `tune resume` finishes them.
        ended = here.wait(timeout=400)
        assert ended in (0, 3), here.errors()
    finally:
        for driver in (there, here):
            kill_process_group(driver)

    shared = trials_of(postgres_url, study)
    lost = [t for t in shared if t.state == TrialState.RUNNING]
    assert len([t for t in shared if t.state.is_finished()]) + len(lost) == requested  # neither driver overshot
    assert all(t.user_attrs[ATTR_DRIVER].startswith(f"{OTHER_HOST}:") for t in lost), "a live driver left a trial RUNNING"
    assert ended == 0 or lost, "exit 3 names trials to resume: there must be some"
    by_config = {}
    for trial in shared:
        by_config.setdefault(tuple(sorted(trial.params.items())), []).append((trial.number, trial.user_attrs.get(ATTR_DRIVER)))
    # Across drivers: one driver's draws about a documented config can repeat one clipped to the knobs' bounds.
    twice = {config: runs for config, runs in by_config.items() if len({driver for _, driver in runs}) > 1}
    assert not twice, f"the two drivers ran a config twice: {twice}"

    if lost:  # this host's driver ended before the lost machine's heartbeat went stale: resume continues its trials
        storage = open_storage(postgres_url, create=False)
        owners = {t.user_attrs[ATTR_DRIVER] for t in lost}
        deadline = time.monotonic() + 60
        while any(driver_alive(owner, last_beats(storage, study)) for owner in owners):
            assert time.monotonic() < deadline, "the lost driver's heartbeat never went stale"
            time.sleep(0.5)
        resumed = tune_here("resume", study, "--storage", postgres_url, cwd=tmp_path, env=env)
        assert resumed.returncode == 0, resumed.stderr
    after = trials_of(postgres_url, study)
    assert_study_whole(after, requested)
    for trial in lost:  # continued in the same trial, from its checkpoint
        assert after[trial.number].params == trial.params
        assert ATTR_CONTINUED_AT_EPOCH in after[trial.number].user_attrs or after[trial.number].state == TrialState.FAIL
    print(f"{len(lost)} trial(s) of the lost host continued by `tune resume`")


def test_postgres_restart_mid_study(own_postgres, tmp_path, tune_here):
    url, study, requested = own_postgres.url, "slow", 4
    env = {"TUNE_RAY_STORAGE": str(tmp_path / "ray")}
    driver = start_driver("run", SPACES / "slow.py", "--storage", url, "--trials", requested, "--checkpoint-every", 0, env=env, cwd=tmp_path)
    try:
        wait_for(lambda: [t for t in trials_of(url, study) if "checkpoint" in t.user_attrs], "checkpoint", driver)
        own_postgres.stop()
        time.sleep(2)
        own_postgres.start()
        code = driver.wait(timeout=400)
    finally:
        kill_process_group(driver)
    stderr = driver.errors()
    if code == 0:
        print("the driver reconnected to the restarted server and finished")
    else:  # it stopped cleanly: one line saying the storage was lost, then the study resumes
        errors = [line for line in stderr.splitlines() if line.startswith("tune: error: ")]  # besides the progress line
        assert code == 2 and len(errors) == 1 and "lost storage" in errors[0] and "Traceback" not in stderr, stderr
        print(f"the driver stopped cleanly: {errors[0]}")
        resumed = tune_here("resume", study, "--storage", url, cwd=tmp_path, env=env)
        assert resumed.returncode == 0, resumed.stderr
    assert_study_whole(trials_of(url, study), requested)


def test_readers_count_a_postgres_study_as_optuna_does(postgres_url):
    # PostgreSQL stores trial states as an enum type: the SQL count reads it back as the state's name.
    name = f"readers-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=open_storage(postgres_url, create=True))
    lr = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    for state, value, epochs in [(TrialState.COMPLETE, 0.3, 4), (TrialState.COMPLETE, 0.2, 4), (TrialState.PRUNED, None, 1),
                                 (TrialState.FAIL, None, 2), (TrialState.RUNNING, None, 3)]:  # fmt: skip
        study.add_trial(create_trial(
            state=state, value=value, params={"lr": 1e-3 * epochs}, distributions=lr, intermediate_values={1: 0.5},
            user_attrs={"epochs": epochs, **({"metric.value": value} if value is not None else {})},
        ))  # fmt: skip
    assert_readers_match_optuna(postgres_url, name)
