"""``tune report STUDY``: one self-contained HTML page of a study, read from the Optuna storage only.

plotly.js is inlined once in the page's head, so the report opens offline and can be mailed as one
file. The page holds, in order: what the study is (objectives with directions, the command that
created it, trials by state, ASHA's settings, the selected trial), the top trials as a table, the
failed trials with their reasons, the optimisation history with the named baselines, the Pareto
front of the first objective against each other one, every trial's learning curve with ASHA's
rungs and where each pruned trial stopped, parallel coordinates and parameter importances
(Optuna's own plots), and the compute spent and saved by pruning. ``png=True`` also writes each
figure as a PNG beside the page, rendered by kaleido in a headless Chrome or Chromium.

Example::

    from studies.catalog import load_study
    from studies.report import build_sections, write_report

    study = load_study("tiny", "sqlite:///tune_runs/tune.db")
    print([section.id for section in build_sections(study)])
    print(write_report(study, "tune_runs/tiny-report.html"))
"""

from __future__ import annotations

import datetime
import html
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from studies.catalog import SelectionError, metric_value, objectives_of, select_trial, trials_table
from studies.errors import UserInputError
from studies.files import checked_output, write_atomically
from studies.records import (
    ATTR_BASELINE,
    ATTR_EPOCHS,
    ATTR_REASON,
    ATTR_TRAIN_SECONDS,
    METRIC_PREFIX,
    STUDY_ASHA,
    STUDY_CREATED_BY,
    STUDY_SPACE_PATH,
)

DEFAULT_CHROMIUM = "/usr/bin/chromium"  # Debian's `chromium` package; $TUNE_CHROMIUM names another browser
CHROMIUM_VARIABLE = "TUNE_CHROMIUM"
TOP_TRIALS = 15
PNG_SIZE = {"width": 1100, "height": 550}
FLYVIS_IMPROVEMENT = "improvement_over_constant"  # the flyvis log's "Improvement vs Constant": shown beside the objectives
STATE_STYLE = {  # colour and dash of a trial's learning curve by how it ended
    "COMPLETE": ("#1f77b4", "solid"),
    "PRUNED": ("#ff7f0e", "dash"),
    "FAIL": ("#d62728", "dot"),
    "RUNNING": ("#7f7f7f", "dot"),
}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class ReportError(UserInputError):
    """A report that cannot be written as asked; the message says what to do instead."""


@dataclass(frozen=True)
class AshaSettings:
    """ASHA's settings of the study's last run, as ``tune run`` stored them."""

    max_epochs: int
    grace_period: int
    reduction_factor: int

    @property
    def rungs(self) -> list[int]:
        """The epochs at which ASHA compares trials: grace_period × reduction_factor^k ≤ max_epochs."""
        rungs, epoch = [], self.grace_period
        while epoch <= self.max_epochs:
            rungs.append(epoch)
            epoch *= self.reduction_factor
        return rungs


@dataclass(frozen=True)
class ComputeSummary:
    """Training time and epochs the study spent, and what ASHA saved by stopping trials early."""

    train_seconds: float
    epochs: int
    trials: int
    pruned_trials: int
    saved_seconds: float | None  # None when the study does not say how long an unpruned trial trains
    saved_epochs: int | None


@dataclass
class Section:
    """One part of the page: a heading, an optional figure, and HTML text (numbers, tables, notes)."""

    id: str
    title: str
    figure: go.Figure | None = None
    text: str = ""
    notes: list[str] = field(default_factory=list)


def asha_settings(study: optuna.Study) -> AshaSettings | None:
    stored = study.user_attrs.get(STUDY_ASHA)
    return AshaSettings(**stored) if stored else None


