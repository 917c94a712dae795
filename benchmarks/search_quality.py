"""Search quality for a fixed budget of epochs: the regret of the config each method recommends.

Problems: the learning-curve problems of ``benchmarks/curves.py`` (Branin and Hartmann-6 asymptotes
with a learning rate, and for Hartmann an optimizer, whose curves cross), each with a known optimum.

Budget: ``BUDGET_TRAININGS`` full trainings' worth of epochs (``max_epochs`` each), the same for every
method. Every epoch trained counts, pruned or not; a Ray experiment ends as soon as its trials have
spent the budget (:class:`EpochBudget`), so a trial cut off then counts what it trained, and the last
report may overshoot the budget by the epochs since that trial's previous report (at most 6 of 270).

Methods, each with the same seeds (sampler seed and the problem's noise):

- ``tune``: `tune`'s own ``studies.driver.bridge.OptunaBridge`` (TPE as ``tune run`` makes it) as Ray Tune's
  search algorithm, with ASHA: a trial ASHA stops is told to Optuna as PRUNED with its curve.
- ``optuna_search_asha``: stock ``ray.tune.search.optuna.OptunaSearch`` (TPE) with the same ASHA; it
  tells Optuna a stopped trial is COMPLETE with its last, low-epoch value.
- ``random_asha``: Ray Tune's default random search (``BasicVariantGenerator``) with the same ASHA.
- ``tpe_full`` and ``random_full``: plain Optuna ``study.optimize`` with ``TPESampler`` or
  ``RandomSampler`` and no pruner: every trial trains ``max_epochs``, budget / max_epochs trials.

The Ray methods run on a local Ray with 2 workers (one CPU per trial, reused actors), ASHA with the
same rungs (grace period 1, reduction factor 3, ``max_epochs`` 9: rungs at 1, 3 and 9). The plain
Optuna methods run their trials one after another, which is TPE's best case (it never proposes
without the previous result). The trainable reports the curve's observed values in the result format
`tune`'s trainable uses (``val_loss`` and ``epoch``); the point is the search, not training. It reports
at ASHA's rungs and at ``max_epochs`` only: ASHA decides nowhere else, a pruned trial's last value (what
TPE reads) is the same, and each report is a Ray round trip, the main cost of these runs.

Recommended config: the best trial by observed loss among those that trained ``max_epochs`` (for
``tune``, read back from its Optuna storage: the best COMPLETE trial). Regret: its noise-free loss at
``max_epochs`` minus the problem's optimum. A run with no full-budget trial recommends nothing and
says so (regret ``None``).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import ray.tune

from benchmarks.curves import PROBLEMS, Problem
from studies.records import RESULT_EPOCH
from studies.space import AshaSettings, Budget, Categorical, Float, Knob, Objective, Resources, Space

TITLE = "Search quality for a fixed budget of epochs"
OBJECTIVE = "val_loss"
ASHA = AshaSettings(max_epochs=9, grace_period=1, reduction_factor=3)
MAX_EPOCHS = ASHA.max_epochs
WORKERS = 2
BUDGET_TRAININGS = 30
SEEDS = 10
# ASHA decides only at its rungs, so reporting there alone changes no decision (the stopper still counts every epoch):
# a Ray round trip per report is the cost here, and this is 3 per full training instead of 9.
REPORTED_EPOCHS = sorted({*ASHA.rungs, MAX_EPOCHS})
SMOKE_BUDGET_TRAININGS = 6
SMOKE_SEEDS = 1
SMOKE_PROBLEMS = ("hartmann6_lr_optimizer",)  # the problem with every kind of knob: float, log-scaled and categorical
METHODS = {
    "tune": "tune's bridge + ASHA",
    "optuna_search_asha": "stock OptunaSearch + ASHA",
    "random_asha": "Ray random search + ASHA",
    "tpe_full": "TPE, no pruning",
    "random_full": "random, no pruning",
}


class EpochBudget(ray.tune.Stopper):
    """A Ray Tune stopper that ends the experiment once its trials together have reported ``budget`` epochs.

    Ray's own stoppers bound one trial or wall time; none counts the epochs of all trials, pruned ones included.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.spent = 0
        self.reached: dict[str, int] = {}  # trial id -> last epoch reported

    def __call__(self, trial_id: str, result: dict) -> bool:
        epoch = int(result[RESULT_EPOCH])
        self.spent += epoch - self.reached.get(trial_id, 0)
        self.reached[trial_id] = epoch
        return False

    def stop_all(self) -> bool:
        return self.spent >= self.budget


