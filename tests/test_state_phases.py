"""`tune phases`: a real study per phase of the STATE space (at test size), each warm-started from the one before."""

import contextlib
import io
import json
import re
from pathlib import Path

import optuna
import pytest
import torch
from conftest import SPACES
from optuna.trial import TrialState

from studies.cli import main
from studies.driver.phases import WarmStart, declared_phases, phase_queue, run_phases
from studies.driver.run import RunOptions
from studies.records import ATTR_BASELINE, ATTR_TRAINING_CONFIG
from studies.space import SpaceError, load_space

SPACE = SPACES / "state_phases.py"


def trials_of(storage_url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage_url).get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def two_phases(ray_cluster, tmp_path_factory):
    """Phases A and B, 3 trials of at most 4 epochs each, on the session's Ray; then the same again. Returns the printed lines."""
    folder = tmp_path_factory.mktemp("phases")
    storage = f"sqlite:///{folder / 'studies.db'}"
    space = load_space(SPACE)
    printed = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNE_RAY_STORAGE", str(folder / "ray"))
        for _ in range(2):
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                run_phases(space, RunOptions(storage=storage, trials=3, seed=0), phases=["A", "B"])
            printed.append([line for line in output.getvalue().splitlines() if line.startswith("phase ")])
    return storage, *printed


def test_one_study_per_phase_each_holding_its_settings(two_phases):
    storage, first, _ = two_phases
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert summaries == {"state_phases-phase-A": 3, "state_phases-phase-B": 3}
    phases = declared_phases(load_space(SPACE))
    for phase in "AB":
        trials = trials_of(storage, f"state_phases-phase-{phase}")
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        for trial in trials:
            assert {knob: trial.params[knob] for knob in phases[phase]} == phases[phase]
    assert [line.split(":")[0] for line in first] == ["phase A", "phase B"]
    assert "3 of 3 trials" in first[1] and "best val_energy_distance" in first[1] and "state_phases-phase-A trial" in first[1]


def test_later_phase_starts_from_the_earlier_phases_best_config_and_weights(two_phases):
    storage, _, _ = two_phases
    phase_a = optuna.load_study(study_name="state_phases-phase-A", storage=storage)
    best = phase_a.best_trial
    settings_b = declared_phases(load_space(SPACE))["B"]
    first_b, *rest_b = trials_of(storage, "state_phases-phase-B")
    # The first trial of B is A's best config with B's own settings applied.
    assert first_b.user_attrs[ATTR_BASELINE] == "best of phase A"
    assert first_b.params == {**best.params, **settings_b}
    assert best.params["model.decoder_weight"] == 0.5 and first_b.params["model.decoder_weight"] == 1.0
    # Every trial of B loads the copy of A's best checkpoint, which outlives Ray's experiment folder.
    checkpoints = {json.loads(t.user_attrs[ATTR_TRAINING_CONFIG])["model"]["checkpoint"] for t in [first_b, *rest_b]}
    assert len(checkpoints) == 1
    kept = Path(checkpoints.pop())
    assert kept.is_file() and kept.name == f"best_trial_{best.number}.ckpt"
    # The weights loaded: a first epoch of B is already near A's final value, far below a fresh model's first epoch.
    fresh_first, a_final = best.intermediate_values[1], best.value
    for trial in [first_b, *rest_b]:
        assert abs(trial.intermediate_values[1] - a_final) < 0.5 * (fresh_first - a_final), trial.number
    saved = torch.load(kept, map_location="cpu", weights_only=True)["state_dict"]
    assert any(name.startswith("network.transformer_backbone.") for name in saved)


def test_running_again_skips_the_finished_phases(two_phases):
    storage, _, again = two_phases
    assert len(again) == 2 and all("skipped: it already holds its trials" in line for line in again)
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert summaries == {"state_phases-phase-A": 3, "state_phases-phase-B": 3}


def test_resume_of_a_phase_study_runs_that_phase_again(two_phases, capsys, monkeypatch):
    storage, _, _ = two_phases
    monkeypatch.setenv("TUNE_RAY_STORAGE", str(Path(storage.removeprefix("sqlite:///")).parent / "ray"))
    assert main(["resume", "state_phases-phase-B", "--storage", storage]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("phase ")]
    # The phase, with its settings and warm start, not a free study of the bare space.
    assert len(lines) == 1 and lines[0].startswith("phase B: state_phases-phase-B (skipped") and "phase-A trial" in lines[0]


def test_baselines_that_agree_with_a_phase_follow_the_previous_best():
    space = load_space(SPACE)
    phases = declared_phases(space)
    phase_d = space.baselines["Phase D"]
    best = optuna.trial.create_trial(params=phase_d, distributions={k: space.knobs[k].distribution() for k in phase_d}, value=0.3)
    queue = phase_queue(space, phases["E"], WarmStart("a.ckpt", "phase D", best), "D")
    assert [attrs[ATTR_BASELINE] for _, attrs in queue] == ["best of phase D", "Phase E"]
    # Phase E thaws the backbone, so unfreeze_top_blocks (searched only while frozen) is left out of its first trial.
    assert "training.unfreeze_top_blocks" not in queue[0][0] and queue[0][0]["model.freeze_pert_backbone"] is False


@pytest.mark.parametrize(
    "declarations, message",
    [
        ('PHASES = {"A": {"model.width": 3}}\nWARM_START = "data.samples"', "phase 'A' sets model.width, which is not a knob"),
        (
            'PHASES = {"A": {"model.hidden": 64}}\nWARM_START = "data.samples"',
            "phase 'A' sets model.hidden=64, outside the knob's range",
        ),
        ('PHASES = {"A": {"model.hidden": 8}}\nWARM_START = "model.hidden"', "WARM_START must name a fixed value of CONFIG"),
    ],
)
def test_phase_declarations_are_checked(tmp_path, declarations, message):
    (tmp_path / "phased.py").write_text(f"{(SPACES / 'tiny.py').read_text()}\n{declarations}\n")
    with pytest.raises(SpaceError, match=re.escape(message)):
        declared_phases(load_space(tmp_path / "phased.py"))


@pytest.mark.parametrize(
    "args, message",
    [
        (("--phases", "A", "Z"), "declares no phase Z; its phases: A, B, C, D, E"),
        (("--phases", "C"), "phase C starts from phase B's best, but study state_phases-phase-B is not in the storage"),
    ],
)
def test_bad_phases_are_one_line_errors_and_store_nothing(tmp_path, capsys, args, message):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    assert main(["phases", str(SPACE), *args, "--storage", storage]) == 2
    error = capsys.readouterr().err
    assert error.strip().count("\n") == 0 and message in error
    assert optuna.get_all_study_summaries(storage) == []


def test_a_space_without_phases_is_refused(tmp_path, capsys):
    assert main(["phases", str(SPACES / "tiny.py"), "--storage", f"sqlite:///{tmp_path / 'studies.db'}"]) == 2
    assert "tiny.py declares no PHASES" in capsys.readouterr().err
