"""Orchestration efficiency: how much of two workers' wall time goes to training, per method.

efficiency = sum over trials of (epochs trained x epoch work) / (workers x wall time)

Methods, all on the same fixed-work trainer (benchmarks/fixed_work.py), N trials, the same
successive-halving rungs and checkpoint cadence (``tune``'s default), 2 workers:
- tune:             `studies.driver.run.run_study`, as `tune run` runs it (the bridge, reused actors)
- ray_optuna:       stock Ray Tune, `OptunaSearch` + `ASHAScheduler`, a new actor per trial
- ray_optuna_reuse: the same with `reuse_actors=True`
- optuna_2proc:     plain Optuna, two processes sharing one SQLite study, `SuccessiveHalvingPruner`

Ray is started before the clock for the Ray methods (a once-per-session cost); the plain Optuna
processes are timed from their launch, imports included, as a user would run them.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from studies.driver.run import CHECKPOINT_EVERY_S

HERE = Path(__file__).parent
WORKERS = 2
TITLE = "Orchestration efficiency"
METHODS = ("tune", "ray_optuna", "ray_optuna_reuse", "optuna_2proc")
METHOD_NAMES = {
    "tune": "`tune run`",
    "ray_optuna": "Ray Tune: OptunaSearch + ASHA",
    "ray_optuna_reuse": "Ray Tune: OptunaSearch + ASHA, reuse_actors",
    "optuna_2proc": "plain Optuna: 2 processes, SuccessiveHalvingPruner",
}
EPOCH_SECONDS = (0.05, 0.5, 2.0)
TRIALS = 30  # the size of a default study here (24 to 40 trials), so start-up and ASHA's last full trial weigh as they would
# A longer study at 0.5-s epochs, where each worker's one-off start-up weighs less (stock Ray Tune without
# reused actors left out: it starts a worker per trial, so its start-up never amortises).
LONG_STUDY_TRIALS = 100
LONG_STUDY_METHODS = ("tune", "ray_optuna_reuse", "optuna_2proc")
SMOKE_EPOCH_SECONDS = (0.05,)
SMOKE_TRIALS = 2
# ray_optuna is ray_optuna_reuse less one flag: its run, a worker started per trial, is left out of CI
SMOKE_METHODS = ("tune", "ray_optuna_reuse", "optuna_2proc")


def variant_space(folder: Path, epoch_seconds: float) -> Path:
    """fixed_work.py with another epoch length (a space is loaded by path in every worker)."""
    text = (HERE / "fixed_work.py").read_text().replace('"epoch_seconds": 0.5', f'"epoch_seconds": {epoch_seconds}')
    path = folder / f"fixed_work_{str(epoch_seconds).replace('.', '_')}.py"
    path.write_text(text)
    return path


def run_tune(space_path: Path, trials: int, folder: Path) -> tuple[float, int]:
    from studies.driver.run import RunOptions, run_study
    from studies.space import load_space

    os.environ["TUNE_RAY_STORAGE"] = str(folder / "ray_tune")
    space = load_space(space_path)
    started = time.perf_counter()
    study = run_study(space, RunOptions(storage=f"sqlite:///{folder / 'tune.db'}", trials=trials, seed=0))
    wall = time.perf_counter() - started
    epochs = sum(t.user_attrs.get("epochs", 0) for t in study.get_trials())
    return wall, epochs


def _stock_trainable(config):
    import ray.tune

    from studies.space import load_space
    from trainers.base import fit

    space = load_space(config["space_path"])
    training = space.training_config({"x": config["x"], "y": config["y"]})

    def report(metrics, checkpoint_dir):
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)

    fit(space.trainer(), training, max_epochs=config["max_epochs"], report=report, checkpoint_every_s=CHECKPOINT_EVERY_S)


def run_stock_ray(space_path: Path, trials: int, folder: Path, reuse_actors: bool) -> tuple[float, int]:
    import ray.tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from studies.space import load_space

    budget = load_space(space_path).budget
    searcher = OptunaSearch(
        {"x": optuna.distributions.FloatDistribution(-1, 1), "y": optuna.distributions.FloatDistribution(-1, 1)},
        metric="val_loss", mode="min", seed=0,
    )  # fmt: skip
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(_stock_trainable, {"cpu": 1}),
        param_space={"space_path": str(space_path), "max_epochs": budget.max_epochs},
        tune_config=ray.tune.TuneConfig(
            metric="val_loss", mode="min", search_alg=searcher, num_samples=trials, reuse_actors=reuse_actors,
            scheduler=ASHAScheduler(time_attr="epoch", max_t=budget.max_epochs, grace_period=budget.grace_period,
                                    reduction_factor=budget.reduction_factor),
        ),
        run_config=ray.tune.RunConfig(storage_path=str(folder / "ray_stock"), verbose=0,
                                      checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=1)),
    )  # fmt: skip
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    epochs = sum(int(r.metrics.get("epoch", 0)) for r in results)
    return wall, epochs


def _optuna_worker(space_path: str, storage_url: str, trials: int) -> None:
    from studies.space import load_space
    from trainers.base import fit

    space = load_space(space_path)
    study = optuna.load_study(study_name="plain", storage=storage_url)

    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)

        def report(metrics, checkpoint_dir):
            trial.report(metrics["val_loss"], int(metrics["epoch"]))
            trial.set_user_attr("epochs", int(metrics["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        training = space.training_config(params)
        return fit(space.trainer(), training, max_epochs=space.budget.max_epochs, report=report, checkpoint_every_s=CHECKPOINT_EVERY_S)["val_loss"]

    study.optimize(objective, n_trials=trials)


def run_plain_optuna(space_path: Path, trials: int, folder: Path) -> tuple[float, int]:
    from studies.space import load_space

    budget = load_space(space_path).budget
    url = f"sqlite:///{folder / 'plain.db'}"
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=budget.grace_period, reduction_factor=budget.reduction_factor)
    optuna.create_study(study_name="plain", storage=url, pruner=pruner)
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    processes = [
        context.Process(target=_optuna_worker, args=(str(space_path), url, trials // WORKERS + (i < trials % WORKERS)))
        for i in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name="plain", storage=url, pruner=pruner)
    epochs = sum(t.user_attrs.get("epochs", 0) for t in study.get_trials())
    return wall, epochs


def worker_import_seconds() -> float:
    """Wall time of a fresh Python process importing what a trial's worker imports (torch, Lightning, Ray Tune)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import studies.driver.trainable"], cwd=HERE.parent, check=True)
    return round(time.perf_counter() - started, 2)


