"""The report's figures, one function each, drawn from a study's stored trials with plotly.

A new figure is one function here that takes the study (and what it needs of the study's settings)
and returns a ``plotly.graph_objects.Figure``; :func:`studies.report.page.build_sections` places it.
"""

from __future__ import annotations

import math
import warnings

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from studies.records import ATTR_BASELINE
from studies.space import AshaSettings
from studies.store.catalog import (
    FINISHED,
    ComputeSummary,
    epoch_values,
    feasible,
    is_pareto,
    metric_value,
    objectives_of,
    pareto_trials,
)

OUTSIDE_COLOUR = "#c7c7c7"  # a trial outside the study's constraints: greyed, marked with a cross
STATE_STYLE = {  # colour and dash of a trial's learning curve by how it ended
    "COMPLETE": ("#1f77b4", "solid"),
    "PRUNED": ("#ff7f0e", "dash"),
    "FAIL": ("#d62728", "dot"),
    "RUNNING": ("#7f7f7f", "dot"),
}


def label(trial: FrozenTrial) -> str:
    baseline = trial.user_attrs.get(ATTR_BASELINE)
    return f"trial {trial.number}" + (f" ({baseline})" if baseline else "")


def _last_value(trial: FrozenTrial) -> tuple[int, float] | None:
    """The epoch a trial last reported and its first-objective value there."""
    curve = epoch_values(trial)
    if not curve:
        return None
    epoch = max(curve)
    return epoch, curve[epoch]


def _whole_number_step(largest: int) -> int:
    """A tick step that labels trials and epochs by whole numbers, about ten ticks at most."""
    return max(1, math.ceil(largest / 10))


def _axis_title(name: str, direction: str) -> str:
    return f"{name} ({direction})"


def history_figure(study: optuna.Study) -> go.Figure:
    """First objective by trial number: COMPLETE values (those outside the study's constraints apart), where PRUNED
    trials stopped, the best so far within the constraints, the baselines."""
    objective, direction = objectives_of(study)[0]
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]  # values[0]: the first objective's, always
    outside = [t for t in complete if not feasible(t)]
    pruned = [(t, _last_value(t)) for t in trials if t.state == TrialState.PRUNED and _last_value(t)]
    figure = go.Figure()
    figure.add_scatter(
        name="COMPLETE", x=[t.number for t in complete if feasible(t)], y=[t.values[0] for t in complete if feasible(t)],
        mode="markers", marker={"color": STATE_STYLE["COMPLETE"][0], "size": 9}, text=[label(t) for t in complete if feasible(t)],
    )  # fmt: skip
    if outside:
        figure.add_scatter(
            name="COMPLETE, outside the constraints", x=[t.number for t in outside], y=[t.values[0] for t in outside],
            mode="markers", marker={"color": OUTSIDE_COLOUR, "size": 9, "symbol": "x"}, text=[label(t) for t in outside],
        )  # fmt: skip
    if pruned:
        figure.add_scatter(
            name="PRUNED (value where it stopped)", x=[t.number for t, _ in pruned], y=[last[1] for _, last in pruned],
            mode="markers", marker={"color": STATE_STYLE["PRUNED"][0], "size": 8, "symbol": "circle-open"},
            text=[f"{label(t)} stopped at epoch {last[0]}" for t, last in pruned],
        )  # fmt: skip
    within = [t for t in complete if feasible(t)]
    if within:
        best, best_so_far = [], None
        for trial in within:
            value = trial.values[0]
            better = best_so_far is None or (value < best_so_far if direction == "minimize" else value > best_so_far)
            best_so_far = value if better else best_so_far
            best.append(best_so_far)
        figure.add_scatter(
            name="best so far", x=[t.number for t in within], y=best, mode="lines",
            line={"shape": "hv", "color": "#2ca02c"},
        )  # fmt: skip
    values = {t.number: t.values[0] for t in complete} | {t.number: last[1] for t, last in pruned}
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
    """The first objective against each other objective (one panel each), over COMPLETE trials' final metrics.

    The front: in a Pareto study, the study's own (:func:`studies.store.catalog.pareto_trials`, over every objective);
    otherwise each panel's two objectives' own. Trials outside the study's constraints are drawn apart, never on a front."""
    objectives = objectives_of(study)
    if len(objectives) < 2:
        return None
    (first, first_direction), others = objectives[0], objectives[1:]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    studys_front = [t.number for t in pareto_trials(study, complete)] if is_pareto(study) else None
    figure = make_subplots(rows=1, cols=len(others), horizontal_spacing=0.08)
    for column, (other, other_direction) in enumerate(others, start=1):
        recorded = [t for t in complete if metric_value(t, first) is not None and metric_value(t, other) is not None]
        trials = [t for t in recorded if feasible(t)]
        outside = [t for t in recorded if not feasible(t)]
        points = [(metric_value(t, first), metric_value(t, other)) for t in trials]
        if studys_front is None:
            front = pareto_front(points, (first_direction, other_direction))
        else:  # already best first by the first objective: along the panel's x axis
            front = [i for number in studys_front for i, t in enumerate(trials) if t.number == number]
        first_panel = column == 1
        figure.add_scatter(
            name="COMPLETE trials", legendgroup="trials", showlegend=first_panel, row=1, col=column,
            x=[p[0] for p in points], y=[p[1] for p in points], text=[label(t) for t in trials], mode="markers",
            marker={"color": "#9da5b4", "size": 9},
        )  # fmt: skip
        if outside:
            figure.add_scatter(
                name="outside the constraints", legendgroup="outside", showlegend=first_panel, row=1, col=column,
                x=[metric_value(t, first) for t in outside], y=[metric_value(t, other) for t in outside],
                text=[label(t) for t in outside], mode="markers", marker={"color": OUTSIDE_COLOUR, "size": 9, "symbol": "x"},
            )  # fmt: skip
        # A front over more than these two objectives is no staircase in their plane: its trials are marked, not joined.
        joined = studys_front is None or len(objectives) == 2
        figure.add_scatter(
            name="Pareto front", legendgroup="front", showlegend=first_panel, row=1, col=column,
            x=[points[i][0] for i in front], y=[points[i][1] for i in front], text=[label(trials[i]) for i in front],
            mode="lines+markers" if joined else "markers", line={"shape": "hv", "color": "#d62728"}, marker={"size": 11},
        )  # fmt: skip
        if selected is not None and selected.number in {t.number for t in trials}:
            figure.add_scatter(
                name=f"selected: {label(selected)}", legendgroup="selected", showlegend=first_panel, row=1, col=column,
                x=[metric_value(selected, first)], y=[metric_value(selected, other)], text=[label(selected)],
                mode="markers", marker={"symbol": "star", "size": 20, "color": "#ffbf00", "line": {"width": 1, "color": "black"}},
            )  # fmt: skip
        figure.update_xaxes(title_text=_axis_title(first, first_direction), row=1, col=column)
        figure.update_yaxes(title_text=_axis_title(other, other_direction), row=1, col=column)
    whose = "the study's front over every objective" if studys_front is not None else "each pair's front"
    against = ", ".join(name for name, _ in others)
    figure.update_layout(title=f"Pareto front ({whose}): {first} against {against}", height=480)
    return figure