def train_curve(config: dict[str, Any], problem: str, seed: int) -> None:
    """A Ray Tune function trainable: the problem's curve, in the result format of `tune`'s trainable, at ASHA's rungs."""
    curves = PROBLEMS[problem]
    for epoch in REPORTED_EPOCHS:
        ray.tune.report({OBJECTIVE: curves.observed(config["params"], epoch, seed), RESULT_EPOCH: epoch})


def bridge_space(problem: Problem) -> Space:
    """The problem as the search space the bridge searches; it never trains through a trainer, so it names none."""
    return Space(
        name=problem.name,
        path=Path(__file__).with_name("curves.py"),
        config=dict(problem.knobs),
        knobs=problem.knobs,
        fixed={},
        baselines={},
        objectives=[Objective(OBJECTIVE, "minimize")],
        budget=Budget(max_epochs=MAX_EPOCHS, grace_period=ASHA.grace_period, reduction_factor=ASHA.reduction_factor),
        resources=Resources(cpus=1),
        trainer=None,
    )


def ray_domain(knob: Knob):
    """A knob as Ray Tune's search-space domain, for the searchers that take Ray's param_space."""
    if isinstance(knob, Categorical):
        return ray.tune.choice(list(knob.choices))
    if isinstance(knob, Float):
        return ray.tune.loguniform(knob.low, knob.high) if knob.log else ray.tune.uniform(knob.low, knob.high)
    raise TypeError(f"no Ray domain for {knob!r}")


def best_full_budget(candidates: list[tuple[float, dict]]) -> dict | None:
    """The params of the lowest observed loss among ``(loss, params)`` of full-budget trials; None if there are none."""
    return min(candidates, key=lambda pair: pair[0])[1] if candidates else None


