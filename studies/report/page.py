"""``tune report STUDY``: one self-contained HTML page of a study, read from the Optuna storage only.

plotly.js is inlined once in the page's head, so the report opens offline and can be mailed as one
file. The page holds, in order: what the study is (objectives with directions, the command that
created it, trials by state, ASHA's settings, the selected trial), the top trials as a table, the
failed trials with their reasons, the optimisation history with the named baselines, the Pareto
front of the first objective against each other one (a Pareto study's own front, the selected trial
starred, trials outside the study's constraints greyed), every trial's learning curve with ASHA's
rungs and where each pruned trial stopped, parallel coordinates and parameter importances
(Optuna's own plots), and the compute spent and saved by pruning. ``png=True`` also writes each
figure as a PNG beside the page, rendered by kaleido in a headless Chrome or Chromium.

Example::

    from studies.report import build_sections, write_report
    from studies.store.catalog import load_study

    study = load_study("tiny", "sqlite:///tune_runs/tune.db")
    print([section.id for section in build_sections(study)])
    print(write_report(study, "tune_runs/tiny-report.html"))
"""

from __future__ import annotations

import datetime
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.offline import get_plotlyjs

from studies.files import checked_output, write_atomically
from studies.records import (
    ATTR_BASELINE,
    ATTR_EPOCHS,
    ATTR_REASON,
    METRIC_PREFIX,
    PRUNED_BY_ASHA,
    PRUNED_BY_GATE,
    PRUNED_BY_REPEAT,
    STUDY_CREATED_BY,
    STUDY_SPACE_PATH,
)
from studies.report.figures import (
    compute_figure,
    history_figure,
    label,
    learning_curves_figure,
    optuna_figure,
    pareto_figure,
)
from studies.report.png import write_figure_pngs
from studies.space import AshaSettings
from studies.store.catalog import (
    FINISHED,
    SelectionError,
    asha_settings,
    compute_summary,
    constraints_of,
    described_constraints,
    headlines_of,
    is_pareto,
    metric_value,
    objectives_of,
    select_trial,
    trials_table,
)
from studies.store.storage import redacted

TOP_TRIALS = 15
STOPPED_BY = {  # the rules of a PRUNED trial's pruned_by, as the compute section names them
    PRUNED_BY_ASHA: "ASHA, outside the best at a rung",
    PRUNED_BY_REPEAT: "bohb-gated, its first epochs an earlier trial's exactly",
    PRUNED_BY_GATE: "bohb-gated, at the last rung too far behind the best trial that trained every epoch to pass it",
}


@dataclass
class Section:
    """One part of the page: a heading, an optional figure, and HTML text (numbers, tables, notes)."""

    id: str
    title: str
    figure: go.Figure | None = None
    text: str = ""
    notes: list[str] = field(default_factory=list)


def _selected_trial(study: optuna.Study) -> tuple[FrozenTrial | None, str]:
    """The trial ``tune best`` and ``tune export`` pick by default, or why there is none."""
    try:
        return select_trial(study), ""
    except SelectionError as exc:
        return None, str(exc)


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
    """The summary table's column order: who, objectives, the space's headline metrics, other metrics, epochs, time, params."""
    objectives = [name for name, _ in objectives_of(study)]
    metrics = {n[len(METRIC_PREFIX) :] for t in study.get_trials(deepcopy=False) for n in t.user_attrs if n.startswith(METRIC_PREFIX)}
    leading = ["trial", "baseline", "state"] + (["feasible"] if "feasible" in columns else [])  # in a constrained study
    scored = [c for c in dict.fromkeys([*objectives, *headlines_of(study)]) if c in columns]
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
        "<p>COMPLETE trials first, best first by the first objective (in a constrained study, those within the "
        "constraints first: feasible True); then PRUNED trials by how far they got. "
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
    stopped = "".join(
        f"<li>{html.escape(STOPPED_BY.get(rule, rule))}: <b>{count}</b> trials"
        + (f", {untrained} epochs not trained" if untrained is not None else "")
        + "</li>"
        for rule, (count, untrained) in summary.stopped_by.items()
    )
    section.text = f"<ul>{spent}{saved}</ul>" + (f"<p>Who stopped the PRUNED trials:</p><ul>{stopped}</ul>" if stopped else "")
    return section


def _header(study: optuna.Study, asha: AshaSettings | None, selected: FrozenTrial | None, why_none: str) -> str:
    objectives = objectives_of(study)
    counts = {state.name: 0 for state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING)}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    listed = ", ".join(f"{n} {state}" for state, n in counts.items() if n or state in ("COMPLETE", "PRUNED", "FAIL"))
    jointly = " — drives ASHA; the sampler searches every objective jointly"
    first_drives = jointly if is_pareto(study) else " — drives ASHA and the sampler"
    objective_items = "".join(
        f"<li><b>{html.escape(name)}</b> ({direction}){first_drives if i == 0 else ''}</li>"
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
        shown = value if value is not None else selected.values[0]
        chosen = f"{html.escape(label(selected))}, {html.escape(first)} = {_format(shown)}"
    else:
        chosen = html.escape(why_none)
    constraints = constraints_of(study)
    within = " within the constraints" if constraints else ""
    facts = [
        # redacted: a study stored before commands were redacted may hold a storage password
        ("created by", f"<code>{html.escape(redacted(study.user_attrs.get(STUDY_CREATED_BY) or 'unknown'))}</code>"),
        ("search space", f"<code>{html.escape(str(study.user_attrs.get(STUDY_SPACE_PATH, 'unknown')))}</code>"),
        ("trials", f"{sum(counts.values())}: {listed}"),
        ("ASHA", schedule),
        ("constraints", html.escape(described_constraints(constraints) or "none")),
        ("selected trial", f"{chosen} (best COMPLETE trial by the first objective{within}, as <code>tune best</code> picks it)"),
        ("written", datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
    ]
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    return (
        f"<h1>Study {html.escape(study.study_name)}</h1>"
        f'<section id="summary"><h2>Objectives</h2><ul>{objective_items}</ul><table class="facts">{rows}</table></section>'
    )


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
        parallel.figure, parallel.notes = optuna_figure(optuna.visualization.plot_parallel_coordinate, study, objective)
    if len(searched) < 2:
        importances.notes.append(
            f"Parameter importances need at least 2 COMPLETE trials with searched parameters (this study has {len(searched)})."
        )
    else:
        importances.figure, importances.notes = optuna_figure(optuna.visualization.plot_param_importances, study, objective)
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


def write_pngs(figures: dict[str, go.Figure], report: Path) -> list[Path]:
    """Each figure as ``REPORT-NAME.png`` beside the report, all rendered in one headless browser."""
    return write_figure_pngs({report.with_name(f"{report.stem}-{name}.png"): figure for name, figure in figures.items()})


def write_report(study: optuna.Study, output_path: str | Path, png: bool = False) -> list[Path]:
    """Write the report (atomically) and, with ``png``, each figure as a PNG beside it; return the written paths."""
    path = checked_output(output_path)
    sections = build_sections(study)
    # PNGs first: without a browser for them, nothing is written and the error says what to install.
    pngs = write_pngs({s.id: s.figure for s in sections if s.figure is not None}, path) if png else []
    write_atomically(path, render_page(study, sections))
    return [path, *pngs]
