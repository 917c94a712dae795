"""Faults inside a trial's worker, on a real local Ray: a worker process killed mid-trial (the trial continues from
its checkpoint up to --max-retries times, then is FAIL with the reason) and a trial that runs out of memory."""

import os
import signal
import time

import optuna
import pytest
import sqlalchemy.exc
import torch
from conftest import SPACES
from declared_ray import start_tune
from optuna.trial import TrialState

from studies.driver.run import RunOptions, run_study
from studies.driver.trainable import failure_reason
from studies.records import ATTR_BASELINE, ATTR_CHECKPOINT_EPOCH, ATTR_REASON, ATTR_WORLD_SIZE
from studies.space import load_module, load_space
from studies.store.storage import open_storage

logged = load_module(SPACES / "logged.py")  # the training processes' event log
KILLED_HIDDEN = 4  # killable.py's first baseline (small_slow), the trial whose worker is killed


def _stored(url: str, study_name: str = "killable") -> dict[str, optuna.trial.FrozenTrial]:
    """The study's trials by baseline name; none before the driver has made the study."""
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url, create=False))
    except (KeyError, ValueError, sqlalchemy.exc.OperationalError):
        return {}
    return {t.user_attrs[ATTR_BASELINE]: t for t in study.get_trials() if ATTR_BASELINE in t.user_attrs}


def _kill_workers(
    tmp_path, kills: int, max_retries: int, space: str = "killable"
) -> tuple[dict[str, optuna.trial.FrozenTrial], list[dict], list[dict]]:
    """Run the space and SIGKILL a training process of its first trial (a DDP trial has one per rank) ``kills`` times,
    each time after a new checkpoint is stored and while the next epoch trains. Returns the stored trials, the kills,
    the training events."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    events = tmp_path / "events.jsonl"
    driver = start_tune(
        "run", SPACES / f"{space}.py", "--storage", url, "--max-retries", max_retries, "--checkpoint-every", 0,
        num_cpus=2, cwd=tmp_path, env={logged.EVENTS_VARIABLE: str(events), "TUNE_RAY_STORAGE": str(tmp_path / "ray")},
    )  # fmt: skip
    done: list[dict] = []
    try:
        deadline = time.monotonic() + 400
        while len(done) < kills:
            assert driver.poll() is None, f"the study ended after {len(done)} of {kills} kills:\n{driver.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, f"only {len(done)} of {kills} kills within 400 s"
            trial = _stored(url, space).get("small_slow")
            checkpoint = trial.user_attrs.get(ATTR_CHECKPOINT_EPOCH, 0) if trial else 0
            training = [e for e in logged.read_events(events) if e["hidden"] == KILLED_HIDDEN and e["event"] == "epoch_start"]
            newer = checkpoint > max((kill["checkpoint"] for kill in done), default=0)
            # A live worker, training the epoch after a stored checkpoint newer than the last kill's.
            if (
                newer
                and training
                and training[-1]["pid"] not in {kill["pid"] for kill in done}
                and training[-1]["epoch"] > checkpoint
            ):
                os.kill(training[-1]["pid"], signal.SIGKILL)
                done.append({"pid": training[-1]["pid"], "checkpoint": checkpoint, "time": time.time()})
            time.sleep(0.2)
        output, _ = driver.communicate(timeout=400)
        assert driver.returncode == 0, output[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    return _stored(url, space), done, logged.read_events(events)


def test_killed_worker_continues_from_its_checkpoint(tmp_path):
    trials, kills, events = _kill_workers(tmp_path, kills=2, max_retries=2)
    killed = trials["small_slow"]
    assert killed.state == TrialState.COMPLETE, killed.user_attrs.get(ATTR_REASON)
    assert killed.user_attrs["epochs"] == 6 and sorted(killed.intermediate_values) == [1, 2, 3, 4, 5, 6]
    for kill in kills:
        # The next process to train this trial started after the checkpoint's epoch, not at epoch 1.
        after = [e for e in events if e["hidden"] == KILLED_HIDDEN and e["event"] == "epoch_start" and e["time"] > kill["time"]]
        assert after[0]["pid"] != kill["pid"]
        assert after[0]["epoch"] > 1 and after[0]["epoch"] >= kill["checkpoint"] + 1
    assert trials["wide_fast"].state == TrialState.COMPLETE
    print(f"survived {len(kills)} worker kills (--max-retries 2): continued at epochs", [k["checkpoint"] + 1 for k in kills])


def test_ddp_trial_with_a_rank_killed_continues_from_its_checkpoint(tmp_path):
    trials, (kill,), events = _kill_workers(tmp_path, kills=1, max_retries=1, space="killable_ddp")
    killed = trials["small_slow"]
    assert killed.state == TrialState.COMPLETE, killed.user_attrs.get(ATTR_REASON)
    assert killed.user_attrs["epochs"] == 6 and sorted(killed.intermediate_values) == [1, 2, 3, 4, 5, 6]
    assert killed.user_attrs[ATTR_WORLD_SIZE] == 2
    # Both ranks were started again, in new processes, after the checkpoint's epoch.
    before = {e["pid"] for e in events if e["event"] == "epoch_start" and e["time"] < kill["time"]}
    after = [e for e in events if e["event"] == "epoch_start" and e["time"] > kill["time"] and e["pid"] not in before]
    assert len({e["pid"] for e in after}) == 2
    # Not epoch 1: from the checkpoint seen before the kill, or a newer one stored as the kill landed.
    assert min(e["epoch"] for e in after) >= kill["checkpoint"] + 1
    print(f"survived a DDP rank kill (--max-retries 1): continued at epoch {kill['checkpoint'] + 1}")


def test_worker_killed_past_the_retry_limit_fails_the_trial_and_the_study_goes_on(tmp_path):
    trials, kills, _ = _kill_workers(tmp_path, kills=1, max_retries=0)
    killed = trials["small_slow"]
    assert killed.state == TrialState.FAIL
    reason = killed.user_attrs[ATTR_REASON]
    assert "worker process has died" in reason  # Ray's own words for a lost worker
    assert killed.user_attrs["epochs"] >= kills[0]["checkpoint"]  # what it trained before the kill is kept
    assert trials["wide_fast"].state == TrialState.COMPLETE
    print(f"killed once with --max-retries 0: FAIL, {reason}")


def test_out_of_memory_fails_the_trial_with_the_reason_and_the_study_goes_on(ray_cluster, storage_url, ray_storage):
    study = run_study(load_space(SPACES / "oom.py"), RunOptions(storage=storage_url, command="test"))
    by_name = {t.user_attrs[ATTR_BASELINE]: t for t in study.get_trials()}
    greedy = by_name["runs_out_of_memory"]
    assert greedy.state == TrialState.FAIL
    assert greedy.user_attrs[ATTR_REASON].startswith("out of memory: RuntimeError:")
    assert "can't allocate memory" in greedy.user_attrs[ATTR_REASON]
    assert by_name["healthy"].state == TrialState.COMPLETE


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"),
            "out of memory: RuntimeError:",
        ),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out of memory: OutOfMemoryError:"),
        (ValueError("bad lr\nmore"), "ValueError: bad lr"),
    ],
)
def test_failure_reasons_say_out_of_memory_plainly(error, reason):
    assert failure_reason(error).startswith(reason)
