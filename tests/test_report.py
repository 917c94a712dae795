"""`tune report`: the HTML report of a real tiny study, its figures and numbers checked against the stored trials."""

import math
import re

import optuna
import pytest
from browser import artifact, finished_tiny_study, needs_chromium, stored_small_study
from conftest import tune_cli
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from studies.report import build_sections, write_report
from studies.report.figures import pareto_front
from studies.space import AshaSettings
from studies.store.catalog import asha_settings, compute_summary, load_study, objectives_of, select_trial

FIGURES = ["history", "pareto", "learning-curves", "parallel-coordinates", "importances", "compute"]
SECTIONS = ["summary", "top-trials", "failed-trials", *FIGURES]


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory, tune_here):
    return finished_tiny_study(tmp_path_factory, tune_here)


@pytest.fixture(scope="module")
def study(study_folder):
    return load_study("tiny", f"sqlite:///{study_folder / 'tune_runs' / 'tune.db'}")


@pytest.fixture(scope="module")
def sections(study):
    return {section.id: section for section in build_sections(study)}


def finished(study, state):
    return study.get_trials(deepcopy=False, states=(state,))


def test_cli_writes_one_self_contained_page_with_every_section(study_folder, study):
    result = tune_cli("report", "tiny", cwd=study_folder, check=True)
    assert result.stdout.strip() == "wrote tune_runs/tiny-report.html"
    page = (study_folder / "tune_runs" / "tiny-report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    for figure in FIGURES:
        assert (f'id="figure-{figure}"' in page) == (figure != "importances" or len(finished(study, TrialState.COMPLETE)) >= 2), figure
    assert "<h1>Study tiny</h1>" in page
    assert "<b>val_loss</b> (minimize) — drives ASHA" in page and "<b>prediction_std</b> (maximize)" in page
    assert f"<code>{study.user_attrs['created_by']}</code>" in page and study.user_attrs["created_by"].startswith("tune run ")
    counts = {state: len(finished(study, getattr(TrialState, state))) for state in ("COMPLETE", "PRUNED", "FAIL")}
    assert f"{sum(counts.values())}: {counts['COMPLETE']} COMPLETE, {counts['PRUNED']} PRUNED, 0 FAIL" in page
    assert "No trial failed." in page
    # Opens offline: plotly.js is inlined, no script is fetched (the browser test checks no request leaves the file).
    assert "plotly.js v" in page and not re.search(r"<script[^>]+src=", page)


def test_history_marks_the_named_baselines(study, sections):
    traces = {trace.name: trace for trace in sections["history"].figure.data}
    complete = finished(study, TrialState.COMPLETE)
    assert list(traces["COMPLETE"].x) == [t.number for t in complete]
    assert list(traces["COMPLETE"].y) == [t.value for t in complete]
    named = {t.number: t.user_attrs["baseline"] for t in study.trials if "baseline" in t.user_attrs}
    assert set(named.values()) == {"small_slow", "wide_fast"}
    assert dict(zip(traces["baselines"].x, traces["baselines"].text)) == named


def dominated(point, other, signs):
    """Whether ``other`` is at least as good as ``point`` in both coordinates and better in one."""
    a, b = [s * v for s, v in zip(signs, point)], [s * v for s, v in zip(signs, other)]
    return b[0] <= a[0] and b[1] <= a[1] and b != a


def test_pareto_front_of_each_objective_pair_respects_directions(study, sections):
    figure = sections["pareto"].figure
    (first, first_direction), *others = objectives_of(study)
    complete = finished(study, TrialState.COMPLETE)
    selected = select_trial(study)
    assert len(figure.data) == 3 * len(others)  # trials, front, selected trial per panel
    for panel, (other, other_direction) in enumerate(others, start=1):
        axis = "x" if panel == 1 else f"x{panel}"
        traces = {trace.name: trace for trace in figure.data if trace.xaxis == axis}
        points = [(t.user_attrs[f"metric.{first}"], t.user_attrs[f"metric.{other}"]) for t in complete]
        assert sorted(zip(traces["COMPLETE trials"].x, traces["COMPLETE trials"].y)) == sorted(points)
        signs = [1 if d == "minimize" else -1 for d in (first_direction, other_direction)]
        undominated = {p for p in points if not any(dominated(p, q, signs) for q in points)}
        assert set(zip(traces["Pareto front"].x, traces["Pareto front"].y)) == undominated
        (star,) = [trace for name, trace in traces.items() if name.startswith(f"selected: trial {selected.number}")]
        assert (star.x[0], star.y[0]) == (selected.user_attrs[f"metric.{first}"], selected.user_attrs[f"metric.{other}"])


def test_pareto_front_maximizes_where_asked():
    points = [(1.0, 5.0), (2.0, 6.0), (3.0, 4.0), (0.5, 1.0)]
    assert pareto_front(points, ("minimize", "maximize")) == [3, 0, 1]
    assert pareto_front(points, ("minimize", "minimize")) == [3]
    assert pareto_front(points, ("maximize", "maximize")) == [2, 1]


def test_learning_curves_show_every_trial_the_rungs_and_where_pruned_trials_stopped(study, sections):
    figure = sections["learning-curves"].figure
    assert study.user_attrs["asha"] == {"max_epochs": 4, "grace_period": 1, "reduction_factor": 2, "brackets": 1, "gated": False}
    assert [shape.x0 for shape in figure.layout.shapes] == [1, 2, 4]  # 1 × 2^k ≤ 4
    curves = [t for t in study.trials if t.intermediate_values]
    assert len(curves) == len(study.trials)
    for trace, trial in zip(figure.data, curves):
        assert trace.name.startswith(f"trial {trial.number}")
        assert list(trace.x) == sorted(trial.intermediate_values)
        assert list(trace.y) == [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)]
    pruned = finished(study, TrialState.PRUNED)
    assert pruned, "ASHA pruned no trial of the tiny study: nothing to mark"
    stops = figure.data[len(curves)]
    assert stops.name == "pruned here" and len(figure.data) == len(curves) + 1
    assert list(stops.x) == [t.user_attrs["epochs"] for t in pruned]
    assert list(stops.y) == [t.intermediate_values[t.user_attrs["epochs"]] for t in pruned]


