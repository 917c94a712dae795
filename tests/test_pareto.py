"""Multi-objective studies: a real Pareto study of the slow tiny space within a constraint, killed with SIGKILL and
resumed, then read back by every reader (states, curves, constraints, front, show, best, export, report, dashboard,
repeat's and phases' choice of trials); and the bad input it refuses in one line before anything is written."""

import json
import re
import signal
import subprocess
import sys
import wsgiref.util

import optuna
import pytest
from conftest import (
    SPACES,
    assert_study_whole,
    kill_process_group,
    mid_training,
    refusal,
    snapshot,
    tune_in_this_process,
    wait_for_trials,
)
from optuna.trial import TrialState
from optuna_dashboard import wsgi

from studies.driver.phases import keep_best_checkpoint
from studies.driver.repeat import repeat_queue
from studies.driver.run import RunOptions, StudyError, count_states, open_study
from studies.records import ATTR_CHECKPOINT_EPOCH, ATTR_CONTINUED_AT_EPOCH
from studies.report import build_sections
from studies.report.figures import label
from studies.space import load_space
from studies.store.catalog import (
    constraints_of,
    epoch_values,
    feasible,
    front_hypervolume,
    load_study,
    metric_value,
    pareto_trials,
    select_trial,
)
from studies.store.storage import open_storage

OBJECTIVES = ["val_loss", "val_mae", "prediction_std"]  # tiny.py's, in its order; prediction_std is maximized
LOW = 0.6  # a sine fitted well has a prediction spread of about 0.7; an early, flat fit less


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, tune_here):
    """`tune run slow.py --pareto --constrain prediction_std=0.6..` killed mid-study, then `tune resume`: the study
    before the kill and after the resume, the folder and the storage URL."""
    folder = tmp_path_factory.mktemp("pareto")
    url = f"sqlite:///{folder / 'studies.db'}"
    command = ["run", SPACES / "slow.py", "--pareto", "--constrain", f"prediction_std={LOW}..", "--trials", "6", "--seed", "0"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "studies", *map(str, command), "--storage", url, "--checkpoint-every", "0"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_trials(
            driver, url, lambda trials: any(t.state.is_finished() for t in trials) and any(map(mid_training, trials)),
            "a trial finished and another was mid-training",
        )  # fmt: skip
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        kill_process_group(driver)  # Ray's worker processes of the killed driver
    before = {t.number: t for t in snapshot(url)}
    resumed = tune_here("resume", "slow", "--storage", url, cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    return before, load_study("slow", url), folder, url


def test_every_objective_is_searched_and_the_resumed_study_is_whole(resumed):
    before, study, _, _ = resumed
    assert [d.name.lower() for d in study.directions] == ["minimize", "minimize", "maximize"]
    assert study.metric_names == OBJECTIVES
    assert constraints_of(study) == {"prediction_std": (LOW, float("inf"))}
    trials = study.get_trials()
    assert_study_whole(trials, 6)
    for trial in trials:
        assert not trial.intermediate_values  # Optuna's multi-objective TPE cannot rank PRUNED trials that have them
        if trial.state == TrialState.COMPLETE:
            assert trial.values == [metric_value(trial, name) for name in OBJECTIVES]
        if before.get(trial.number) is not None and before[trial.number].state.is_finished():
            assert trial.values == before[trial.number].values and trial.system_attrs == before[trial.number].system_attrs
    assert any(t.state == TrialState.COMPLETE for t in trials) and any(t.state == TrialState.PRUNED for t in trials)


def test_every_epoch_of_every_objective_is_kept_across_the_kill(resumed):
    before, study, _, _ = resumed
    interrupted = [n for n, t in before.items() if t.state == TrialState.RUNNING and ATTR_CHECKPOINT_EPOCH in t.user_attrs]
    assert interrupted, "the kill left no trial mid-training"
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        epochs = trial.user_attrs["epochs"]
        for index, name in enumerate(OBJECTIVES):
            curve = epoch_values(trial, index)
            assert sorted(curve) == list(range(1, epochs + 1)), (trial.number, name)
            assert curve[epochs] == metric_value(trial, name)
    for number in interrupted:
        continued = study.trials[number]
        if continued.user_attrs["epochs"] > before[number].user_attrs[ATTR_CHECKPOINT_EPOCH]:
            assert continued.user_attrs[ATTR_CONTINUED_AT_EPOCH] == before[number].user_attrs[ATTR_CHECKPOINT_EPOCH] + 1


def test_each_trial_carries_its_violation_as_optunas_constraints(resumed):
    _, study, _, _ = resumed
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        assert trial.system_attrs["constraints"] == [LOW - metric_value(trial, "prediction_std")]
        assert feasible(trial) == (metric_value(trial, "prediction_std") >= LOW)


def test_the_front_is_optunas_own_and_tune_best_lists_it(resumed):
    _, study, folder, url = resumed
    front = pareto_trials(study)
    assert front, "no COMPLETE trial within the constraint: nothing to read a front from"
    assert sorted(t.number for t in front) == sorted(t.number for t in study.best_trials)  # Optuna's, constraints applied
    assert [t.number for t in front] == [t.number for t in sorted(front, key=lambda t: metric_value(t, "val_loss"))]
    rows = json.loads(tune_in_this_process("best", "slow", "--pareto", "--json", "--storage", url, cwd=folder, check=True).stdout)
    assert [row["trial"] for row in rows] == [t.number for t in front] and all(row["feasible"] for row in rows)
    chosen = front[-1]
    exported = tune_in_this_process(
        "export", "slow", "--trial", chosen.number, "-o", "front.yaml", "--storage", url, cwd=folder, check=True
    ).stdout
    assert exported.strip().startswith(f"wrote trial {chosen.number} of slow") and (folder / "front.yaml").is_file()
    best = select_trial(study)
    assert best.number == front[0].number and feasible(best)  # `tune best` and `export` pick within the constraint
    assert count_states(study).best == metric_value(best, "val_loss")
    worst = [max(metric_value(t, name) for t in front) + 1 for name in OBJECTIVES[:2]] + [0.0]
    assert front_hypervolume(study, worst) > 0


def test_show_and_the_report_mark_trials_outside_the_constraint(resumed):
    _, study, folder, url = resumed
    shown = json.loads(tune_in_this_process("show", "slow", "--json", "--storage", url, cwd=folder, check=True).stdout)
    judged = {t.number: feasible(t) for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))}
    assert {row["trial"]: row["feasible"] for row in shown if row["state"] != "FAIL"} == judged
    sections = {section.id: section for section in build_sections(study)}
    pareto = sections["pareto"].figure
    panel = {trace.name: trace for trace in pareto.data if trace.xaxis == "x"}  # val_loss against val_mae
    front = pareto_trials(study)
    assert list(panel["Pareto front"].x) == [metric_value(t, "val_loss") for t in front]
    outside = [metric_value(t, "val_loss") for t in study.get_trials(states=(TrialState.COMPLETE,)) if not feasible(t)]
    drawn = panel["outside the constraints"].x if "outside the constraints" in panel else ()
    assert sorted(drawn) == sorted(outside)
    (star,) = [trace for name, trace in panel.items() if name.startswith("selected:")]
    assert star.x[0] == metric_value(select_trial(study), "val_loss")
    curves = sections["learning-curves"].figure.data
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        (trace,) = [c for c in curves if c.name == label(trial)]
        assert list(trace.y) == list(epoch_values(trial).values())