def full_epochs(study: optuna.Study, asha: AshaSettings | None) -> int | None:
    """Epochs of an unpruned trial: ASHA's max_epochs, else the most any COMPLETE trial trained."""
    if asha:
        return asha.max_epochs
    trained = [t.user_attrs.get(ATTR_EPOCHS) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max((e for e in trained if isinstance(e, int)), default=None)


def _selected_trial(study: optuna.Study) -> tuple[FrozenTrial | None, str]:
    """The trial ``tune best`` and ``tune export`` pick by default, or why there is none."""
    try:
        return select_trial(study), ""
    except SelectionError as exc:
        return None, str(exc)


def _label(trial: FrozenTrial) -> str:
    baseline = trial.user_attrs.get(ATTR_BASELINE)
    return f"trial {trial.number}" + (f" ({baseline})" if baseline else "")


def _last_value(trial: FrozenTrial) -> tuple[int, float] | None:
    """The epoch a trial last reported and its first-objective value there."""
    if not trial.intermediate_values:
        return None
    epoch = max(trial.intermediate_values)
    return epoch, trial.intermediate_values[epoch]


def _whole_number_step(largest: int) -> int:
    """A tick step that labels trials and epochs by whole numbers, about ten ticks at most."""
    return max(1, math.ceil(largest / 10))


def _axis_title(name: str, direction: str) -> str:
    return f"{name} ({direction})"


# -- figures ------------------------------------------------------------------------------------


def history_figure(study: optuna.Study) -> go.Figure:
    """First objective by trial number: COMPLETE values, where PRUNED trials stopped, the best so far, the baselines."""
    objective, direction = objectives_of(study)[0]
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    pruned = [(t, _last_value(t)) for t in trials if t.state == TrialState.PRUNED and _last_value(t)]
    figure = go.Figure()
    figure.add_scatter(
        name="COMPLETE", x=[t.number for t in complete], y=[t.value for t in complete], mode="markers",
        marker={"color": STATE_STYLE["COMPLETE"][0], "size": 9}, text=[_label(t) for t in complete],
    )  # fmt: skip
    if pruned:
        figure.add_scatter(
            name="PRUNED (value where it stopped)", x=[t.number for t, _ in pruned], y=[last[1] for _, last in pruned],
            mode="markers", marker={"color": STATE_STYLE["PRUNED"][0], "size": 8, "symbol": "circle-open"},
            text=[f"{_label(t)} stopped at epoch {last[0]}" for t, last in pruned],
        )  # fmt: skip
    if complete:
        best, best_so_far = [], None
        for trial in complete:
            better = best_so_far is None or (trial.value < best_so_far if direction == "minimize" else trial.value > best_so_far)
            best_so_far = trial.value if better else best_so_far
            best.append(best_so_far)
        figure.add_scatter(
            name="best so far", x=[t.number for t in complete], y=best, mode="lines",
            line={"shape": "hv", "color": "#2ca02c"},
        )  # fmt: skip
    values = {t.number: t.value for t in complete} | {t.number: last[1] for t, last in pruned}
    baselines = [t for t in trials if t.user_attrs.get(ATTR_BASELINE) and t.number in values]
    if baselines:
        figure.add_scatter(
            name="baselines", x=[t.number for t in baselines], y=[values[t.number] for t in baselines],
            mode="markers+text", text=[t.user_attrs[ATTR_BASELINE] for t in baselines], textposition="top center",
            marker={"symbol": "diamond-open", "size": 16, "color": "#9467bd", "line": {"width": 2}},
        )  # fmt: skip
    figure.update_layout(
        title=f"Optimisation history: {objective}", xaxis_title="trial", yaxis_title=_axis_title(objective, direction), height=480,
        xaxis_dtick=_whole_number_step(max((t.number for t in trials), default=0)),
    )  # fmt: skip
    return figure


def pareto_front(points: list[tuple[float, float]], directions: tuple[str, str]) -> list[int]:
    """Indices of the points that no other point beats in both coordinates, in order along the front."""
    signs = [1 if direction == "minimize" else -1 for direction in directions]
    order = sorted(range(len(points)), key=lambda i: (signs[0] * points[i][0], signs[1] * points[i][1]))
    front, best_second = [], math.inf
    for index in order:
        second = signs[1] * points[index][1]
        if second < best_second:
            front.append(index)
            best_second = second
    return front


def pareto_figure(study: optuna.Study, selected: FrozenTrial | None) -> go.Figure | None:
    """The first objective against each other objective (one panel each), over COMPLETE trials' final metrics."""
    objectives = objectives_of(study)
    if len(objectives) < 2:
        return None
    (first, first_direction), others = objectives[0], objectives[1:]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figure = make_subplots(rows=1, cols=len(others), horizontal_spacing=0.08)
    for column, (other, other_direction) in enumerate(others, start=1):
        trials = [t for t in complete if metric_value(t, first) is not None and metric_value(t, other) is not None]
        points = [(metric_value(t, first), metric_value(t, other)) for t in trials]
        front = pareto_front(points, (first_direction, other_direction))
        first_panel = column == 1
        figure.add_scatter(
            name="COMPLETE trials", legendgroup="trials", showlegend=first_panel, row=1, col=column,
            x=[p[0] for p in points], y=[p[1] for p in points], text=[_label(t) for t in trials], mode="markers",
            marker={"color": "#9da5b4", "size": 9},
        )  # fmt: skip
        figure.add_scatter(
            name="Pareto front", legendgroup="front", showlegend=first_panel, row=1, col=column,
            x=[points[i][0] for i in front], y=[points[i][1] for i in front], text=[_label(trials[i]) for i in front],
            mode="lines+markers", line={"shape": "hv", "color": "#d62728"}, marker={"size": 11},
        )  # fmt: skip
        if selected is not None and selected.number in {t.number for t in trials}:
            figure.add_scatter(
                name=f"selected: {_label(selected)}", legendgroup="selected", showlegend=first_panel, row=1, col=column,
                x=[metric_value(selected, first)], y=[metric_value(selected, other)], text=[_label(selected)],
                mode="markers", marker={"symbol": "star", "size": 20, "color": "#ffbf00", "line": {"width": 1, "color": "black"}},
            )  # fmt: skip
        figure.update_xaxes(title_text=_axis_title(first, first_direction), row=1, col=column)
        figure.update_yaxes(title_text=_axis_title(other, other_direction), row=1, col=column)
    figure.update_layout(title=f"Pareto front: {first} against {', '.join(name for name, _ in others)}", height=480)
    return figure


def learning_curves_figure(study: optuna.Study, asha: AshaSettings | None, selected: FrozenTrial | None = None) -> go.Figure:
    """Every trial's first objective per epoch, ASHA's rungs as vertical lines, a cross where each PRUNED trial stopped."""
    objective, direction = objectives_of(study)[0]
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    figure = go.Figure()
    legend_titled = set()
    for trial in trials:
        epochs = sorted(trial.intermediate_values)
        colour, dash = STATE_STYLE.get(trial.state.name, STATE_STYLE["RUNNING"])
        is_selected = selected is not None and trial.number == selected.number
        figure.add_scatter(
            name=_label(trial), x=epochs, y=[trial.intermediate_values[e] for e in epochs], mode="lines+markers",
            line={"color": colour, "dash": dash, "width": 4 if is_selected else 1.5}, marker={"size": 5},
            legendgroup=trial.state.name,
            legendgrouptitle_text=None if trial.state.name in legend_titled else trial.state.name,
        )  # fmt: skip
        legend_titled.add(trial.state.name)
    stops = [(t, _last_value(t)) for t in trials if t.state == TrialState.PRUNED]
    if stops:
        figure.add_scatter(
            name="pruned here", x=[last[0] for _, last in stops], y=[last[1] for _, last in stops],
            text=[_label(t) for t, _ in stops], mode="markers",
            marker={"symbol": "x", "size": 13, "color": "black"}, legendgroup="pruned here",
        )  # fmt: skip
    for rung in asha.rungs if asha else []:
        figure.add_vline(x=rung, line_dash="dot", line_color="#555", annotation_text=f"rung {rung}", annotation_position="top")
    figure.update_layout(
        title=f"Learning curves: {objective} per epoch", xaxis_title="epoch", yaxis_title=_axis_title(objective, direction),
        height=560, legend={"groupclick": "toggleitem"},
        xaxis_dtick=_whole_number_step(max((max(t.intermediate_values) for t in trials), default=0)),
    )  # fmt: skip
    return figure


def compute_summary(study: optuna.Study, asha: AshaSettings | None) -> ComputeSummary:
    """Spent: train seconds and epochs of every trial. Saved: each PRUNED trial's untrained epochs at its own pace."""
    trials = study.get_trials(deepcopy=False)
    seconds = sum(float(t.user_attrs.get(ATTR_TRAIN_SECONDS, 0.0)) for t in trials)
    epochs = sum(int(t.user_attrs.get(ATTR_EPOCHS, 0)) for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    full = full_epochs(study, asha)
    saved_seconds = saved_epochs = None
    if full is not None:
        saved_seconds, saved_epochs = 0.0, 0
        for trial in pruned:
            trained = int(trial.user_attrs.get(ATTR_EPOCHS, 0))
            untrained = max(0, full - trained)
            saved_epochs += untrained
            if trained:
                saved_seconds += untrained * float(trial.user_attrs.get(ATTR_TRAIN_SECONDS, 0.0)) / trained
    return ComputeSummary(seconds, epochs, len(trials), len(pruned), saved_seconds, saved_epochs)


def compute_figure(summary: ComputeSummary) -> go.Figure:
    """Spent against saved by pruning, in train seconds and in epochs."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("train seconds", "epochs"))
    labels = ["spent", "saved by pruning"]
    colours = ["#1f77b4", "#2ca02c"]
    for column, values in enumerate([(summary.train_seconds, summary.saved_seconds), (summary.epochs, summary.saved_epochs)], 1):
        figure.add_bar(
            x=labels, y=[v or 0 for v in values], marker_color=colours, showlegend=False, row=1, col=column,
            text=[f"{v:.4g}" if v is not None else "n/a" for v in values], textposition="outside",
        )  # fmt: skip
    figure.update_layout(title="Compute spent and saved by ASHA", height=380)
    return figure


def _optuna_figure(plot, study: optuna.Study, objective: str) -> tuple[go.Figure, list[str]]:
    """One of Optuna's plots of the first objective, with Optuna's own warnings kept as notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = plot(study, target_name=objective)
    return figure, sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})


