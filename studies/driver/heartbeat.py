"""Each driver's heartbeat in the study storage: how a driver on any machine tells a lost driver's
RUNNING trials (to continue from their checkpoints) from a live driver's (to leave alone), and claims them.

Our own per-driver heartbeat rather than Optuna's (``RDBStorage(heartbeat_interval=...)``): Optuna's
marks a stale trial FAIL and retries its config as a new trial, while here a lost trial goes on in
the same trial from its checkpoint; ours also works on every storage (journal files too) and costs
one write per driver, not one per trial.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from datetime import datetime

import optuna
from optuna.trial import TrialState

from studies.driver.bridge import driver_id
from studies.records import ATTR_CHECKPOINT, ATTR_DRIVER, STUDY_HEARTBEAT_PREFIX

# One small write per driver every 10 s is no load on any storage, and a lost driver's trials are free within a minute.
HEARTBEAT_SECONDS = 10.0
# A driver stalled by a slow storage or a paused machine misses beats without being taken for dead.
MISSED_BEATS_FOR_DEAD = 6
HEARTBEAT_ENV = "TUNE_HEARTBEAT_SECONDS"
# Two drivers resuming at once may both claim a lost trial: the last claim stored wins once both writes have landed.
CLAIM_SETTLE_SECONDS = 1.0  # a shorter beat where lost drivers must be noticed sooner (tests)


def heartbeat_seconds() -> float:
    return float(os.environ.get(HEARTBEAT_ENV) or HEARTBEAT_SECONDS)


class Heartbeat:
    """Writes ``time, interval`` under this driver's key of the study's system attributes, every interval, until stopped.

    Beats go through their own storage connection, so a beat never waits on the driver's thread.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, study_name: str):
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study_name)
        self.key = STUDY_HEARTBEAT_PREFIX + driver_id()
        self.interval = heartbeat_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_until_stopped, name="tune-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.beat()  # before this driver claims any trial, so others see its claims as alive at once
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def beat(self) -> None:
        self.storage.set_study_system_attr(self.study_id, self.key, [time.time(), self.interval])

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a storage briefly away (restart, network): the next beat tries again
                continue


def last_beats(storage: optuna.storages.BaseStorage, study_name: str) -> dict[str, tuple[float, float]]:
    """Each driver's last heartbeat: ``{host:pid: (unix time, its interval)}``."""
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study_name))
    prefix = STUDY_HEARTBEAT_PREFIX
    return {key[len(prefix) :]: tuple(value) for key, value in attrs.items() if key.startswith(prefix)}


def driver_alive(owner: str | None, beats: dict[str, tuple[float, float]]) -> bool:
    """Whether the driver ``host:pid`` still runs: by its pid on this host, by its heartbeat on any other."""
    if not owner or ":" not in owner:
        return False
    host, pid = owner.rsplit(":", 1)
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)  # the fast path: no such process, no driver
        except (ProcessLookupError, ValueError):
            return False
        except PermissionError:  # another user's live process
            pass
        if owner not in beats:
            return True
    elif owner not in beats:
        return False
    beat_time, interval = beats[owner]
    # A live pid with a stale beat is a reused pid. Clocks across the cluster agree (NTP) well within the grace period.
    return time.time() - beat_time < MISSED_BEATS_FOR_DEAD * interval


def trial_lost(trial: optuna.trial.FrozenTrial, beats: dict[str, tuple[float, float]]) -> bool:
    """Whether a RUNNING trial's driver is gone, so another driver may continue it."""
    owner = trial.user_attrs.get(ATTR_DRIVER)
    if owner is None:  # asked for, not yet tagged: lost if no other driver lives to tag it, or once older than any grace
        others_alive = any(driver_alive(other, beats) for other in beats if other != driver_id())
        age = (datetime.now() - trial.datetime_start).total_seconds() if trial.datetime_start else math.inf
        return not others_alive or age > MISSED_BEATS_FOR_DEAD * heartbeat_seconds()
    return not driver_alive(owner, beats)


def orphaned_trials(
    study: optuna.Study, storage: optuna.storages.BaseStorage, *, mine_too: bool = False
) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose driver is gone (no such process on this host, no fresh heartbeat from another);
    with ``mine_too``, this driver's own RUNNING trials as well (it is about to end)."""
    beats = last_beats(storage, study.study_name)
    me = driver_id()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in running if (mine_too and t.user_attrs.get(ATTR_DRIVER) == me) or trial_lost(t, beats)]


def claim_orphans(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[optuna.trial.FrozenTrial]:
    """The orphaned trials this driver continues from their checkpoints; call with this driver's heartbeat running."""
    orphans = orphaned_trials(study, storage)
    if not orphans:
        return []
    me = driver_id()
    for trial in orphans:
        storage.set_trial_user_attr(trial._trial_id, ATTR_DRIVER, me)
    time.sleep(CLAIM_SETTLE_SECONDS)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    ours = {t.number for t in running if t.user_attrs.get(ATTR_DRIVER) == me}
    return [t for t in orphans if t.number in ours]


def how_orphans_go_on(orphans: list[optuna.trial.FrozenTrial]) -> str:
    """One line: how many claimed trials start again from epoch 1 (no checkpoint stored) and how many go on from one."""
    restarting = sum(1 for trial in orphans if not trial.user_attrs.get(ATTR_CHECKPOINT))
    continuing = len(orphans) - restarting
    parts = [f"restarting {restarting} interrupted trial(s) from scratch (no checkpoint was stored)"] if restarting else []
    if continuing:
        parts.append(f"continuing {continuing} {'' if restarting else 'interrupted trial(s) '}from their last checkpoint")
    return ", ".join(parts)
