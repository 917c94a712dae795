"""Search quality: the regret of the config each method recommends, at 1/4, 1/2 and all of a budget of epochs.

Four problem families, each a :class:`benchmarks.simulated.BenchmarkProblem`:

- ``synthetic``: ``benchmarks/curves.py``: Branin and Hartmann-6 asymptotes with a learning rate (and
  an optimizer) whose curves cross, so early rungs mislead; regret against the known optimum.
- ``recorded``: ``benchmarks/recorded.py``: learning curves recorded once from this project's own
  trainers (CABBI, AbAg, flyvis spaces; random configs trained to their full epochs), replayed from the
  nearest recorded config with noise; regret normalised so the median recorded config is 1.
- ``yahpo``: ``benchmarks/yahpo.py``: the YAHPO Gym ``rbv2_xgboost`` surrogate, a conditional space,
  training-set fraction as the fidelity; regret normalised the same way.
- ``generated``: ``benchmarks/generated.py``: random learning-curve tasks, each drawn from its index
  (3 to 7 numeric knobs, sometimes an optimizer choice, one to six modes, early rungs from faithful to
  misleading, divergence, noise): curves no searcher here was shaped on; regret normalised the same way.

Every run: ``WORKERS`` trials at a time, ASHA with grace period 1 and reduction factor 3 (rungs 1, 3,
9, 27), a budget of ``BUDGET_TRAININGS`` full trainings' worth of epochs, counted whether a trial was
stopped or not. The recommended config is the best trial (by its observed last value) that trained all
epochs, among those finished by 1/4, 1/2 and all of the budget. Runs are simulated
(:mod:`benchmarks.simulated`): the real searchers, Ray's real ``ASHAScheduler`` and Optuna's real
pruner decide; only the training is read from the problem.

Methods, each with the same seeds (the problem's noise and the method's own seed):

- ``tune_<sampler>``: ``tune run --sampler <sampler>``'s decision path: ``studies.driver.bridge.OptunaBridge``
  over the sampler that ``studies.samplers`` builds, with the driver's ASHA (Ray's, with the brackets the method
  asks for: ``bohb-brackets`` first judges each new trial at the lowest of rungs 1, 3 and 9 not shown to mislead;
  ``bohb-gated``, the default, also stops a trial whose first two epochs repeat an earlier trial's exactly, and trains a
  trial past the last rung only if, gaining from there as much as any finished trial did, it would end better than the
  best of them); every stopped trial told to
  Optuna as PRUNED with its curve.
- ``bohb_random_<share>``: the same path with another random share: none (the model alone) and BOHB's
  own third, against ``bohb``'s half: which part does the work, and how much random is enough.
- ``bohb_no_rung_check``: the same path without ``bohb``'s check that a rung ranks as later epochs do.
- ``bohb_incumbent``: the same path with half of ``bohb``'s random share drawn about the trial leading at the
  highest epoch 3 trials reached (PriorBand's incumbent, every knob moved), a candidate not adopted.
- ``brackets_random_2/3``: ``bohb-brackets`` with a random share of 2/3 against its half: closer to random + ASHA,
  a candidate for robustness.
- ``brackets_near_copy_0.1``: ``bohb-brackets`` that passes over TPE's candidates within 10 % of a seen config on every
  knob, against its 2 %: the issue's clones were within about 10 % of each other.
- ``gated_random_1``: ``bohb-gated`` with every config random: its scheduler without its model.
- ``gated_no_prior``: ``bohb-gated`` drawing its random share uniformly, none about the documented configs; only where a
  task documents configs (:mod:`benchmarks.documented`), which every method here then runs first.
- ``gated_leader_gain``: ``bohb-gated`` whose gate bars a trial at the last rung unless it is better there than the best
  finished trial was (that trial's own gain to its last epoch, not the most any finished trial gained): the gate before
  2026-12-07 (:mod:`benchmarks.gate_gain`).
- ``gated_local``: ``bohb-gated`` with half of its uniform share drawn about the trial leading at a rung as local moves
  (the config with one or two of its knobs moved, as a researcher's next run moves one) where no config is documented
  too, as it draws them where one is. A candidate measured and not taken (:data:`studies.rung_tpe.LOCAL_KNOBS`).
- ``gated_prior_all_knobs``: ``bohb-gated`` whose draws about a documented config move every knob (PriorBand's prior) and
  none of which is about the leader, as the default's were before 2026-12-08; only where a task documents configs
  (:mod:`benchmarks.documented`).
- ``ray_random_asha``: stock Ray Tune: ``OptunaSearch`` with Optuna's ``RandomSampler`` (uniform draws,
  as Ray's own random search makes them) and the same ASHA.
- ``ray_optuna_asha``: stock Ray Tune ``OptunaSearch`` (TPE), same ASHA: a stopped trial is told to Optuna
  as COMPLETE with its last, low-epoch value.
- ``optuna_tpe_sha``: plain Optuna: ``TPESampler`` with ``SuccessiveHalvingPruner`` (same rungs).
- ``optuna_tpe_hyperband``: plain Optuna: ``TPESampler`` with ``HyperbandPruner`` (its brackets from the same grace
  period, reduction factor and maximum epochs; TPE models each bracket's trials apart, as Optuna does).

Syne Tune's MOBSTER, Hyper-Tune, DyHPO and DEHB (``syne_<name>``) run through :func:`make_agent` too, in their own
sections on fewer seeds (:mod:`benchmarks.anchors`, :mod:`benchmarks.resume_anchors`): a run of the first three costs
minutes where these cost seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.simulated import OBJECTIVE, BenchmarkProblem, OptunaPrunerAgent, RayAgent, simulate
from studies.space import AshaSettings, Budget, Knob, Objective, Resources, Space

TITLE = "Search quality at 1/4, 1/2 and 1 of a budget of epochs"
GRACE_PERIOD, REDUCTION_FACTOR = 1, 3
WORKERS = 4
BUDGET_TRAININGS = 30
FRACTIONS = (0.25, 0.5, 1.0)
CURVE_POINTS = 20  # budget fractions at which the anytime regret curves are drawn
SEEDS = 20  # with 10, yahpo's median for bohb was 0.093; seeds 0-19 give 0.068: ten seeds alone move a median that much
SMOKE_SEEDS, SMOKE_BUDGET_TRAININGS = 1, 6
TUNE_SAMPLERS = ("tpe", "random", "bohb", "bohb-brackets", "bohb-gated")
# Ablations and candidates of tune's bohb samplers: the label, RungTPESampler's settings, and the sampler whose ASHA
# brackets the run takes. bohb_random_*: its model alone, and BOHB's own random share (tune's bohb draws half at random).
VARIANTS = {
    "bohb_random_0": ("ablation: bohb with a random share of 0", {"random_fraction": 0.0}, "bohb"),
    "bohb_random_1/3": ("ablation: bohb with a random share of 1/3", {"random_fraction": 1 / 3}, "bohb"),
    "bohb_no_rung_check": ("ablation: bohb that models any rung, its ranking checked or not", {"rung_check": False}, "bohb"),
    "bohb_incumbent": (
        "candidate: bohb with half its random share drawn about the trial leading at a rung",
        {"incumbent_draws": True, "local_moves": False},
        "bohb",
    ),
    "brackets_random_2/3": ("candidate: bohb-brackets with a random share of 2/3", {"random_fraction": 2 / 3}, "bohb-brackets"),
    "brackets_near_copy_0.1": (
        "ablation: bohb-brackets with configs within 10 % on every knob as copies (not 2 %)",
        {"near_copy": 0.1},
        "bohb-brackets",
    ),
    "gated_random_1": (
        "ablation: bohb-gated with every config random (its scheduler without its model)",
        {"random_fraction": 1.0},
        "bohb-gated",
    ),
    "gated_no_prior": (
        "ablation: bohb-gated without its prior (its random share all uniform)",
        {"prior": []},
        "bohb-gated",
    ),
    "gated_leader_gain": (
        "ablation: bohb-gated whose gate counts on the best finished trial's own gain (the gate before)",
        {"gate_by_most_gain": False},
        "bohb-gated",
    ),
    "gated_local": (
        "candidate: bohb-gated with half its uniform share drawn about the trial leading at a rung where no config is documented",
        {"incumbent_draws": True},
        "bohb-gated",
    ),
    "gated_prior_all_knobs": (
        "ablation: bohb-gated whose draws about a documented config move every knob, none about the leader (the prior before)",
        {"local_moves": False, "incumbent_draws": False},
        "bohb-gated",
    ),
}
SCHEDULER_SETTINGS = ("gate_by_most_gain",)  # a variant's settings that go to its ASHA (studies.driver.rungs), not its sampler
# Listed after the stock methods: a method's colour is its place in METHODS, and the plots measured before these existed
# keep theirs.
LATER_VARIANTS = ("gated_random_1", "gated_no_prior", "gated_leader_gain", "gated_local", "gated_prior_all_knobs")
# Where no config is documented (every family here) it is bohb-gated itself: run only in benchmarks/documented.py.
DOCUMENTED_ONLY = ("gated_no_prior", "gated_prior_all_knobs")
METHODS = {
    **{f"tune_{name}": f"`tune run --sampler {name}`" for name in TUNE_SAMPLERS},
    **{method: label for method, (label, _, _) in VARIANTS.items() if method not in LATER_VARIANTS},
    "ray_random_asha": "stock Ray Tune random + ASHA",
    "ray_optuna_asha": "stock Ray Tune OptunaSearch (TPE) + ASHA",
    "optuna_tpe_sha": "plain Optuna TPE + SuccessiveHalvingPruner",
    "optuna_tpe_hyperband": "plain Optuna TPE + HyperbandPruner",
    **{method: VARIANTS[method][0] for method in LATER_VARIANTS},
}
STOCK = ("ray_random_asha", "ray_optuna_asha", "optuna_tpe_sha", "optuna_tpe_hyperband")
PAIRED_REFERENCE = "ray_random_asha"  # the method the robustness target names
DEFAULT_METHOD = "tune_bohb-gated"  # what `tune run` uses when neither the space nor --sampler names a method
EARLIER_DEFAULTS = ("tune_tpe", "tune_bohb-brackets")


@dataclass(frozen=True)
class SyntheticTask:
    """A ``benchmarks/curves.py`` problem at ``max_epochs``, in the families' shared shape."""

    name: str
    max_epochs: int = 27
    family: str = "synthetic"

    @property
    def curves(self):
        from benchmarks.curves import PROBLEMS

        return PROBLEMS[self.name]

    @property
    def knobs(self) -> dict[str, Knob]:
        return self.curves.knobs

    def observed(self, params, epoch: int, seed: int) -> float:
        return self.curves.observed(params, epoch, seed)

    def regret(self, params) -> float:
        return self.curves.regret(params, self.max_epochs)