def run_ray(method: str, problem: Problem, seed: int, budget: int, folder: Path) -> dict:
    """One Ray Tune experiment of an ASHA method until it has spent ``budget`` epochs."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    from studies.driver.bridge import OptunaBridge
    from studies.samplers import SamplerSettings, make_sampler

    param_space: dict[str, Any] = {}
    study = None
    if method == "tune":
        space = bridge_space(problem)
        study = optuna.create_study(sampler=make_sampler("tpe", space, SamplerSettings(seed=seed)), direction="minimize")
        # Each trial trains at least one epoch, so the budget bounds the trials too.
        searcher = OptunaBridge(study, space, max_epochs=MAX_EPOCHS, target=budget)
    else:
        param_space = {"params": {name: ray_domain(knob) for name, knob in problem.knobs.items()}}
        if method == "optuna_search_asha":
            searcher = OptunaSearch(seed=seed)
        else:
            searcher = BasicVariantGenerator(random_state=seed)
    stopper = EpochBudget(budget)
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(ray.tune.with_parameters(train_curve, problem=problem.name, seed=seed), {"cpu": 1}),
        param_space=param_space,
        tune_config=ray.tune.TuneConfig(
            metric=OBJECTIVE,
            mode="min",
            search_alg=searcher,
            scheduler=ASHAScheduler(
                time_attr=RESULT_EPOCH, max_t=MAX_EPOCHS, grace_period=ASHA.grace_period, reduction_factor=ASHA.reduction_factor
            ),
            num_samples=-1,  # as many trials as the epoch budget allows
            max_concurrent_trials=WORKERS,
            reuse_actors=True,
        ),
        run_config=ray.tune.RunConfig(name=f"{method}-{problem.name}-{seed}", storage_path=str(folder), stop=stopper, verbose=0),
    )
    # Trials still pending when the budget ran out trained nothing: they are not counted.
    trained = [r for r in tuner.fit() if r.metrics and RESULT_EPOCH in r.metrics]
    full = [(r.metrics[OBJECTIVE], r.config["params"]) for r in trained if r.metrics[RESULT_EPOCH] == MAX_EPOCHS]
    if study is not None:
        # tune's answer is what its storage holds: the best COMPLETE trial.
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        pruned = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
        recommended = best_full_budget([(t.value, t.params) for t in complete])
        extra = {
            "complete": len(complete),
            "pruned": len(pruned),
            "pruned_with_curves": sum(1 for t in pruned if t.intermediate_values),
        }
    else:
        recommended = best_full_budget(full)
        extra = {}
    return {
        "trials": len(trained),
        "full_budget_trials": len(full),
        "epochs_spent": stopper.spent,
        "recommended": recommended,
        **extra,
    }


def run_plain(method: str, problem: Problem, seed: int, budget: int) -> dict:
    """Plain Optuna without a pruner: budget / max_epochs trials, each trained to max_epochs."""
    sampler = optuna.samplers.TPESampler(seed=seed) if method == "tpe_full" else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    space = bridge_space(problem)
    # No pruner, so only the value after max_epochs decides; the earlier epochs are trained but not looked at.
    study.optimize(lambda trial: problem.observed(space.suggest(trial), MAX_EPOCHS, seed), n_trials=budget // MAX_EPOCHS)
    trials = study.trials
    return {
        "trials": len(trials),
        "full_budget_trials": len(trials),
        "epochs_spent": len(trials) * MAX_EPOCHS,
        "recommended": study.best_trial.params,
    }


def measure(smoke: bool = False) -> list[dict]:
    """Every method on every problem with every seed; one row per run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Ray's per-trial CSV/JSON/TensorBoard files would cost more than these trials; nothing here reads them.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy console output honours verbose=0: no tables per run
    # Random search would queue trials far ahead of the 2 workers, each with its own placement group, until the budget ends.
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(WORKERS))
    budget = (SMOKE_BUDGET_TRAININGS if smoke else BUDGET_TRAININGS) * MAX_EPOCHS
    seeds = range(SMOKE_SEEDS if smoke else SEEDS)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=WORKERS, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for problem in [PROBLEMS[name] for name in (SMOKE_PROBLEMS if smoke else PROBLEMS)]:
                optimum = problem.optimum(MAX_EPOCHS)
                for seed in seeds:
                    for method in METHODS:
                        began = time.perf_counter()
                        if method.endswith("_full"):
                            outcome = run_plain(method, problem, seed, budget)
                        else:
                            outcome = run_ray(method, problem, seed, budget, Path(folder))
                        recommended = outcome["recommended"]
                        row = {
                            "problem": problem.name,
                            "method": method,
                            "seed": seed,
                            "max_epochs": MAX_EPOCHS,
                            "epochs_budget": budget,
                            **outcome,
                            "optimum": optimum,
                            "regret": None if recommended is None else problem.regret(recommended, MAX_EPOCHS),
                            "wall_seconds": round(time.perf_counter() - began, 2),
                        }
                        print(json.dumps({k: v for k, v in row.items() if k != "recommended"}), flush=True)
                        rows.append(row)
    finally:
        if started_ray:
            ray.shutdown()
    return rows