def test_compute_saved_is_each_pruned_trials_untrained_epochs_at_its_own_pace(study, sections):
    max_epochs = study.user_attrs["asha"]["max_epochs"]
    pruned = finished(study, TrialState.PRUNED)
    saved_seconds = sum((max_epochs - t.user_attrs["epochs"]) * t.user_attrs["train_seconds"] / t.user_attrs["epochs"] for t in pruned)
    summary = compute_summary(study, asha_settings(study))
    assert summary.saved_seconds == pytest.approx(saved_seconds)
    assert summary.saved_epochs == sum(max_epochs - t.user_attrs["epochs"] for t in pruned)
    assert summary.train_seconds == pytest.approx(sum(t.user_attrs["train_seconds"] for t in study.trials))
    assert summary.epochs == sum(t.user_attrs["epochs"] for t in study.trials)
    seconds_bars, epoch_bars = sections["compute"].figure.data
    assert list(seconds_bars.y) == pytest.approx([summary.train_seconds, saved_seconds])
    assert list(epoch_bars.y) == [summary.epochs, summary.saved_epochs]
    assert f"<b>{saved_seconds:.4g} s</b> and <b>{summary.saved_epochs}</b> epochs" in sections["compute"].text
    # Every PRUNED trial of the run says which rule stopped it; this study's method (bohb: ASHA ungated) has one rule.
    assert all(t.user_attrs["pruned_by"].startswith("ASHA: ") for t in pruned)
    asha_stops = f"<li>ASHA, outside the best at a rung: <b>{len(pruned)}</b> trials, {summary.saved_epochs} epochs not trained</li>"
    assert asha_stops in sections["compute"].text


def test_top_trials_table_is_best_first_with_the_selected_trial_highlighted(study, sections):
    text = sections["top-trials"].text
    headers = re.findall(r"<th>(.*?)</th>", text)
    assert headers[:6] == ["trial", "baseline", "state", "val_loss ↓", "val_mae ↓", "prediction_std ↑"]
    assert headers.index("epochs") < headers.index("train seconds") < headers.index("model.hidden")
    rows = re.findall(r"<tr(?: class=\"selected\")?><td>(\d+)</td><td>[^<]*</td><td>(\w+)</td>", text)
    complete = sorted(finished(study, TrialState.COMPLETE), key=lambda t: t.value)
    assert [int(number) for number, _ in rows[: len(complete)]] == [t.number for t in complete]
    assert {state for _, state in rows[len(complete) :]} == {"PRUNED"}
    assert f'<tr class="selected"><td>{select_trial(study).number}</td>' in text