def problems(smoke: bool) -> list[BenchmarkProblem]:
    """Every family's tasks (one of each family at smoke sizes)."""
    from benchmarks.curves import PROBLEMS
    from benchmarks.generated import TASKS, generated_problems
    from benchmarks.recorded import recorded_problems
    from benchmarks.yahpo import yahpo_problems

    families = [
        [SyntheticTask(name) for name in PROBLEMS],
        list(recorded_problems().values()),
        list(yahpo_problems().values()),
        list(generated_problems(1 if smoke else TASKS).values()),
    ]
    return [family[0] for family in families if family] if smoke else [task for family in families for task in family]


def documented_configs(problem: BenchmarkProblem) -> dict[str, dict]:
    """The configs a log documents for ``problem``, which every method runs first: only benchmarks/documented.py's tasks name any."""
    return getattr(problem, "documented", {})


def problem_space(problem: BenchmarkProblem) -> Space:
    """The problem as the search space the bridge searches; it never trains through a trainer, so it names none."""
    return Space(
        name=problem.name,
        path=Path(__file__),
        config=dict(problem.knobs),
        knobs=dict(problem.knobs),
        fixed={},
        baselines=dict(documented_configs(problem)),
        objectives=[Objective(OBJECTIVE, "minimize")],
        budget=Budget(max_epochs=problem.max_epochs, grace_period=GRACE_PERIOD, reduction_factor=REDUCTION_FACTOR),
        resources=Resources(cpus=1),
        trainer=None,
    )


