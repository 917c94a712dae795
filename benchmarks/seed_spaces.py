"""The researchers' own problems: each log's space at its default budget, against the configs its log documents.

Every space in ``search_spaces/`` (one per log in seeds/) is run as ``tune run search_spaces/SPACE.py --seed S`` runs it:
the default search at the space's default budget (trials, epochs, ASHA), and beside it the same study with
``--sampler random`` (random + ASHA, the reference the default must never lose to). Every study runs the log's documented
configs (the space's BASELINES) first, so each holds its own measurement of them. Flyvis also runs the log's own grid
(:data:`LOG_GRIDS`), the sweep its researcher ran.

A study is scored on its first objective, within its constraints, as ``tune best`` picks:

- **best found** and **best documented**: the best COMPLETE trial, and the best COMPLETE documented config (a documented
  config that ASHA stopped is not counted: it was behind others where it stopped);
- **beaten after**: the epochs the study had trained, counting each trial when it finished, when a trial that is not a
  documented config first finished better than the best documented one; "-" when none did;
- **documented configs' epochs**: what training each documented config to the space's epochs costs, the log's own runs
  at this scale; the study spends some of its epochs on them too.

Studies train real models on the simulated data of each trainer, two trials at a time on a 2-core machine, so a seed's
result also depends on which trial finishes first: two runs of one seed can differ.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path

from optuna.trial import TrialState

TITLE = "The researchers' own problems: each log's space at its default budget, against its documented configs"
SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
SEEDS = (0, 1)
SMOKE_SEEDS = (0,)
SMOKE_SPACES = ("abag",)  # its trainer's epoch is the shortest
SMOKE_TRIALS, SMOKE_EPOCHS = 3, 2
METHODS = {"default": "`tune run` (default search)", "random": "`tune run --sampler random` (random + ASHA)"}
# seeds/003_47ed67130df93812.txt, "Sweep batch size and learning rate with batch norm turned off": its batch x lr grid.
LOG_GRIDS = {
    "flyvis": {
        "grid_knobs": ["training.batch_size", "training.learning_rate"],
        "grid_base": "use_batch_norm false",
        "label": "`--sampler grid` (the log's grid)",
        "command": "tune run search_spaces/flyvis.py --sampler grid --grid-knobs training.batch_size,training.learning_rate "
        '--grid-base "use_batch_norm false"',
    },
}


def space_names(smoke: bool) -> list[str]:
    return list(SMOKE_SPACES) if smoke else sorted(p.stem for p in SPACES.glob("*.py") if not p.stem.startswith("_"))


def run_search(name: str, method: str, seed: int, folder: Path, smoke: bool):
    """One study of space ``name`` as ``tune run`` runs it with ``method``; the study and its wall time."""
    from studies.driver.run import RunOptions, run_study
    from studies.space import load_space

    grid = LOG_GRIDS.get(name, {}) if method == "grid" else {}
    options = RunOptions(
        study=f"{name}-{method}-seed{seed}",
        storage=f"sqlite:///{folder / 'studies.db'}",
        sampler=None if method == "default" else method,
        seed=seed,
        trials=SMOKE_TRIALS if smoke else None,
        max_epochs=SMOKE_EPOCHS if smoke else None,
        grid_knobs=grid.get("grid_knobs"),
        grid_base=grid.get("grid_base"),
    )
    started = time.perf_counter()
    study = run_study(load_space(SPACES / f"{name}.py"), options)
    return study, time.perf_counter() - started


def scored(study) -> dict:
    """What the study found against its documented configs (see the module's text)."""
    from studies.records import ATTR_BASELINE, ATTR_EPOCHS
    from studies.store.catalog import asha_settings, feasible, metric_value, objectives_of

    objective, direction = objectives_of(study)[0]
    sign = 1 if direction == "minimize" else -1
    trials = study.get_trials(deepcopy=False)
    finished = sorted((t for t in trials if t.state.is_finished()), key=lambda t: t.datetime_complete)
    complete = [t for t in finished if t.state == TrialState.COMPLETE and feasible(t) and metric_value(t, objective) is not None]

    def best(candidates):
        return min(candidates, key=lambda t: sign * metric_value(t, objective), default=None)

    found, documented = best(complete), best([t for t in complete if t.user_attrs.get(ATTR_BASELINE)])
    numbers = {t.number for t in complete}
    bar = None if documented is None else sign * metric_value(documented, objective)
    # The anytime curve of the plot, (epochs trained when it finished, best COMPLETE value so far), and where it first went
    # past the best documented config with a config of the study's own.
    curve, beaten_after, spent = [], None, 0
    for trial in finished:
        spent += trial.user_attrs.get(ATTR_EPOCHS, 0)
        if trial.number not in numbers:
            continue
        value = metric_value(trial, objective)
        if not curve or sign * value < sign * curve[-1][1]:
            curve.append([spent, value])
        if beaten_after is None and bar is not None and sign * value < bar and not trial.user_attrs.get(ATTR_BASELINE):
            beaten_after = spent
    baselines = [t for t in trials if t.user_attrs.get(ATTR_BASELINE)]
    return {
        "objective": objective,
        "direction": direction,
        "best": None if found is None else metric_value(found, objective),
        "best_trial": None if found is None else found.number,
        "best_is_documented": bool(found is not None and found.user_attrs.get(ATTR_BASELINE)),
        "best_documented": None if documented is None else metric_value(documented, objective),
        "best_documented_name": None if documented is None else documented.user_attrs[ATTR_BASELINE],
        "documented_stopped": sum(t.state != TrialState.COMPLETE for t in baselines),
        "beaten_after_epochs": beaten_after,
        "epochs": sum(t.user_attrs.get(ATTR_EPOCHS, 0) for t in trials),
        "documented_epochs": len(baselines) * asha_settings(study).max_epochs,
        "trials": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "fail": sum(t.state == TrialState.FAIL for t in trials),
        "curve": curve,
    }


def measure(smoke: bool = False) -> list[dict]:
    import ray

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TUNE_RAY_STORAGE"] = str(Path(folder) / "ray")
        for name in space_names(smoke):
            runs = [(method, seed) for seed in (SMOKE_SEEDS if smoke else SEEDS) for method in METHODS]
            if name in LOG_GRIDS and not smoke:  # a grid's trials are its grid points: no smoke size
                runs.append(("grid", SEEDS[0]))
            for method, seed in runs:
                study, wall = run_search(name, method, seed, Path(folder), smoke)
                rows.append({"space": name, "method": method, "seed": seed, "wall_seconds": round(wall, 1), **scored(study)})
                print(f"benchmarks: seed_spaces: {name} {method} seed {seed}: {_number(rows[-1]['best'])}", flush=True)
    if ray.is_initialized():
        ray.shutdown()
    return rows


def _number(value, digits: str = ".4f") -> str:
    return "-" if value is None else format(value, digits)


def method_label(row: dict) -> str:
    return LOG_GRIDS[row["space"]]["label"] if row["method"] == "grid" else METHODS[row["method"]]


def _documented(row: dict) -> str:
    if row["documented_epochs"] == 0:
        return "- (the space documents none)"
    if row["best_documented"] is None:  # ASHA stopped every one (or it failed): the study holds no full-epoch value of any
        return "- (none finished)"
    stopped = f"; {row['documented_stopped']} stopped" if row["documented_stopped"] else ""
    return f"{_number(row['best_documented'])} ({row['best_documented_name']}{stopped})"


def table(rows: list[dict]) -> str:
    grids = "; ".join(f"{name}'s: `{grid['command']}`" for name, grid in LOG_GRIDS.items())
    lines = [
        "Each space's first objective. Best documented: the best documented config that finished in that "
        "study, and how many documented configs did not finish (ASHA may stop any). Beaten after: epochs the study had trained (each trial counted when it finished) when a "
        "new config first finished better than the best documented. Documented configs' epochs: each documented config "
        f"trained to the space's epochs, the log's own runs at this scale. The log's grid: {grids}.",
        "",
        "| space | objective | search | seed | best found | best documented | beaten after, epochs | epochs in all "
        "| documented configs' epochs | trials (COMPLETE, FAIL) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        found = _number(row["best"]) + (" (documented)" if row["best_is_documented"] else f" (trial {row['best_trial']})")
        beaten = "-" if row["beaten_after_epochs"] is None else row["beaten_after_epochs"]
        lines.append(
            f"| {row['space']} | {row['objective']} ({row['direction']}) | {method_label(row)} | {row['seed']} | {found} | {_documented(row)} "
            f"| {beaten} | {row['epochs']} | {row['documented_epochs']} | {row['trials']} ({row['complete']}, {row['fail']}) |"
        )
    lines += [
        "",
        "Per space and search: in how many seeds a new config finished better than the best documented one, and in how "
        "many of those within the documented configs' epochs.",
        "",
        "| space | search | seeds | beat the best documented | within its epochs | no documented config finished "
        "| median best found |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["space"] for row in rows):
        for method in dict.fromkeys(row["method"] for row in rows if row["space"] == name):
            runs = [row for row in rows if row["space"] == name and row["method"] == method]
            beaten = [row for row in runs if row["beaten_after_epochs"] is not None]
            within = [row for row in beaten if row["beaten_after_epochs"] <= row["documented_epochs"]]
            unfinished = sum(row["best_documented"] is None and row["documented_epochs"] > 0 for row in runs)
            found = [row["best"] for row in runs if row["best"] is not None]
            lines.append(
                f"| {name} | {method_label(runs[0])} | {len(runs)} | {len(beaten)} | {len(within)} | {unfinished} "
                f"| {_number(statistics.median(found) if found else None)} |"
            )
    return "\n".join(lines)


def plots(rows: list[dict]) -> dict:
    from plotly.subplots import make_subplots

    names = list(dict.fromkeys(row["space"] for row in rows))
    columns = min(3, len(names))  # five spaces in two rows: each panel readable in one landscape PNG
    figure = make_subplots(
        rows=math.ceil(len(names) / columns), cols=columns, subplot_titles=names, horizontal_spacing=0.08, vertical_spacing=0.2
    )
    colours = {"default": "#1f77b4", "random": "#ff7f0e", "grid": "#2ca02c"}
    in_legend = set()
    for index, name in enumerate(names):
        at = {"row": index // columns + 1, "col": index % columns + 1}
        runs = [row for row in rows if row["space"] == name and row["curve"]]
        for row in runs:
            values = [p[1] for p in row["curve"]] + [row["curve"][-1][1]]
            figure.add_scatter(
                x=[p[0] for p in row["curve"]] + [row["epochs"]], y=values, mode="lines",
                line={"shape": "hv", "color": colours[row["method"]]}, legendgroup=row["method"], name=row["method"],
                showlegend=row["method"] not in in_legend, hovertext=f"{row['method']}, seed {row['seed']}", **at,
            )  # fmt: skip
            in_legend.add(row["method"])
        documented = [row["best_documented"] for row in runs if row["best_documented"] is not None]
        if documented:
            sign = 1 if runs[0]["direction"] == "minimize" else -1
            bar = sign * min(sign * value for value in documented)
            figure.add_hline(y=bar, line={"dash": "dot", "color": "#7f7f7f"}, **at)
            # The region about the documented config's value: the first, far worse, finished trials would flatten it.
            best = sign * min(sign * row["best"] for row in runs)
            margin = max(abs(bar - best), 0.02 * abs(bar)) * 0.6
            figure.update_yaxes(range=sorted([best - sign * margin * 0.5, bar + sign * margin]), **at)
        if runs:
            figure.add_vline(x=runs[0]["documented_epochs"], line={"dash": "dash", "color": "#9467bd"}, **at)
            figure.update_yaxes(title_text=runs[0]["objective"], title_standoff=4, **at)
    figure.update_xaxes(title_text="epochs trained", title_standoff=2)
    figure.update_layout(
        title="Best finished value against epochs trained (dotted: best documented config; dashed: documented configs' epochs)",
        legend={"orientation": "h", "y": -0.12},
    )  # fmt: skip
    return {"anytime": figure}


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    main(["--only", "seed_spaces", *sys.argv[1:]])
