"""Drivers' heartbeats in a real storage, and telling a lost driver's RUNNING trials from a live one's."""

import datetime
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from studies.driver import heartbeat
from studies.driver.bridge import driver_id
from studies.driver.heartbeat import (
    Heartbeat,
    claim_orphans,
    driver_alive,
    how_orphans_go_on,
    last_beats,
    orphaned_trials,
    trial_lost,
)
from studies.store.storage import open_storage

HOST = socket.gethostname()
ELSEWHERE = "node-7.cluster.invalid:4242"  # a driver on another machine: judged by its heartbeat alone
GRACE = heartbeat.MISSED_BEATS_FOR_DEAD * heartbeat.HEARTBEAT_SECONDS


@pytest.fixture(scope="module")
def dead_pid():
    """The pid of a process of this host that has ended (and was reaped)."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


@pytest.fixture(autouse=True)
def default_interval(monkeypatch):
    monkeypatch.delenv(heartbeat.HEARTBEAT_ENV, raising=False)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One SQLite file for the module (creating its tables is the slow part)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('heartbeat') / 'beats.db'}"
    return SimpleNamespace(url=url, storage=open_storage(url, create=True))


@pytest.fixture
def study(db, request):
    return optuna.create_study(study_name=request.node.name, storage=db.storage)


def beat_of(storage, study, owner, age, interval=heartbeat.HEARTBEAT_SECONDS):
    """Store ``owner``'s last beat as ``age`` seconds old."""
    storage.set_study_system_attr(study._study_id, f"heartbeat:{owner}", [time.time() - age, interval])


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_heartbeat_beats_until_stopped_and_others_read_it(tmp_path, monkeypatch, kind):
    url = f"sqlite:///{tmp_path / 'beats.db'}" if kind == "sqlite" else f"journal:{tmp_path / 'beats.log'}"
    optuna.create_study(study_name="beating", storage=open_storage(url, create=True))
    monkeypatch.setenv(heartbeat.HEARTBEAT_ENV, "0.05")
    other_driver = open_storage(url, create=False)
    with Heartbeat(open_storage(url, create=False), "beating") as beating:
        first_time, interval = last_beats(other_driver, "beating")[driver_id()]
        assert interval == 0.05 and abs(time.time() - first_time) < 5  # the first beat is written on entering
        deadline = time.monotonic() + 10
        while last_beats(other_driver, "beating")[driver_id()][0] == first_time:
            assert time.monotonic() < deadline, "no second beat within 10 s at a 0.05 s interval"
            time.sleep(0.02)
    assert not beating._thread.is_alive()
    stopped = last_beats(other_driver, "beating")
    time.sleep(0.2)
    assert last_beats(other_driver, "beating") == stopped
    assert list(stopped) == [driver_id()]


def test_last_beats_reads_every_driver_and_nothing_else(db, study):
    db.storage.set_study_system_attr(study._study_id, "phase", {"prefix": "ft", "phase": "second"})
    db.storage.set_study_system_attr(study._study_id, "heartbeat:a:1", [100.0, 10.0])
    db.storage.set_study_system_attr(study._study_id, "heartbeat:b.example:22", [200.5, 2.0])
    assert last_beats(db.storage, study.study_name) == {"a:1": (100.0, 10.0), "b.example:22": (200.5, 2.0)}


def test_this_process_is_alive_without_or_with_a_fresh_beat_and_dead_with_a_stale_one():
    me = driver_id()
    assert me == f"{HOST}:{os.getpid()}"
    assert driver_alive(me, {})
    assert driver_alive(me, {me: (time.time() - 5, 10.0)})
    assert not driver_alive(me, {me: (time.time() - GRACE - 1, 10.0)})  # a live pid with a stale beat: a reused pid


def test_an_ended_process_on_this_host_is_dead_whatever_its_beat(dead_pid):
    owner = f"{HOST}:{dead_pid}"
    assert not driver_alive(owner, {})
    assert not driver_alive(owner, {owner: (time.time(), 10.0)})


def test_a_driver_elsewhere_lives_while_its_beat_is_fresh():
    assert not driver_alive(ELSEWHERE, {})
    assert driver_alive(ELSEWHERE, {ELSEWHERE: (time.time(), 10.0)})
    assert driver_alive(ELSEWHERE, {ELSEWHERE: (time.time() - GRACE + 2, 10.0)})
    assert not driver_alive(ELSEWHERE, {ELSEWHERE: (time.time() - GRACE - 2, 10.0)})
    # The grace period is the driver's own interval: a fast-beating driver is dead sooner.
    assert not driver_alive(ELSEWHERE, {ELSEWHERE: (time.time() - 7, 1.0)})


@pytest.mark.parametrize("owner", [None, "", "no-pid-here", f"{HOST}:not-a-pid"])
def test_an_owner_that_names_no_process_is_not_alive(owner):
    assert not driver_alive(owner, {})