def test_parallel_coordinates_draw_every_complete_trial(study, sections):
    lines = [trace for trace in sections["parallel-coordinates"].figure.data if trace.mode == "lines"]
    assert len(lines) == len(finished(study, TrialState.COMPLETE))


def test_importances_come_from_optuna():
    # How many trials ASHA lets finish in the real run varies with timing; importances need 2 COMPLETE ones, so
    # these are stored through Optuna's API as the bridge stores them: lr matters, hidden barely.
    study = optuna.create_study(direction="minimize")
    distributions = {"model.hidden": IntDistribution(2, 32, log=True), "optimizer.lr": FloatDistribution(1e-4, 0.3, log=True)}
    for hidden, lr in [(4, 1e-3), (32, 3e-2), (8, 1e-4), (16, 0.1), (2, 0.01), (24, 3e-4)]:
        value = abs(math.log10(lr) + 2) + 0.01 * hidden
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=value, params={"model.hidden": hidden, "optimizer.lr": lr},
            distributions=distributions, user_attrs={"metric.value": value, "epochs": 4},
        ))  # fmt: skip
    importances = {section.id: section for section in build_sections(study)}["importances"].figure.data[0]
    assert set(importances.y) == set(distributions) and sum(importances.x) == pytest.approx(1.0)
    assert importances.y[list(importances.x).index(max(importances.x))] == "optimizer.lr"


def test_a_small_study_gets_notes_instead_of_missing_figures(tmp_path):
    study = stored_small_study()
    (page_path,) = write_report(study, tmp_path / "small.html")
    page = page_path.read_text()
    assert "Parameter importances need at least 2 COMPLETE trials with searched parameters (this study has 1)." in page
    assert 'id="figure-importances"' not in page
    assert "The study records no ASHA settings, so no rungs are drawn." in page
    assert "<td>RuntimeError: injected failure at epoch 2</td>" in page and "Failed trials (1)" in page
    headers = re.findall(r"<th>(.*?)</th>", page.split('id="top-trials"')[1].split("</table>")[0])
    assert headers[3:6] == ["val_loss ↓", "improvement_over_constant ↑", "train_loss"]
    # No ASHA settings: an unpruned trial trains as long as the COMPLETE one did (4 epochs at 3 s each).
    summary = compute_summary(study, asha_settings(study))
    assert (summary.saved_epochs, summary.saved_seconds) == (3, pytest.approx(9.0))


def test_asha_rungs_are_grace_period_times_powers_of_the_reduction_factor():
    assert AshaSettings(max_epochs=40, grace_period=4, reduction_factor=3).rungs == [4, 12, 36]
    assert AshaSettings(max_epochs=12, grace_period=12, reduction_factor=2).rungs == [12]


def test_report_into_a_missing_folder_is_one_clear_line(study_folder):
    result = tune_cli("report", "tiny", "-o", "/no/such/folder/report.html", cwd=study_folder)
    assert result.returncode == 2
    assert result.stderr.strip() == "tune: error: cannot write /no/such/folder/report.html: folder /no/such/folder does not exist"


def test_png_without_a_browser_says_what_to_install_and_writes_nothing(study_folder, tmp_path):
    output = tmp_path / "report.html"
    result = tune_cli("report", "tiny", "--png", "-o", output, cwd=study_folder, env={"TUNE_CHROMIUM": str(tmp_path / "no-chrome")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("tune: error: --png needs Chrome or Chromium") and "apt-get install chromium" in line
    assert list(tmp_path.iterdir()) == []


@needs_chromium
def test_png_writes_each_figure_beside_the_report(study):
    report = artifact("tiny-report.html")
    written = write_report(study, report, png=True)
    drawn = [name for name in FIGURES if name != "importances" or len(finished(study, TrialState.COMPLETE)) >= 2]
    assert written == [report, *(report.with_name(f"tiny-report-{name}.png") for name in drawn)]
    for png in written[1:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, png