def _summaries(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """Per (problem, method): regrets' median, quartiles and range, runs without a recommendation, epochs and trials."""
    import numpy as np

    summaries = {}
    for problem in dict.fromkeys(row["problem"] for row in rows):
        for method in METHODS:
            runs = [row for row in rows if row["problem"] == problem and row["method"] == method]
            if not runs:
                continue
            regrets = np.array([row["regret"] for row in runs if row["regret"] is not None])
            quartiles = np.percentile(regrets, [0, 25, 50, 75, 100]) if len(regrets) else [None] * 5
            summaries[problem, method] = {
                "runs": len(runs),
                "no_recommendation": len(runs) - len(regrets),
                "min": quartiles[0],
                "q1": quartiles[1],
                "median": quartiles[2],
                "q3": quartiles[3],
                "max": quartiles[4],
                "epochs_spent": statistics.median(row["epochs_spent"] for row in runs),
                "epochs_budget": runs[0]["epochs_budget"],
                "trials": statistics.median(row["trials"] for row in runs),
                "full_budget_trials": statistics.median(row["full_budget_trials"] for row in runs),
                "pruned_with_curves": sum(row.get("pruned_with_curves", 0) for row in runs),
                "pruned": sum(row.get("pruned", 0) for row in runs),
            }
    return summaries


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(rows: list[dict]) -> str:
    """Median regret and its spread per method and problem, the epochs spent, and a reading of them."""
    summaries = _summaries(rows)
    lines = [
        "| problem | method | seeds | median regret | IQR | min - max | no full-budget trial | epochs spent / budget | trials | full-budget trials |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (problem, method), s in summaries.items():
        lines.append(
            f"| {problem} | {METHODS[method]} | {s['runs']} | {_number(s['median'])} | {_number(s['q1'])} - {_number(s['q3'])} "
            f"| {_number(s['min'])} - {_number(s['max'])} | {s['no_recommendation']} | {s['epochs_spent']:g} / {s['epochs_budget']} "
            f"| {s['trials']:g} | {s['full_budget_trials']:g} |"
        )
    return "\n".join(lines) + "\n\n" + _reading(rows, summaries)


def _reading(rows: list[dict], summaries: dict[tuple[str, str], dict]) -> str:
    """One paragraph computed from the rows: who wins where, and tune against stock OptunaSearch."""
    problems = list(dict.fromkeys(problem for problem, _ in summaries))
    sentences = [
        f"Regret is the noise-free loss at epoch {rows[0]['max_epochs']} of the best full-budget trial minus the known optimum "
        f"(medians and quartiles over {max(s['runs'] for s in summaries.values())} seed(s) per method and problem; lower is better)."
    ]
    for problem in problems:
        ranked = sorted((s["median"], method) for (p, method), s in summaries.items() if p == problem and s["median"] is not None)
        order = ", ".join(f"{METHODS[method]} {median:.3f}" for median, method in ranked)
        sentences.append(f"On {problem} the median regrets rank {order}.")
        sentences.append(_paired(rows, problem, "tune", "optuna_search_asha"))
    bridge = [s for (_, method), s in summaries.items() if method == "tune"]
    if bridge and sum(s["pruned"] for s in bridge):
        with_curves = sum(s["pruned_with_curves"] for s in bridge)
        pruned = sum(s["pruned"] for s in bridge)
        sentences.append(f"tune's storage holds {pruned} trials ASHA stopped as PRUNED, {with_curves} of them with their curves.")
    missing = [
        f"{METHODS[method]} on {problem} ({s['no_recommendation']})"
        for (problem, method), s in summaries.items()
        if s["no_recommendation"]
    ]
    if missing:
        sentences.append(f"Runs that finished no full-budget trial, so recommend nothing: {', '.join(missing)}.")
    return " ".join(sentences)


def _paired(rows: list[dict], problem: str, method: str, other: str) -> str:
    """How often ``method`` recommended a better config than ``other`` with the same seed (ties and no-shows apart)."""
    regrets = {(row["method"], row["seed"]): row["regret"] for row in rows if row["problem"] == problem}
    pairs = [(regrets[method, seed], regrets[other, seed]) for m, seed in regrets if m == method and (other, seed) in regrets]
    pairs = [(mine, theirs) for mine, theirs in pairs if mine is not None and theirs is not None]
    better = sum(mine < theirs for mine, theirs in pairs)
    worse = sum(mine > theirs for mine, theirs in pairs)
    return (
        f"Seed by seed, {METHODS[method]} beat {METHODS[other]} on {better} of {len(pairs)} seeds and lost on {worse}"
        " (on the others both recommended the same config)."
    )


def plots(rows: list[dict]) -> dict:
    """Regret per method, one panel per problem: a box with every seed's point."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    problems = list(dict.fromkeys(row["problem"] for row in rows))
    figure = make_subplots(rows=1, cols=len(problems), subplot_titles=problems)
    for column, problem in enumerate(problems, start=1):
        for index, (method, label) in enumerate(METHODS.items()):
            regrets = [
                row["regret"]
                for row in rows
                if row["problem"] == problem and row["method"] == method and row["regret"] is not None
            ]
            figure.add_trace(
                go.Box(
                    y=regrets, name=label, boxpoints="all", jitter=0.4, pointpos=0, legendgroup=method,
                    showlegend=column == 1, marker_color=PLOT_COLOURS[index],
                ),
                row=1, col=column,
            )  # fmt: skip
        figure.update_yaxes(type="log", title_text="regret at full budget (log)" if column == 1 else None, row=1, col=column)
    budget = rows[0]["epochs_budget"] if rows else 0
    figure.update_layout(
        title=f"Regret of the recommended config, {budget} epochs per run (one point per seed)",
        xaxis_showticklabels=False, height=500, width=450 * len(problems) + 200,
    )  # fmt: skip
    figure.update_xaxes(showticklabels=False)
    return {"regret": figure}


PLOT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    main(["--only", "search_quality", *sys.argv[1:]])
