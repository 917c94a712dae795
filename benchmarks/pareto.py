"""Vesuvius: searching the trade-off, against searching the loss and filtering afterwards.

The Vesuvius log chose its configs by class balance as much as by loss, and wanted the predicted foreground
within 30-70 % (seeds/004_b3e37686342072be.txt, "Class Distribution (PRIMARY GOAL)"). Two studies of
``search_spaces/vesuvius.py`` at its default budget (trials, epochs, ASHA), with the same seed:

- ``default``: ``tune run search_spaces/vesuvius.py``: the default search (bohb) on val_loss, the range applied
  afterwards (``tune best --where predicted_fg_fraction=0.3..0.7``);
- ``pareto``: ``tune run search_spaces/vesuvius.py --pareto --constrain predicted_fg_fraction=0.3..0.7``: both
  objectives searched jointly (TPE's multi-objective mode), the range fed to the sampler.

Each is scored on its feasible COMPLETE trials (predicted foreground within the range): the best val_loss, and
the hypervolume of their front in (val_loss, class_balance_error) by Optuna's own computation, against one
reference point for every study (each objective's worst value on any front, x1.1, as Optuna's TPE sets its
own). ASHA lets the two searches train different numbers of epochs for the same trials, so each is scored twice:
on its whole run, and on the trials it had finished when it had trained as many epochs as the other study of
its seed trained in all ("equal epochs"). Trials by state and wall time say what each spent.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

from optuna.trial import TrialState

TITLE = "Vesuvius: a Pareto search within the log's foreground range, against the default search and --where"
SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "vesuvius.py"
FOREGROUND = ("predicted_fg_fraction", 0.3, 0.7)  # seeds/004_b3e37686342072be.txt, "Class Distribution (PRIMARY GOAL)"
SEEDS = (0, 1)
SMOKE_SEEDS = (0,)
SEARCHES = {"default": "`tune run` (bohb on val_loss), then `--where`", "pareto": "`tune run --pareto --constrain`"}
SMOKE_TRIALS, SMOKE_EPOCHS = 3, 2
SMOKE_DATA = {"data.num_volumes": 5, "patch_size": [16, 16, 16]}  # seconds an epoch, not the space's second and more


def run_search(search: str, seed: int, folder: Path, smoke: bool):
    """One study of the Vesuvius space, searched as ``search`` says; the study and its wall time."""
    from studies.driver.run import RunOptions, run_study
    from studies.space import load_space

    space = load_space(SPACE)
    if smoke:
        space = dataclasses.replace(space, fixed={**space.fixed, **SMOKE_DATA})
    metric, low, high = FOREGROUND
    options = RunOptions(
        study=f"vesuvius-{search}-seed{seed}",
        storage=f"sqlite:///{folder / 'studies.db'}",
        seed=seed,
        trials=SMOKE_TRIALS if smoke else None,
        max_epochs=SMOKE_EPOCHS if smoke else None,
        pareto=search == "pareto",
        constraints={metric: (low, high)} if search == "pareto" else None,
    )
    started = time.perf_counter()
    study = run_study(space, options)
    return study, time.perf_counter() - started


def finished_by(study, epochs: float) -> list:
    """The study's finished trials, in the order they finished, up to the one that brought its epochs trained past ``epochs``."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    kept, spent = [], 0
    for trial in sorted(finished, key=lambda t: t.datetime_complete):
        spent += trial.user_attrs.get("epochs", 0)
        if spent > epochs:
            break
        kept.append(trial)
    return kept


