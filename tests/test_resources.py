"""Resources per trial on a real local Ray: fractional GPUs pack trials, whole GPUs are never shared, and a DDP
trial trains on several processes and is recorded as a one-process trial is.

This machine has no GPU: Ray is started with declared GPUs (``num_gpus=2``), so its scheduler reserves and hands
out GPU ids as on a GPU machine, while torch, finding no CUDA, trains every trial on CPU (device "cpu").
"""

import optuna
import pytest
from conftest import SPACES, refusal
from declared_ray import run_tune
from optuna.trial import TrialState

from studies.driver.run import RunOptions, run_study
from studies.records import ATTR_DEVICE, ATTR_GPU_IDS, ATTR_REASON, ATTR_WORLD_SIZE
from studies.space import Resources, load_module, load_space
from studies.store.storage import open_storage

logged = load_module(SPACES / "logged.py")  # the training processes' event log


@pytest.mark.parametrize(
    ("resources", "problem"),
    [
        (Resources(cpus=0), "cpus > 0"),
        (Resources(gpus=-1), "gpus >= 0"),
        (Resources(gpus=1.5), "a fraction up to 1"),
        (Resources(workers=0), "workers is a whole number"),
        (Resources(gpus=4, workers=2), "takes gpus=2"),
        (Resources(gpus=0.5, workers=2), "takes gpus=2"),
    ],
)
def test_nonsense_resources_are_named(resources, problem):
    assert problem in resources.problem()


def test_resources_say_how_many_processes_train_a_trial():
    assert [Resources(gpus=0.25).processes, Resources(gpus=1).processes, Resources(gpus=2).processes] == [1, 1, 2]
    assert Resources(workers=2).processes == 2 and Resources(workers=2).problem() is None
    # --gpus-per-trial replaces the GPUs; the processes follow them.
    assert Resources(cpus=2, workers=2).with_gpus(0.5) == Resources(cpus=2, gpus=0.5)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gpus-per-trial", "1.5"], "--gpus-per-trial 1.5: gpus is a fraction up to 1"),
        (["--gpus-per-trial", "-1"], "--gpus-per-trial -1: needs gpus >= 0"),
        (["--max-retries", "-1"], "--max-retries must be 0 or more"),
    ],
)
def test_cli_refuses_unusable_resources_in_one_line(tmp_path, monkeypatch, capsys, storage_url, flags, message):
    monkeypatch.chdir(tmp_path)
    line = refusal(capsys, "run", SPACES / "tiny.py", "--storage", storage_url, "--trials", 1, *flags)
    assert line.startswith(f"tune: error: {message}")
    assert not any(tmp_path.iterdir()), "refused before the storage is made"


# The cluster is the session's local Ray (2 CPUs, no GPU), which the CLI, run in this process, asks as its own.
@pytest.mark.parametrize(
    "command", [["run", SPACES / "tiny.py"], ["phases", SPACES / "state_phases.py"]], ids=["run", "phases"]
)  # fmt: skip
def test_a_trial_too_big_for_the_cluster_is_refused_before_making_the_storage(
    ray_cluster, tmp_path, monkeypatch, capsys, storage_url, command
):
    monkeypatch.chdir(tmp_path)
    line = refusal(capsys, *command, "--storage", storage_url, "--trials", 1, "--gpus-per-trial", 4)
    assert line.startswith("tune: error: a trial needs 4 GPU (RESOURCES or --gpus-per-trial) but the Ray cluster has 0")
    assert not any(tmp_path.iterdir()), "refused before the storage is made"


def _trainings(events: list[dict]) -> list[dict]:
    """One entry per trained trial: its process, the GPU ids it was shown, and when its fit started and ended."""
    current: dict[int, dict] = {}  # by process: a reused worker trains one trial after another
    trainings = []
    for event in events:
        if event["event"] == "fit_start":
            current[event["pid"]] = {"start": event["time"], "end": None, "visible_gpus": event["visible_gpus"]}
            trainings.append(current[event["pid"]])
        elif event["event"] == "epoch_end":
            current[event["pid"]]["end"] = event["time"]
    assert all(t["end"] is not None for t in trainings), "a trial trained no epoch"
    return trainings