# -- tables and text ----------------------------------------------------------------------------


def _format(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _html_table(columns: list[str], rows: list[list], headers: list[str] | None = None, highlight: int | None = None) -> str:
    """A plain HTML table; the row at index ``highlight`` gets class ``selected``."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers or columns)
    body = "".join(
        ('<tr class="selected">' if i == highlight else "<tr>") + "".join(f"<td>{html.escape(_format(v))}</td>" for v in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def top_trials_columns(study: optuna.Study, columns: list[str]) -> list[str]:
    """The summary table's column order: who, objectives, improvement_over_constant, other metrics, epochs, time, params."""
    objectives = [name for name, _ in objectives_of(study)]
    metrics = {n[len(METRIC_PREFIX) :] for t in study.get_trials(deepcopy=False) for n in t.user_attrs if n.startswith(METRIC_PREFIX)}
    leading = ["trial", "baseline", "state"]
    scored = [c for c in dict.fromkeys([*objectives, FLYVIS_IMPROVEMENT]) if c in columns]
    other_metrics = sorted(c for c in columns if c in metrics and c not in scored)
    trailing = ["epochs", "train_s"]
    placed = set(leading + scored + other_metrics + trailing + ["fail_reason"])
    return leading + scored + other_metrics + trailing + [c for c in columns if c not in placed]


def top_trials_section(study: optuna.Study, selected: FrozenTrial | None) -> Section:
    table = trials_table(study)
    section = Section("top-trials", f"Top trials ({min(len(table), TOP_TRIALS)} of {len(table)} finished)")
    table = table.head(TOP_TRIALS)
    if table.empty:
        section.notes.append("No finished trials yet.")
        return section
    columns = top_trials_columns(study, list(table.columns))
    arrows = {name: f"{name} {'↓' if direction == 'minimize' else '↑'}" for name, direction in objectives_of(study)}
    headers = [arrows.get(c, "train seconds" if c == "train_s" else c) for c in columns]
    rows = [[record.get(c) for c in columns] for record in table.to_dict("records")]
    numbers = [record["trial"] for record in table.to_dict("records")]
    highlight = numbers.index(selected.number) if selected is not None and selected.number in numbers else None
    section.text = (
        "<p>COMPLETE trials first, best first by the first objective; then PRUNED trials by how far they got. "
        "↓ smaller is better, ↑ larger is better; the highlighted row is the selected trial.</p>"
        + _html_table(columns, rows, headers, highlight)
    )
    return section


def failed_trials_section(study: optuna.Study) -> Section:
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    section = Section("failed-trials", f"Failed trials ({len(failed)})")
    if not failed:
        section.text = "<p>No trial failed.</p>"
        return section
    rows = [
        [t.number, t.user_attrs.get(ATTR_BASELINE, ""), t.user_attrs.get(ATTR_EPOCHS), t.user_attrs.get(ATTR_REASON, "(no reason recorded)")]
        for t in failed
    ]
    section.text = _html_table(["trial", "baseline", "epochs", "fail_reason"], rows)
    return section


def compute_section(study: optuna.Study, asha: AshaSettings | None) -> Section:
    summary = compute_summary(study, asha)
    section = Section("compute", "Compute spent and saved by pruning", figure=compute_figure(summary))
    spent = (
        f"<li>spent: <b>{summary.train_seconds:.4g} s</b> of training over <b>{summary.epochs}</b> epochs in {summary.trials} trials</li>"
    )
    if summary.saved_seconds is None:
        saved = "<li>saved by pruning: unknown (the study records no ASHA settings and no COMPLETE trial)</li>"
    else:
        saved = (
            f"<li>saved by pruning: <b>{summary.saved_seconds:.4g} s</b> and <b>{summary.saved_epochs}</b> epochs that "
            f"{summary.pruned_trials} PRUNED trials did not train (each at its own mean seconds per epoch)</li>"
        )
    section.text = f"<ul>{spent}{saved}</ul>"
    return section


def _header(study: optuna.Study, asha: AshaSettings | None, selected: FrozenTrial | None, why_none: str) -> str:
    objectives = objectives_of(study)
    counts = {state.name: 0 for state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING)}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    listed = ", ".join(f"{n} {state}" for state, n in counts.items() if n or state in ("COMPLETE", "PRUNED", "FAIL"))
    objective_items = "".join(
        f"<li><b>{html.escape(name)}</b> ({direction}){' — drives ASHA and the sampler' if i == 0 else ''}</li>"
        for i, (name, direction) in enumerate(objectives)
    )
    if asha:
        schedule = (
            f"max_epochs {asha.max_epochs}, grace_period {asha.grace_period}, reduction_factor {asha.reduction_factor}: "
            f"rungs at epochs {', '.join(map(str, asha.rungs))}"
        )
    else:
        schedule = "not recorded by this study"
    if selected is not None:
        first = objectives[0][0]
        value = metric_value(selected, first)
        chosen = f"{html.escape(_label(selected))}, {html.escape(first)} = {_format(value if value is not None else selected.value)}"
    else:
        chosen = html.escape(why_none)
    facts = [
        ("created by", f"<code>{html.escape(study.user_attrs.get(STUDY_CREATED_BY) or 'unknown')}</code>"),
        ("search space", f"<code>{html.escape(str(study.user_attrs.get(STUDY_SPACE_PATH, 'unknown')))}</code>"),
        ("trials", f"{sum(counts.values())}: {listed}"),
        ("ASHA", schedule),
        ("selected trial", f"{chosen} (best COMPLETE trial by the first objective, as <code>tune best</code> picks it)"),
        ("written", datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
    ]
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    return (
        f"<h1>Study {html.escape(study.study_name)}</h1>"
        f'<section id="summary"><h2>Objectives</h2><ul>{objective_items}</ul><table class="facts">{rows}</table></section>'
    )


# -- the page -----------------------------------------------------------------------------------


def build_sections(study: optuna.Study) -> list[Section]:
    """Every part of the report after its header, in page order."""
    objective = objectives_of(study)[0][0]
    asha = asha_settings(study)
    selected, _ = _selected_trial(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sections = [top_trials_section(study, selected), failed_trials_section(study)]
    sections.append(Section("history", "Optimisation history", figure=history_figure(study)))
    pareto = Section("pareto", "Pareto front", figure=pareto_figure(study, selected))
    if pareto.figure is None:
        pareto.notes.append("The study has one objective: no Pareto front to draw.")
    sections.append(pareto)
    curves = Section("learning-curves", "Learning curves", figure=learning_curves_figure(study, asha, selected))
    if asha is None:
        curves.notes.append("The study records no ASHA settings, so no rungs are drawn.")
    sections.append(curves)
    searched = [t for t in complete if t.params]
    parallel = Section("parallel-coordinates", "Parallel coordinates")
    importances = Section("importances", "Parameter importances")
    if not searched:
        parallel.notes.append("Parallel coordinates need a COMPLETE trial with searched parameters.")
    else:
        parallel.figure, parallel.notes = _optuna_figure(optuna.visualization.plot_parallel_coordinate, study, objective)
    if len(searched) < 2:
        importances.notes.append(
            f"Parameter importances need at least 2 COMPLETE trials with searched parameters (this study has {len(searched)})."
        )
    else:
        importances.figure, importances.notes = _optuna_figure(optuna.visualization.plot_param_importances, study, objective)
    sections += [parallel, importances, compute_section(study, asha)]
    return sections


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; }
thead th { background: #f4f4f4; } table.facts th { background: #f8f8f8; width: 9rem; }
tr.selected td { background: #fff3c4; font-weight: 600; }
.note { color: #555; font-style: italic; background: #f7f7f7; padding: 0.4rem 0.7rem; border-left: 3px solid #bbb; }
.table-scroll { overflow-x: auto; }
"""


def render_page(study: optuna.Study, sections: list[Section]) -> str:
    """The whole HTML page: header, sections, every figure drawn by the inlined plotly.js."""
    asha = asha_settings(study)
    selected, why_none = _selected_trial(study)
    parts = [_header(study, asha, selected, why_none)]
    for section in sections:
        body = f'<div class="table-scroll">{section.text}</div>' if "<table" in section.text else section.text
        if section.figure is not None:
            height = section.figure.layout.height or 450
            body += section.figure.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"figure-{section.id}",
                default_height=f"{height}px", config={"displaylogo": False, "responsive": True},
            )  # fmt: skip
        body += "".join(f'<p class="note">{html.escape(note)}</p>' for note in section.notes)
        parts.append(f'<section id="{section.id}"><h2>{html.escape(section.title)}</h2>{body}</section>')
    title = html.escape(f"Study {study.study_name}: tune report")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


def _chromium_path() -> str | None:
    """$TUNE_CHROMIUM, else Debian's chromium if installed; None lets kaleido search ($BROWSER_PATH, PATH, its own download)."""
    chosen = os.environ.get(CHROMIUM_VARIABLE)
    if chosen or os.environ.get("BROWSER_PATH"):
        return chosen
    return DEFAULT_CHROMIUM if os.access(DEFAULT_CHROMIUM, os.X_OK) else None


def write_pngs(figures: dict[str, go.Figure], report: Path) -> list[Path]:
    """Each figure as ``REPORT-NAME.png`` beside the report, all rendered in one headless browser."""
    return write_figure_pngs({report.with_name(f"{report.stem}-{name}.png"): figure for name, figure in figures.items()})


def write_figure_pngs(figures: dict[Path, go.Figure]) -> list[Path]:
    """Each figure as a PNG at its path, all rendered in one headless browser."""
    try:
        import kaleido
        from kaleido.errors import ChromeNotFoundError
    except ImportError as exc:
        raise ReportError("--png needs kaleido: pip install 'kaleido>=1'") from exc
    paths = list(figures)
    options = {"mathjax": False}  # the figures use no LaTeX, and mathjax would be fetched from a CDN
    browser = _chromium_path()
    if browser:
        options["path"] = browser
    specs = [{"fig": figure, "path": path, "opts": {"format": "png", **PNG_SIZE}} for path, figure in figures.items()]
    try:
        kaleido.write_fig_from_object_sync(specs, kopts=options, cancel_on_error=True)
    except ChromeNotFoundError as exc:
        where = f"${CHROMIUM_VARIABLE}={browser}" if os.environ.get(CHROMIUM_VARIABLE) else f"{DEFAULT_CHROMIUM} or on PATH"
        raise ReportError(
            f"--png needs Chrome or Chromium and none was found at {where}: install one "
            f"(apt-get install chromium, or `kaleido_get_chrome`) or set {CHROMIUM_VARIABLE} to its executable"
        ) from exc
    return paths


def write_report(study: optuna.Study, output_path: str | Path, png: bool = False) -> list[Path]:
    """Write the report (atomically) and, with ``png``, each figure as a PNG beside it; return the written paths."""
    path = checked_output(output_path)
    sections = build_sections(study)
    # PNGs first: without a browser for them, nothing is written and the error says what to install.
    pngs = write_pngs({s.id: s.figure for s in sections if s.figure is not None}, path) if png else []
    write_atomically(path, render_page(study, sections))
    return [path, *pngs]