def make_agent(method: str, problem: BenchmarkProblem, seed: int, budget: int, smoke: bool = False):
    import optuna

    if method.startswith("syne_"):  # the model-based anchors of benchmarks/anchors.py, on the same simulated clock
        from benchmarks import anchors

        return anchors.make_agent(method, problem, seed, smoke)
    space = problem_space(problem)
    asha = AshaSettings(problem.max_epochs, GRACE_PERIOD, REDUCTION_FACTOR)
    if method.startswith("tune_") or method in VARIANTS:
        from studies.driver.bridge import OptunaBridge
        from studies.driver.run import baseline_queue, enqueue_once
        from studies.driver.rungs import stored_rungs_asha
        from studies.rung_tpe import RungTPESampler
        from studies.samplers import SAMPLERS, SamplerSettings, make_sampler

        scheduler_settings = {}
        if method in VARIANTS:
            _, settings, name = VARIANTS[method]
            scheduler_settings = {key: value for key, value in settings.items() if key in SCHEDULER_SETTINGS}
            sampler_settings = {key: value for key, value in settings.items() if key not in SCHEDULER_SETTINGS}
            sampler = RungTPESampler(seed=seed, **{"prior": list(space.baselines.values()), **sampler_settings})
        else:
            name = method[len("tune_") :]
            sampler = make_sampler(name, space, SamplerSettings(seed=seed))
        asha = dataclasses.replace(asha, brackets=SAMPLERS[name].brackets, gated=SAMPLERS[name].gated)
        study = optuna.create_study(sampler=sampler, direction="minimize")
        enqueue_once(study, baseline_queue(space))  # as run_study does: the documented configs first
        # Each trial trains an epoch at least: the budget in epochs bounds the trials.
        bridge = OptunaBridge(
            study, space, max_epochs=problem.max_epochs, target=budget, first_rungs=asha.first_rungs, gate_rung=asha.gate_rung
        )
        scheduler = stored_rungs_asha(asha, {}, OBJECTIVE, "min", **scheduler_settings)
        return RayAgent(bridge, scheduler, params_of=lambda config: config["params"])
    if method in ("ray_random_asha", "ray_optuna_asha"):
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna.samplers.RandomSampler(seed=seed) if method == "ray_random_asha" else None
        searcher = OptunaSearch(
            # Optuna's distributions, which OptunaSearch takes as they are; conditions dropped: an inactive knob is ignored.
            space={name: knob.distribution() for name, knob in problem.knobs.items()},
            metric=OBJECTIVE, mode="min", sampler=sampler, seed=seed, points_to_evaluate=list(space.baselines.values()) or None,
        )  # fmt: skip
        scheduler = ASHAScheduler(
            time_attr="epoch", metric=OBJECTIVE, mode="min", max_t=asha.max_epochs,
            grace_period=asha.grace_period, reduction_factor=asha.reduction_factor,
        )  # fmt: skip
        return RayAgent(searcher, scheduler, params_of=dict)
    if method == "optuna_tpe_sha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=GRACE_PERIOD, reduction_factor=REDUCTION_FACTOR)
    elif method == "optuna_tpe_hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=GRACE_PERIOD, max_resource=problem.max_epochs, reduction_factor=REDUCTION_FACTOR
        )
    else:
        raise ValueError(f"unknown search-quality method {method!r}; the methods are {', '.join(METHODS)}")
    # Named: HyperbandPruner assigns brackets by a hash of the study's name, and an unnamed study's is a random uuid.
    study = optuna.create_study(
        study_name=f"{problem.name}-{seed}", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner, direction="minimize"
    )
    for params in space.baselines.values():
        study.enqueue_trial(params)
    return OptunaPrunerAgent(study, space.suggest)