def measure_methods(epoch_seconds_list, trials: int, methods=METHODS) -> list[dict]:
    """One row per (epoch length, method): epochs trained, wall time and efficiency."""
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for epoch_seconds in epoch_seconds_list:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            space_path = variant_space(folder, epoch_seconds)
            for method in methods:
                (folder / method).mkdir()
                if method != "optuna_2proc" and not ray.is_initialized():
                    ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
                if method == "tune":
                    wall, epochs = run_tune(space_path, trials, folder / method)
                elif method.startswith("ray_optuna"):
                    wall, epochs = run_stock_ray(space_path, trials, folder / method, reuse_actors=method.endswith("reuse"))
                else:
                    if ray.is_initialized():
                        ray.shutdown()  # the plain-Optuna processes get both cores to themselves
                    wall, epochs = run_plain_optuna(space_path, trials, folder / method)
                row = {
                    "epoch_seconds": epoch_seconds,
                    "method": method,
                    "trials": trials,
                    "epochs": epochs,
                    "wall_seconds": round(wall, 2),
                    "efficiency": round(epochs * epoch_seconds / (WORKERS * wall), 3),
                }
                print(row, flush=True)
                rows.append(row)
    if ray.is_initialized():
        ray.shutdown()
    return rows


def measure(smoke: bool = False) -> list[dict]:
    import_seconds = worker_import_seconds()
    if smoke:
        rows = measure_methods(SMOKE_EPOCH_SECONDS, SMOKE_TRIALS, SMOKE_METHODS)
    else:
        rows = measure_methods(EPOCH_SECONDS, TRIALS) + measure_methods((0.5,), LONG_STUDY_TRIALS, LONG_STUDY_METHODS)
    return [{**row, "worker_import_seconds": import_seconds} for row in rows]


def _by_setting(rows: list[dict]) -> dict[tuple[int, float], dict[str, dict]]:
    """Rows by (trials, epoch length), then by method."""
    table: dict[tuple[int, float], dict[str, dict]] = {}
    for row in rows:
        table.setdefault((row["trials"], row["epoch_seconds"]), {})[row["method"]] = row
    return table


def table(rows: list[dict]) -> str:
    by_setting = _by_setting(rows)
    methods = [m for m in METHODS if any(m in cells for cells in by_setting.values())]
    lines = [
        "2 workers, ASHA rungs of benchmarks/fixed_work.py; efficiency = epochs trained x epoch work / (2 x wall). "
        "Cells: efficiency (wall s, epochs).",
        "",
        "| study | " + " | ".join(METHOD_NAMES[m] for m in methods) + " | tune / best other |",
        "|---|" + "---|" * (len(methods) + 1),
    ]
    for (trials, epoch_seconds), cells in sorted(by_setting.items()):
        row = [f"{trials} trials, {epoch_seconds:g}-s epochs"]
        for method in methods:
            cell = cells.get(method)
            row.append("-" if cell is None else f"{cell['efficiency']:.3f} ({cell['wall_seconds']:.1f} s, {cell['epochs']})")
        others = [c["efficiency"] for m, c in cells.items() if m != "tune"]
        ratio = cells["tune"]["efficiency"] / max(others) if "tune" in cells and others and max(others) > 0 else None
        row.append("-" if ratio is None else f"{ratio:.2f}x")
        lines.append("| " + " | ".join(row) + " |")
    if "worker_import_seconds" in rows[0]:
        lines += [
            "",
            f"Every method starts its worker processes inside the clock; a fresh process imports torch, Lightning and Ray Tune "
            f"in {rows[0]['worker_import_seconds']:.1f} s on this machine, the same for all, and a larger share of a shorter study.",
        ]
    return "\n".join(lines)


def plots(rows: list[dict]) -> dict:
    import plotly.graph_objects as go

    by_setting = _by_setting(rows)
    settings = sorted(by_setting)
    figure = go.Figure()
    for method in METHODS:
        values = [by_setting[setting].get(method, {}).get("efficiency") for setting in settings]
        if any(v is not None for v in values):
            labels = [f"{seconds:g} s, {trials} trials" for trials, seconds in settings]
            figure.add_bar(name=METHOD_NAMES[method], x=labels, y=values)
    figure.add_hline(y=0.9, line_dash="dot", annotation_text="target 0.9")
    figure.update_layout(
        title="Orchestration efficiency on 2 workers (higher is better)",
        xaxis_title="CPU work per epoch, trials in the study", yaxis_title="efficiency", yaxis_range=[0, 1], barmode="group",
    )  # fmt: skip
    return {"efficiency": figure}


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    main(["--only", "efficiency", *sys.argv[1:]])