def test_the_dashboard_gets_every_direction_and_each_trials_constraint(resumed):
    _, study, _, url = resumed
    environ = {"PATH_INFO": f"/api/studies/{study._study_id}", "QUERY_STRING": "after=0"}
    wsgiref.util.setup_testing_defaults(environ)
    answer = json.loads(b"".join(wsgi(open_storage(url, create=False))(environ, lambda status, headers, exc_info=None: None)))
    # Its study page draws the Pareto-front plot for several directions, and greys the trials with a violation above 0.
    assert answer["directions"] == ["minimize", "minimize", "maximize"] and answer["objective_names"] == OBJECTIVES
    shown = {trial["number"]: trial["constraints"] for trial in answer["trials"]}
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        assert shown[trial.number] == [LOW - metric_value(trial, "prediction_std")]


def test_repeat_and_phases_start_from_the_front(resumed, tmp_path):
    _, study, _, _ = resumed
    front = pareto_trials(study)
    queue = repeat_queue(study, top=len(front), seeds=1)
    assert [params for params, _ in queue] == [t.params for t in front]
    warm = keep_best_checkpoint(study, tmp_path)
    assert warm.best.number == select_trial(study).number
    assert (tmp_path / "slow" / f"best_trial_{warm.best.number}.ckpt").is_file()


def test_a_study_goes_on_only_with_the_search_it_was_made_with(resumed):
    _, study, _, url = resumed
    space = load_space(SPACES / "slow.py")
    sampler = optuna.samplers.RandomSampler()
    cases = {
        "a search of its first objective": (
            RunOptions(storage=url),
            "was made with a Pareto search; pass --pareto to continue it",
        ),
        "another constraint": (
            RunOptions(storage=url, pareto=True, constraints={"prediction_std": (0.1, 0.9)}),
            f"was made with prediction_std in [{LOW}, inf]; pass the same --constrain",
        ),
    }
    before = [t.datetime_complete for t in study.get_trials()]
    for case, (options, message) in cases.items():
        with pytest.raises(StudyError, match=re.escape(message)):
            open_study(space, options, sampler)
    assert [t.datetime_complete for t in load_study("slow", url).get_trials()] == before


# Each refused before Ray starts or a storage is made: one line, exit 2.
BAD_RUNS = {
    "a constraint on an unknown metric": (
        ["--constrain", "accuracy=0.3..0.7"],
        "--constrain bounds accuracy, which is neither an objective nor a HEADLINES metric of the space",
    ),
    "an empty range": (["--constrain", "val_mae=0.7..0.3"], "--constrain bounds val_mae to the empty range 0.7..0.3"),
    "a range open on both sides": (["--constrain", "val_mae=.."], "--constrain bounds val_mae on neither side"),
    "a constraint that is no range": (["--constrain", "val_mae<0.3"], "bound 'val_mae<0.3' is not NAME=LOW..HIGH"),
    "a sampler of one objective": (
        ["--pareto", "--sampler", "cmaes"],
        "--sampler cmaes searches one objective; a Pareto search takes",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_bad_search_options_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, case):
    options, message = BAD_RUNS[case]
    monkeypatch.chdir(tmp_path)
    assert message in refusal(capsys, "run", SPACES / "tiny.py", *options)
    assert not (tmp_path / "tune_runs").exists()


def test_pareto_with_one_objective_and_best_pareto_with_a_metric_are_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.py").write_text((SPACES / "tiny.py").read_text())
    (tmp_path / "single.py").write_text("from tiny import *\nOBJECTIVES = OBJECTIVES[:1]\n")
    monkeypatch.chdir(tmp_path)
    line = refusal(capsys, "run", "single.py", "--pareto")
    assert line == "tune: error: --pareto needs two or more OBJECTIVES to search jointly; single.py declares val_loss only"
    assert "--pareto lists the whole front; drop --by" in refusal(capsys, "best", "tiny", "--pareto", "--by", "val_mae")
    assert not (tmp_path / "tune_runs").exists()