def run_one(method: str, problem: BenchmarkProblem, seed: int, budget_trainings: int, smoke: bool = False) -> dict:
    """One run: its regret at each budget fraction and along the anytime curve (``smoke``: a model-based anchor fits less)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    budget = budget_trainings * problem.max_epochs
    began = time.perf_counter()
    record = simulate(make_agent(method, problem, seed, budget, smoke), problem, seed, budget, WORKERS)

    def regret_by(spent: float) -> float | None:
        done = [c for c in record.completions if c.spent <= spent]
        return problem.regret(min(done, key=lambda c: c.value).params) if done else None

    return {
        "family": problem.family,
        "problem": problem.name,
        "method": method,
        "seed": seed,
        "max_epochs": problem.max_epochs,
        "epochs_budget": budget,
        "epochs_spent": record.spent,
        "trials": record.trials,
        "full_budget_trials": record.full_trials,
        **{f"regret_{fraction:g}": regret_by(fraction * budget) for fraction in FRACTIONS},
        "curve": [regret_by(budget * (i + 1) / CURVE_POINTS) for i in range(CURVE_POINTS)],
        "wall_seconds": round(time.perf_counter() - began, 2),
    }


def measure(
    smoke: bool = False,
    methods: tuple[str, ...] = tuple(m for m in METHODS if m not in DOCUMENTED_ONLY),
    tasks: list[BenchmarkProblem] | None = None,
    seeds: int = SEEDS,
) -> list[dict]:
    """Each of ``methods`` on every task (default: :func:`problems`) with seeds 0 to ``seeds`` - 1; one row per run, two runs
    at a time (the machine's cores)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    seed_numbers = range(SMOKE_SEEDS if smoke else seeds)
    trainings = SMOKE_BUDGET_TRAININGS if smoke else BUDGET_TRAININGS
    tasks = problems(smoke) if tasks is None else tasks
    jobs = [(method, problem, seed, trainings) for problem in tasks for seed in seed_numbers for method in methods]
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        return run_all(pool, jobs)


def run_all(pool: ProcessPoolExecutor, jobs: list[tuple]) -> list[dict]:
    """:func:`run_one` for each job in ``pool``; each row printed as it comes (without its curve), as progress."""
    rows = []
    for row in pool.map(run_one, *zip(*jobs)):
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
        rows.append(row)
    return rows


def _quartiles(values: list[float]) -> tuple[float, float, float] | None:
    import numpy as np

    return tuple(np.percentile(values, [25, 50, 75])) if values else None


def _cell(rows: list[dict], key: str) -> str:
    values = [row[key] for row in rows if row[key] is not None]
    q = _quartiles(values)
    missing = len(rows) - len(values)
    return "-" if q is None else f"{q[1]:.3f} ({q[0]:.3f}-{q[2]:.3f})" + (f", {missing} none" if missing else "")


def _median(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if row[key] is not None]
    return statistics.median(values) if values else None


def table(rows: list[dict]) -> str:
    """Per family and method: median regret (IQR) at each budget fraction; then the targets, read plainly."""
    families = list(dict.fromkeys(row["family"] for row in rows))
    lines = [
        "| family | method | runs | regret at 1/4 budget | at 1/2 | at full budget | trials | full-budget trials |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family in families:
        for method, label in METHODS.items():
            runs = [row for row in rows if row["family"] == family and row["method"] == method]
            if runs:
                lines.append(
                    f"| {family} | {label} | {len(runs)} | {_cell(runs, 'regret_0.25')} | {_cell(runs, 'regret_0.5')} "
                    f"| {_cell(runs, 'regret_1')} | {statistics.median(r['trials'] for r in runs):g} "
                    f"| {statistics.median(r['full_budget_trials'] for r in runs):g} |"
                )
    tasks = {family: list(dict.fromkeys(row["problem"] for row in rows if row["family"] == family)) for family in families}
    listed = "; ".join(f"{family}: {', '.join(names)}" for family, names in tasks.items())
    seeds = len({row["seed"] for row in rows})
    notes = [
        f"Median (interquartile range) of regret over {sum(map(len, tasks.values()))} tasks x {seeds} seed(s), {WORKERS} workers, "
        f"ASHA grace {GRACE_PERIOD} / eta {REDUCTION_FACTOR}, a budget of {rows[0]['epochs_budget'] // rows[0]['max_epochs'] if rows else 0} "
        f"full trainings' worth of epochs; lower is better. Tasks: {listed}.",
        _targets(rows, families),
    ]
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n\n" + paired_table(rows, families)


def paired_table(rows: list[dict], families: list[str], reference_method: str = PAIRED_REFERENCE) -> str:
    """Each method against random + ASHA on the same task and seed: how often it ends better or worse, by how much on
    average; medians of a few dozen runs move with the seeds, pairs show how often one method beats the other."""
    reference = {(row["problem"], row["seed"]): row for row in rows if row["method"] == reference_method}
    lines = [
        f"Paired with {METHODS[reference_method]} on the same task and seed: runs ending better / worse, and the mean "
        "difference in regret (below 0: better) with its 90 % interval over the seeds (Student's t on each seed's mean "
        "over the family's tasks: a seed's runs share their random draws); an interval that spans 0 is no measured "
        "difference.",
        "",
        "| family | method | at 1/2 budget | at full budget |",
        "|---|---|---|---|",
    ]
    for family in families:
        for method, label in METHODS.items():
            pairs = [
                (row, reference[row["problem"], row["seed"]])
                for row in rows
                if row["family"] == family and row["method"] == method and (row["problem"], row["seed"]) in reference
            ]
            if pairs and method != reference_method:
                cells = [_paired_cell(pairs, key) for key in ("regret_0.5", "regret_1")]
                lines.append(f"| {family} | {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _paired_cell(pairs: list[tuple[dict, dict]], key: str) -> str:
    both = [(ours, theirs) for ours, theirs in pairs if ours[key] is not None and theirs[key] is not None]
    if not both:
        return "-"
    better = sum(ours[key] < theirs[key] for ours, theirs in both)
    worse = sum(ours[key] > theirs[key] for ours, theirs in both)
    # One mean difference per seed, over the family's tasks: a seed draws the same random configs on every task that has
    # the same space (the YAHPO data sets all do), so its runs are not independent evidence; the seeds are.
    by_seed: dict[int, list[float]] = {}
    for ours, theirs in both:
        by_seed.setdefault(ours["seed"], []).append(ours[key] - theirs[key])
    seed_means = [statistics.mean(differences) for differences in by_seed.values()]
    mean = statistics.mean(seed_means)
    if len(seed_means) < 2:
        return f"{better} / {worse}, {mean:+.3f}"
    from scipy.stats import t

    half_width = t.ppf(0.95, len(seed_means) - 1) * statistics.stdev(seed_means) / len(seed_means) ** 0.5
    return f"{better} / {worse}, {mean:+.3f} ({mean - half_width:+.3f} to {mean + half_width:+.3f})"


def _targets(rows: list[dict], families: list[str]) -> str:
    """The issue's two targets for the default method, family by family, as won or lost."""
    if not any(row["method"] == DEFAULT_METHOD for row in rows):
        return f"The default, {METHODS[DEFAULT_METHOD]}, is not among these runs: its targets are in the section that measured it."
    sentences = []
    for family in families:
        of = {method: [row for row in rows if row["family"] == family and row["method"] == method] for method in METHODS}
        half = _median(of[DEFAULT_METHOD], "regret_0.5")
        stock_full = {method: _median(of[method], "regret_1") for method in STOCK if of[method]}
        best_stock = min((v, m) for m, v in stock_full.items() if v is not None) if stock_full else None
        full = _median(of[DEFAULT_METHOD], "regret_1")
        random_full = _median(of["ray_random_asha"], "regret_1")
        if half is None or best_stock is None or full is None or random_full is None:
            sentences.append(f"{family}: not enough runs with a recommendation to judge.")
            continue
        earlier = [f"{METHODS[method]} {_median(of[method], 'regret_1'):.3f}" for method in EARLIER_DEFAULTS if of[method]]
        first = "met" if half <= best_stock[0] else "NOT met"
        second = "met" if full <= random_full else "NOT met"
        sentences.append(
            f"{family}: {METHODS[DEFAULT_METHOD]} at half the budget {half:.3f} vs the best stock method at the full budget "
            f"({METHODS[best_stock[1]]}) {best_stock[0]:.3f}: {first}; at equal budget {full:.3f} vs random + ASHA "
            f"{random_full:.3f}: {second}"
            + (f"; against the earlier defaults at the full budget, {full:.3f} vs {', '.join(earlier)}." if earlier else ".")
        )
    return " ".join(sentences)


def plots(rows: list[dict]) -> dict:
    """Anytime regret: median over tasks and seeds against the budget spent, one panel per family, two panels a row."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    families = list(dict.fromkeys(row["family"] for row in rows))
    columns = min(2, len(families))
    rows_of_panels = -(-len(families) // columns)
    figure = make_subplots(rows=rows_of_panels, cols=columns, subplot_titles=families, vertical_spacing=0.12)
    fractions = [(i + 1) / CURVE_POINTS for i in range(CURVE_POINTS)]
    for index_of_family, family in enumerate(families):
        panel_row, panel_column = (n + 1 for n in divmod(index_of_family, columns))
        for index, (method, label) in enumerate(METHODS.items()):  # a method keeps its colour in every section's plot
            runs = [row for row in rows if row["family"] == family and row["method"] == method]
            if not runs:
                continue
            medians = [_median([{"v": run["curve"][i]} for run in runs], "v") for i in range(CURVE_POINTS)]
            figure.add_trace(
                go.Scatter(
                    x=fractions, y=medians, name=label, legendgroup=method, showlegend=index_of_family == 0, mode="lines",
                    line={"color": PLOT_COLOURS[index % len(PLOT_COLOURS)], "width": 3 if method == DEFAULT_METHOD else 1.5},
                ),
                row=panel_row, col=panel_column,
            )  # fmt: skip
        bottom = index_of_family + columns >= len(families)  # no panel below it
        figure.update_xaxes(title_text="fraction of the budget spent" if bottom else None, row=panel_row, col=panel_column)
        figure.update_yaxes(
            rangemode="tozero", title_text="median regret" if panel_column == 1 else None, row=panel_row, col=panel_column
        )
    figure.update_layout(
        title="Anytime regret of the recommended config", height=380 * rows_of_panels + 120, width=480 * columns + 420,
        legend={"tracegroupgap": 0},  # each method is its own legend group: the default gap left 15 methods no room
    )  # fmt: skip
    return {"regret": figure}


PLOT_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#17becf",
    "#e377c2",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#8c6d31",
    "#637939",
    "#843c39",
    "#e7969c",
    "#111111",
)


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    main(["--only", "search_quality", *sys.argv[1:]])