def found(study, trials: list) -> dict:
    """What ``trials`` of the study found: its feasible COMPLETE trials (what `--where` keeps), their best val_loss and front."""
    from studies.store.catalog import Bound, metric_value, objectives_of, pareto_trials

    within = Bound(*FOREGROUND)
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and within.holds(t)]
    return {
        "epochs": sum(t.user_attrs.get("epochs", 0) for t in trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "feasible_complete": len(feasible),
        "best_feasible_val_loss": min((metric_value(t, "val_loss") for t in feasible), default=None),
        "front": [[metric_value(t, name) for name, _ in objectives_of(study)] for t in pareto_trials(study, feasible)],
        "front_trials": [t.number for t in pareto_trials(study, feasible)],
    }


def measure(smoke: bool = False) -> list[dict]:
    import ray

    from studies.store.catalog import front_hypervolume

    rows, studies = [], []
    with tempfile.TemporaryDirectory() as folder:
        os.environ["TUNE_RAY_STORAGE"] = str(Path(folder) / "ray")
        for seed in SMOKE_SEEDS if smoke else SEEDS:
            pair = []
            for search in SEARCHES:
                study, wall = run_search(search, seed, Path(folder), smoke)
                trials = finished_by(study, float("inf"))
                states = {
                    state.name.lower(): sum(t.state == state for t in trials) for state in (TrialState.PRUNED, TrialState.FAIL)
                }
                pair.append(
                    {"search": search, "seed": seed, "wall_seconds": round(wall, 1), **states, "whole": found(study, trials)}
                )
                studies.append(study)
            equal = min(row["whole"]["epochs"] for row in pair)  # what both studies of this seed had trained at some point
            for row, study in zip(pair, studies[-len(pair) :]):
                row["equal"] = found(study, finished_by(study, equal))
            rows += pair
        fronts = [point for row in rows for point in row["whole"]["front"]]
        reference = [1.1 * max(point[i] for point in fronts) for i in range(2)] if fronts else None  # both minimised
        for row, study in zip(rows, studies):
            row["reference"] = reference
            for part in ("whole", "equal"):
                numbers = set(row[part].pop("front_trials"))
                kept = [t for t in study.get_trials(deepcopy=False) if t.number in numbers]
                row[part]["hypervolume"] = None if reference is None else front_hypervolume(study, reference, kept)
    if ray.is_initialized():
        ray.shutdown()
    return rows


def _number(value, digits: str = ".4g") -> str:
    return "-" if value is None else format(value, digits)


def _found(part: dict) -> str:
    return (
        f"{part['epochs']} | {_number(part['hypervolume'])} | {_number(part['best_feasible_val_loss'])} "
        f"| {len(part['front'])} | {part['feasible_complete']} / {part['complete']}"
    )


def table(rows: list[dict]) -> str:
    reference = next((row["reference"] for row in rows if row["reference"]), None)
    lines = [
        f"search_spaces/vesuvius.py at its default budget; feasible: COMPLETE with {FOREGROUND[0]} in "
        f'[{FOREGROUND[1]}, {FOREGROUND[2]}] (the log\'s "Class Distribution (PRIMARY GOAL)"). Hypervolume of the feasible '
        f"front in (val_loss, class_balance_error), both minimised, up to the reference point "
        f'({", ".join(_number(v) for v in reference) if reference else "-"}); higher is better. "Equal epochs": the trials '
        "each study had finished when it had trained as many epochs as the other study of its seed trained in all.",
        "",
        "| search | seed | equal epochs | hypervolume | best feasible val_loss | front | feasible / COMPLETE "
        "| whole run: epochs | hypervolume | best feasible val_loss | front | feasible / COMPLETE | PRUNED / FAIL | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {SEARCHES[row['search']]} | {row['seed']} | {_found(row['equal'])} | {_found(row['whole'])} "
            f"| {row['pruned']} / {row['fail']} | {row['wall_seconds']:.0f} |"
        )
    return "\n".join(lines)


def plots(rows: list[dict]) -> dict:
    import plotly.graph_objects as go

    figure = go.Figure()
    for row in rows:
        front = sorted(row["whole"]["front"])
        figure.add_scatter(
            name=f"{SEARCHES[row['search']]}, seed {row['seed']}", x=[p[0] for p in front], y=[p[1] for p in front],
            mode="lines+markers", line={"shape": "hv"},
        )  # fmt: skip
    figure.update_layout(
        title="Feasible Pareto fronts of the Vesuvius studies, whole runs (lower left is better)",
        xaxis_title="val_loss", yaxis_title="class_balance_error",
    )  # fmt: skip
    return {"fronts": figure}


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    main(["--only", "pareto", *sys.argv[1:]])