def learning_curves_figure(study: optuna.Study, asha: AshaSettings | None, selected: FrozenTrial | None = None) -> go.Figure:
    """Every trial's first objective per epoch, ASHA's rungs as vertical lines, a cross where each PRUNED trial stopped."""
    objective, direction = objectives_of(study)[0]
    curves = {t.number: curve for t in study.get_trials(deepcopy=False) if (curve := epoch_values(t))}
    trials = [t for t in study.get_trials(deepcopy=False) if t.number in curves]
    figure = go.Figure()
    legend_titled = set()
    for trial in trials:
        epochs = sorted(curves[trial.number])
        colour, dash = STATE_STYLE.get(trial.state.name, STATE_STYLE["RUNNING"])
        is_selected = selected is not None and trial.number == selected.number
        figure.add_scatter(
            name=label(trial), x=epochs, y=[curves[trial.number][e] for e in epochs], mode="lines+markers",
            line={"color": colour, "dash": dash, "width": 4 if is_selected else 1.5}, marker={"size": 5},
            legendgroup=trial.state.name,
            legendgrouptitle_text=None if trial.state.name in legend_titled else trial.state.name,
        )  # fmt: skip
        legend_titled.add(trial.state.name)
    stops = [(t, _last_value(t)) for t in trials if t.state == TrialState.PRUNED]
    if stops:
        figure.add_scatter(
            name="pruned here", x=[last[0] for _, last in stops], y=[last[1] for _, last in stops],
            text=[label(t) for t, _ in stops], mode="markers",
            marker={"symbol": "x", "size": 13, "color": "black"}, legendgroup="pruned here",
        )  # fmt: skip
    for rung in asha.rungs if asha else []:
        figure.add_vline(x=rung, line_dash="dot", line_color="#555", annotation_text=f"rung {rung}", annotation_position="top")
    figure.update_layout(
        title=f"Learning curves: {objective} per epoch", xaxis_title="epoch", yaxis_title=_axis_title(objective, direction),
        height=560, legend={"groupclick": "toggleitem"},
        xaxis_dtick=_whole_number_step(max((max(curve) for curve in curves.values()), default=0)),
    )  # fmt: skip
    return figure


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


def optuna_figure(plot, study: optuna.Study, objective: str) -> tuple[go.Figure, list[str]]:
    """One of Optuna's plots of the first objective, with Optuna's own warnings kept as notes."""
    first = (lambda trial: trial.values[0]) if is_pareto(study) else None  # Optuna plots one target of a Pareto study
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = plot(study, target=first, target_name=objective)
    return figure, sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