def _most_at_once(trainings: list[dict], gpu: str | None = None) -> int:
    """The most trials training at one moment (on one GPU id, if given)."""
    edges = sorted(
        (moment, step)
        for t in trainings
        if gpu is None or t["visible_gpus"] == gpu
        for moment, step in ((t["start"], 1), (t["end"], -1))
    )  # an end sorts before a start at the same moment
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _declared_gpu_study(
    tmp_path, name: str, *flags, trials: int, wait_for_starts: int = 0
) -> tuple[list[optuna.trial.FrozenTrial], list[dict]]:
    """`tune run gpu_shared.py` on a Ray with 4 CPUs and 2 declared GPUs: the stored trials and their trainings."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    events = tmp_path / f"{name}.jsonl"
    run_tune(
        "run", SPACES / "gpu_shared.py", "--study", name, "--storage", url, "--trials", trials, *flags,
        num_cpus=4, num_gpus=2, cwd=tmp_path, env={logged.EVENTS_VARIABLE: str(events), logged.STARTS_VARIABLE: str(wait_for_starts), "TUNE_RAY_STORAGE": str(tmp_path / "ray")},
    )  # fmt: skip
    trials_stored = optuna.load_study(study_name=name, storage=open_storage(url, create=False)).get_trials()
    return trials_stored, _trainings(logged.read_events(events))


def _check_each_trial_saw_only_its_own_gpu(trials: list[optuna.trial.FrozenTrial], trainings: list[dict]) -> None:
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        assert len(trial.user_attrs[ATTR_GPU_IDS]) == 1 and trial.user_attrs[ATTR_GPU_IDS][0] in ("0", "1")
        assert trial.user_attrs[ATTR_DEVICE] == "cpu"  # declared GPUs, no CUDA: trained on CPU
    # The ids stored are the ones each training process was shown, one id each.
    assert sorted(t["visible_gpus"] for t in trainings) == sorted(t.user_attrs[ATTR_GPU_IDS][0] for t in trials)


def test_half_gpus_pack_two_trials_per_gpu(tmp_path):
    trials, trainings = _declared_gpu_study(tmp_path, "half", trials=4, wait_for_starts=4)
    _check_each_trial_saw_only_its_own_gpu(trials, trainings)
    assert len(trainings) == 4
    # 2 GPUs at 0.5 a trial: never more than 4 at once, never more than 2 on one GPU.
    assert _most_at_once(trainings) <= 4
    assert _most_at_once(trainings, "0") <= 2 and _most_at_once(trainings, "1") <= 2
    # Packing happened: the four trials held both halves of a GPU at some moment.
    assert max(_most_at_once(trainings, "0"), _most_at_once(trainings, "1")) == 2


def test_whole_gpus_are_never_shared(tmp_path):
    trials, trainings = _declared_gpu_study(tmp_path, "whole", "--gpus-per-trial", 1, trials=2, wait_for_starts=2)
    _check_each_trial_saw_only_its_own_gpu(trials, trainings)
    assert _most_at_once(trainings) <= 2
    assert _most_at_once(trainings, "0") == 1 and _most_at_once(trainings, "1") == 1


def test_ddp_trial_records_what_a_one_process_trial_records(ray_cluster, storage_url, ray_storage):
    options = RunOptions(storage=storage_url, trials=1, command="test")
    # One trial each, both the small_slow baseline, 2 epochs: on one process, then with DDP on 2 gloo processes.
    single = run_study(load_space(SPACES / "tiny.py"), RunOptions(storage=storage_url, trials=1, max_epochs=2, command="test"))
    ddp = run_study(load_space(SPACES / "ddp.py"), options)
    [one] = single.get_trials(states=(TrialState.COMPLETE,))
    [two] = ddp.get_trials(states=(TrialState.COMPLETE,))
    assert one.params == two.params
    assert set(one.user_attrs) == set(two.user_attrs)
    assert sorted(one.intermediate_values) == sorted(two.intermediate_values) == [1, 2]
    assert two.user_attrs["epochs"] == 2 and two.user_attrs["checkpoint_epoch"] == 2 and two.user_attrs["checkpoint"]
    assert two.value == pytest.approx(two.user_attrs["metric.val_loss"])
    assert one.user_attrs[ATTR_WORLD_SIZE] == 1
    assert two.user_attrs[ATTR_WORLD_SIZE] == 2  # two ranks reported each epoch
    assert two.user_attrs[ATTR_GPU_IDS] == [] and two.user_attrs[ATTR_DEVICE] == "cpu"
    assert two.user_attrs["best_checkpoint"]  # rank 0's best-epoch weights, kept as an artifact
    # Rank 0 logs each epoch for TensorBoard into the trial's folder, as a one-process trial does.
    [events] = ray_storage.glob("ddp-*/trial_0_*/tensorboard/events.out.tfevents.*")
    assert events.read_bytes().count(b"val_loss") == 2


def test_ddp_trial_that_raises_fails_with_its_ranks_reason(ray_cluster, storage_url, ray_storage):
    study = run_study(load_space(SPACES / "ddp_faulty.py"), RunOptions(storage=storage_url, trials=1, command="test"))
    [crashed] = study.get_trials()
    assert crashed.state == TrialState.FAIL
    assert crashed.user_attrs[ATTR_REASON] == "RuntimeError: injected failure at epoch 2"
    assert crashed.user_attrs["epochs"] == 1 and crashed.user_attrs[ATTR_WORLD_SIZE] == 2