def running_trial(owner=None, started_ago=0.0):
    trial = create_trial(state=TrialState.RUNNING, user_attrs={} if owner is None else {"driver": owner})
    trial.datetime_start = datetime.datetime.now() - datetime.timedelta(seconds=started_ago)
    return trial


def test_trial_lost_follows_its_drivers_life(dead_pid):
    fresh = {ELSEWHERE: (time.time(), 10.0)}
    assert trial_lost(running_trial(f"{HOST}:{dead_pid}"), fresh)
    assert not trial_lost(running_trial(driver_id()), {})
    assert not trial_lost(running_trial(ELSEWHERE), fresh)
    assert trial_lost(running_trial(ELSEWHERE), {ELSEWHERE: (time.time() - GRACE - 1, 10.0)})


def test_an_untagged_trial_is_lost_unless_another_live_driver_may_yet_tag_it():
    fresh = {ELSEWHERE: (time.time(), 10.0)}
    assert trial_lost(running_trial(), {})  # no driver at all
    assert trial_lost(running_trial(), {driver_id(): (time.time(), 10.0)})  # only this driver, which did not ask for it
    assert not trial_lost(running_trial(), fresh)  # just asked for by the other driver, not tagged yet
    assert trial_lost(running_trial(started_ago=GRACE + 5), fresh)  # too old to be waiting for its tag
    untimed = running_trial()
    untimed.datetime_start = None
    assert trial_lost(untimed, fresh)


def trial_of(study, owner, state=TrialState.RUNNING):
    trial = study.ask()
    trial.set_user_attr("driver", owner)
    if state != TrialState.RUNNING:
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    return trial.number


@pytest.fixture
def drivers(db, study, dead_pid):
    """Trials 0..4: a lost local driver's, this driver's, a live remote driver's, a lost remote driver's, a finished one."""
    stale = "node-9.cluster.invalid:7"
    owners = [f"{HOST}:{dead_pid}", driver_id(), ELSEWHERE, stale]
    for owner in owners:
        trial_of(study, owner)
    trial_of(study, f"{HOST}:{dead_pid}", TrialState.COMPLETE)
    beat_of(db.storage, study, driver_id(), 1)
    beat_of(db.storage, study, ELSEWHERE, 1)
    beat_of(db.storage, study, stale, GRACE + 5)
    return dict(zip(["lost_here", "me", "elsewhere", "lost_elsewhere"], owners))


def test_orphaned_trials_are_the_running_trials_of_lost_drivers(db, study, drivers):
    assert [t.number for t in orphaned_trials(study, db.storage)] == [0, 3]
    assert [t.number for t in orphaned_trials(study, db.storage, mine_too=True)] == [0, 1, 3]


def test_claim_orphans_takes_the_lost_drivers_trials_and_leaves_the_rest(db, study, drivers, monkeypatch):
    monkeypatch.setattr(heartbeat, "CLAIM_SETTLE_SECONDS", 0)
    claimed = claim_orphans(study, db.storage)
    assert [t.number for t in claimed] == [0, 3]
    owners = [t.user_attrs["driver"] for t in optuna.load_study(study_name=study.study_name, storage=db.storage).trials]
    assert owners == [driver_id(), driver_id(), drivers["elsewhere"], driver_id(), drivers["lost_here"]]
    assert claim_orphans(study, db.storage) == []  # now this driver's, alive: nothing left to claim


def test_a_claim_another_driver_stored_later_wins(db, study, drivers, monkeypatch):
    rival = "node-3.cluster.invalid:99"

    def rival_claims_during_the_settle(seconds):
        assert seconds == heartbeat.CLAIM_SETTLE_SECONDS
        db.storage.set_trial_user_attr(study.trials[3]._trial_id, "driver", rival)

    monkeypatch.setattr(heartbeat, "time", SimpleNamespace(time=time.time, sleep=rival_claims_during_the_settle))
    beat_of(db.storage, study, rival, 0)
    assert [t.number for t in claim_orphans(study, db.storage)] == [0]
    assert study.trials[3].user_attrs["driver"] == rival


def test_the_claimed_trials_line_tells_a_restart_from_scratch_from_a_continuation_from_a_checkpoint():
    never_checkpointed = running_trial(f"{HOST}:1")
    checkpointed = create_trial(state=TrialState.RUNNING, user_attrs={"checkpoint": "ray/exp/trial_1/checkpoint_000002"})
    assert how_orphans_go_on([checkpointed, never_checkpointed, checkpointed]) == (
        "restarting 1 interrupted trial(s) from scratch (no checkpoint was stored), continuing 2 from their last checkpoint"
    )
    assert how_orphans_go_on([never_checkpointed]) == "restarting 1 interrupted trial(s) from scratch (no checkpoint was stored)"
    assert how_orphans_go_on([checkpointed]) == "continuing 1 interrupted trial(s) from their last checkpoint"
