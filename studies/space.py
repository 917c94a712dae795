"""What a search-space module declares, and loading one with clear errors.

A search-space module (one file per project in ``search_spaces/``) is declarations only:

``CONFIG``      the researcher's training config as a nested dict. Each leaf is either a fixed value
                (written to the exported YAML as is) or a knob: :class:`Float`, :class:`Int` or
                :class:`Categorical`. A knob's name is its dotted path (``loss_weights.dice_weight``).
                A knob with ``when={"noise.enabled": True}`` is only searched when that knob has that
                value (a conditional knob).
``BASELINES``   the configs the log documents, by the log's names: ``{"v2": {"dotted.knob": value}}``
                (nested dicts are accepted too). They run first, once per study.
``OBJECTIVES``  :class:`Objective` list. The first drives ASHA and Optuna's sampler; all are recorded
                and selectable with ``tune best --by``.
``BUDGET``      :class:`Budget`: max epochs, ASHA grace period and reduction factor, default trials.
``RESOURCES``   :class:`Resources` per trial: CPUs and GPUs (a fraction packs trials on one GPU, a whole
                number above 1 trains with DDP over that many GPUs; ``workers=`` DDP on CPU processes).
``TRAINER``     a ``trainers.base.TrainerFamily`` subclass: what trains one config.
``SAMPLER``     optional, the default search method: a name in :data:`studies.samplers.SAMPLERS`.
``SEARCH``      optional: ``"first"`` (the default: the first objective drives the search) or ``"pareto"`` (all
                ``OBJECTIVES`` searched jointly: the Optuna study gets one direction per objective).
``CONSTRAINTS`` optional metrics the search keeps within a range, ``{"predicted_fg_fraction": (0.3, 0.7)}``
                (``None`` for an open side), each an objective or a ``HEADLINES`` metric: the sampler learns to
                avoid configs outside them, and ``tune best`` and ``export`` pick among the trials within them.
``HEADLINES``   optional metric names the log judged by besides the objectives (``["test_loss"]``): stored
                on the study, the report shows them beside the objectives.
``PHASES``      optional fine-tuning stages, ``{name: {"dotted.knob": value}}`` in the order they run, with
``WARM_START``  the dotted path of the fixed value of ``CONFIG`` that holds the starting weights
                (``tune phases``, see :mod:`studies.driver.phases`).

The export schema is ``CONFIG`` itself: exporting a trial puts its values at the knobs' places.

Example::

    from studies.space import Budget, Float, Objective, Resources
    from trainers.segmentation import SurfaceSegmentation

    TRAINER = SurfaceSegmentation
    CONFIG = {"learning_rate": Float(1e-5, 1e-2, log=True), "optimizer": "AdamW"}
    BASELINES = {"v1": {"learning_rate": 1e-4}}
    OBJECTIVES = [Objective("val_loss", "minimize")]
    BUDGET = Budget(max_epochs=8, grace_period=2, reduction_factor=2, trials=12)
    RESOURCES = Resources(cpus=1)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import numbers
import reprlib
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from studies.errors import UserInputError
from studies.samplers import DEFAULT_SAMPLER, SAMPLERS

if TYPE_CHECKING:  # the knobs build Optuna's distributions when asked: importing this module (every `tune` command) stays cheap
    import optuna


class SpaceError(UserInputError):
    """A search-space module that cannot be used; the message says what to fix."""


def of_type(value: Any, example: Any) -> bool:
    """Whether ``value`` is of ``example``'s type: an int goes where a float does, a bool never goes for a number."""
    if isinstance(value, bool) or isinstance(example, bool):
        return isinstance(value, bool) and isinstance(example, bool)
    for kind in (numbers.Integral, numbers.Real):
        if isinstance(example, kind):
            return isinstance(value, kind)
    return isinstance(value, type(example))


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Mapping[str, Any] | None = None
    grid: Sequence[float] | None = None  # the values `--sampler grid` tries

    expected = "float"

    def takes(self, value: Any) -> bool:
        return of_type(value, 0.0)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False
    step: int = 1
    when: Mapping[str, Any] | None = None
    grid: Sequence[int] | None = None

    expected = "int"

    def takes(self, value: Any) -> bool:
        return of_type(value, 0)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class Categorical:
    choices: Sequence[Any]
    when: Mapping[str, Any] | None = None

    @property
    def grid(self) -> Sequence[Any]:
        return self.choices

    @property
    def expected(self) -> str:
        return " or ".join(sorted({type(choice).__name__ for choice in self.choices}))

    def takes(self, value: Any) -> bool:
        return any(of_type(value, choice) for choice in self.choices)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(self.choices))

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.choices))


Knob = Float | Int | Categorical
DIRECTIONS = ("minimize", "maximize")
SEARCHES = ("first", "pareto")  # the first objective alone drives the search, or every objective jointly

Constraints = dict[str, tuple[float, float]]
"""Metrics a study's search keeps within [low, high], by name (±inf for an open side): ``{"predicted_fg_fraction": (0.3, 0.7)}``."""


def constraint_problem(metric: str, low: float, high: float, declared: Sequence[str]) -> str | None:
    """What is wrong with keeping ``metric`` within [low, high] in a space that declares the metrics ``declared``; None if nothing."""
    if metric not in declared:
        return (
            f"bounds {metric}, which is neither an objective nor a HEADLINES metric of the space; "
            f"bound one of {', '.join(declared)}, or declare {metric} in the space's HEADLINES"
        )
    if not low <= high:  # NaN included
        return f"bounds {metric} to the empty range {low:g}..{high:g}; give LOW <= HIGH"
    if math.isinf(low) and math.isinf(high):
        return f"bounds {metric} on neither side; give LOW, HIGH or both"
    return None


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str = "minimize"


@dataclass(frozen=True)
class Budget:
    max_epochs: int
    grace_period: int = 1
    reduction_factor: int = 3
    trials: int = 20


@dataclass(frozen=True)
class AshaSettings:
    """ASHA's settings for a run: where its rungs are. Stored on the study, so readers draw the same rungs."""

    max_epochs: int
    grace_period: int
    reduction_factor: int
    brackets: int = 1  # ASHA's brackets (Ray's): how many rungs a new trial may be first judged at
    # No trial repeating an earlier one's first epochs, past the last rung only one that may still end better than the
    # best fully trained one (studies.driver.rungs).
    gated: bool = False

    @property
    def rungs(self) -> list[int]:
        """The epochs at which ASHA compares trials: grace_period × reduction_factor^k ≤ max_epochs."""
        rungs, epoch = [], self.grace_period
        while epoch <= self.max_epochs:
            rungs.append(epoch)
            epoch *= self.reduction_factor
        return rungs

    @property
    def first_rungs(self) -> list[int]:
        """Where each bracket first judges a trial: the lowest ``brackets`` rungs short of the highest."""
        return self.rungs[: max(1, min(self.brackets, len(self.rungs) - 1))]

    @property
    def gate_rung(self) -> int | None:
        """With ``gated``, the last rung short of ``max_epochs``: past it goes only a trial that, gaining from there as much as
        any trial that trained every epoch did, would end better than the best of them (studies.driver.rungs); None without
        a gate."""
        below_last_epoch = [rung for rung in self.rungs if rung < self.max_epochs]
        return below_last_epoch[-1] if self.gated and below_last_epoch else None


@dataclass(frozen=True)
class Resources:
    """What one trial holds, in Ray Tune's terms.

    ``Resources(cpus=1, gpus=0.25)`` packs four trials on one GPU; ``Resources(gpus=2)`` trains each
    trial with Lightning DDP over two GPUs, one process per GPU (Ray Train workers in a placement
    group); ``Resources(workers=2)`` is the same DDP trial on two CPU processes (gloo).
    """

    cpus: float = 1  # per training process
    gpus: float = 0  # per trial: a fraction up to 1 shares a GPU, a whole number above 1 means one DDP process per GPU
    workers: int | None = None  # DDP processes per trial; default one per GPU when gpus > 1, else one

    @property
    def processes(self) -> int:
        """Training processes per trial: more than one is a DDP trial."""
        return int(self.workers or max(1, self.gpus))

    def with_gpus(self, gpus: float) -> Resources:
        """These resources with another GPU count per trial (``--gpus-per-trial``); the processes follow it."""
        return replace(self, gpus=gpus, workers=None)

    def problem(self) -> str | None:
        """What is wrong with these resources, in one line; None when they can be used."""
        given = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        not_numbers = [f"{name}={value!r}" for name, value in given.items() if not of_type(value, 0.0)]
        if not_numbers:
            return f"takes numbers, not {', '.join(not_numbers)}"
        if not (self.cpus > 0 and math.isfinite(self.cpus)):
            return f"needs cpus > 0 per process (got {self.cpus})"
        if not (self.gpus >= 0 and math.isfinite(self.gpus)):
            return f"needs gpus >= 0 (got {self.gpus})"
        if self.gpus > 1 and self.gpus != int(self.gpus):
            return f"gpus is a fraction up to 1 (trials share a GPU) or a whole number (one DDP process per GPU), not {self.gpus}"
        if self.workers is not None and (self.workers != int(self.workers) or self.workers < 1):
            return f"workers is a whole number of DDP processes >= 1 (got {self.workers})"
        if self.processes > 1 and self.gpus not in (0, self.processes):
            return f"a DDP trial of {self.processes} processes takes gpus={self.processes} (one each) or gpus=0 (CPU, gloo), not {self.gpus}"
        return None


@dataclass
class Space:
    """A loaded, validated search-space module."""

    name: str
    path: Path
    config: dict[str, Any]
    knobs: dict[str, Knob]
    fixed: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    objectives: list[Objective]
    budget: Budget
    resources: Resources
    trainer: type
    sampler: str = DEFAULT_SAMPLER
    headlines: list[str] = field(default_factory=list)
    search: str = "first"  # one of SEARCHES
    constraints: Constraints = field(default_factory=dict)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    warm_start: str | None = None  # the fixed CONFIG path a phase's starting weights go to
    module: ModuleType | None = field(default=None, repr=False)

    @property
    def file_sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def fingerprint(self) -> str:
        """Hash of what the study depends on (knobs and objectives), not of comments or layout."""
        described = {
            "knobs": {name: repr(knob) for name, knob in sorted(self.knobs.items())},
            "objectives": [(o.name, o.direction) for o in self.objectives],
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]

    def asha(
        self, max_epochs: int | None = None, prune: bool = True, brackets: int = 1, gated: bool = False
    ) -> AshaSettings:
        """ASHA's rungs for a run of ``max_epochs`` (default: the budget's); unpruned, the only rung is the last epoch."""
        max_epochs = max_epochs or self.budget.max_epochs
        grace = min(self.budget.grace_period, max_epochs) if prune else max_epochs
        return AshaSettings(max_epochs, grace, self.budget.reduction_factor, brackets, gated)

    def objective(self, name: str) -> Objective | None:
        return next((o for o in self.objectives if o.name == name), None)

    @property
    def declared_metrics(self) -> list[str]:
        """The metrics the space names: its objectives, then its HEADLINES (what a constraint may bound)."""
        return [o.name for o in self.objectives] + self.headlines

    def active(self, name: str, params: Mapping[str, Any]) -> bool:
        """Whether a conditional knob is searched, given the values chosen so far."""
        when = self.knobs[name].when or {}
        return all(params.get(parent) == value for parent, value in when.items())

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Ask Optuna for every active knob, parents before their conditional children."""
        params: dict[str, Any] = {}
        for name in self.knobs:
            if self.active(name, params):
                params[name] = self.knobs[name].suggest(trial, name)
        return params

    def training_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The full nested training config: fixed values, and the knobs' values at their places."""
        values = {**self.fixed, **params}
        return nest(values, order=flatten(self.config).keys())

    def check_training_config(self, config: Mapping[str, Any], source: str) -> None:
        """A training config this space's trainer can take (``tune train --config``), or :class:`SpaceError` naming ``source``.

        Its keys are those of the trainer's ``DEFAULTS`` (of ``CONFIG`` for a trainer without them), sections are
        mappings, each knob's value has the knob's type, and the trainer's own checks pass.
        """
        from trainers.base import resolve_config

        try:
            resolve_config(config, self.config if self.trainer.DEFAULTS is None else self.trainer.DEFAULTS)
            given = flatten(config)
            for name, knob in self.knobs.items():
                if name in given and not knob.takes(given[name]):
                    value = given[name]
                    raise TypeError(f"config key {name} is {value!r}, a {type(value).__name__}; the knob takes {knob.expected}")
            self.trainer().resolve(config)
        except (ValueError, TypeError) as exc:  # resolve's words: unknown keys, values in place of sections, the family's checks
            raise SpaceError(f"{source}: {exc}") from exc

    def grid(self, only: Sequence[str] | None = None) -> dict[str, list[Any]]:
        """The grid ``--sampler grid`` walks: every knob's ``grid=`` values, or only those of the knobs named."""
        names = list(only or self.knobs)
        unknown = [n for n in names if n not in self.knobs]
        if unknown:
            raise SpaceError(f"--grid-knobs names {', '.join(unknown)}, not knobs of {self.name}; its knobs: {', '.join(self.knobs)}")
        missing = [n for n in names if not self.knobs[n].grid]
        if missing:
            raise SpaceError(
                f"--sampler grid needs grid=[...] values on every gridded knob; {self.name} lacks them on {', '.join(missing)}"
                " (or pass --grid-knobs to grid fewer knobs)"
            )
        if any(self.knobs[n].when for n in names):
            raise SpaceError(f"--sampler grid cannot search conditional knobs; use tpe or random for {self.name}")
        return {n: list(self.knobs[n].grid) for n in names}

    def held_at(self, baseline: str, gridded: Sequence[str]) -> dict[str, Any]:
        """The values of the knobs a partial grid leaves alone, taken from one documented baseline."""
        if baseline not in self.baselines:
            raise SpaceError(f"--grid-base {baseline!r} is not a baseline of {self.name}; its baselines: {', '.join(self.baselines)}")
        held = {n: v for n, v in self.baselines[baseline].items() if n not in gridded}
        unset = [n for n in self.knobs if n not in gridded and n not in held and not self.knobs[n].when]
        if unset:
            raise SpaceError(f"baseline {baseline!r} does not set {', '.join(unset)}; add them to --grid-knobs or pick another --grid-base")
        return held


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, keeping order; knobs are leaves."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{path}."))
        else:
            flat[path] = value
    return flat


def nest(flat: Mapping[str, Any], order: Sequence[str] | None = None) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``; keys follow ``order`` where given."""
    keys = [k for k in (order or []) if k in flat] + [k for k in flat if k not in set(order or [])]
    nested: dict[str, Any] = {}
    for dotted in keys:
        *parents, leaf = dotted.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = flat[dotted]
    return nested


def space_file(path: str | Path) -> Path:
    """The search-space file at ``path``, resolved; :class:`SpaceError` if there is none. Cheap: commands check it first."""
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise SpaceError(f"search space {path} does not exist; pass the path of a .py file such as search_spaces/vesuvius.py")
    return resolved


def load_module(path: str | Path) -> ModuleType:
    """Import a Python file by path (its folder becomes importable, as with ``python FILE``)."""
    path = space_file(path)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"tune_space_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise SpaceError(f"search space {path} is not a Python module; pass a .py file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SystemExit as exc:  # exit 0 would end `tune` as if it had run
        raise SpaceError(
            f"search space {path.name} called sys.exit({exc.code!r}) on import; a search space only declares: remove it"
        ) from exc
    except Exception as exc:  # the user's file: any error is reported in one line
        raise SpaceError(f"search space {path.name} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


REQUIRED = ("CONFIG", "OBJECTIVES", "BUDGET", "TRAINER")


def load_space(path: str | Path) -> Space:
    """Load and validate a search-space module; raises :class:`SpaceError` with what to fix."""
    module = load_module(path)
    path = Path(path).resolve()
    where = path.name
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise SpaceError(f"{where} lacks {', '.join(missing)}; a search space declares {', '.join(REQUIRED)} (see README)")
    if not isinstance(module.CONFIG, Mapping):
        raise SpaceError(f"{where}: CONFIG must be a nested dict of fixed values and knobs")
    flat = flatten(module.CONFIG)
    knobs = {name: value for name, value in flat.items() if isinstance(value, (Float, Int, Categorical))}
    fixed = {name: value for name, value in flat.items() if name not in knobs}
    if not knobs:
        raise SpaceError(f"{where}: CONFIG has no knob; mark what to search with Float, Int or Categorical")
    for name, knob in knobs.items():
        _check_knob(where, name, knob, knobs)
    objectives = list(module.OBJECTIVES) if isinstance(module.OBJECTIVES, (list, tuple)) else []
    if not objectives or not all(isinstance(o, Objective) for o in objectives):
        raise SpaceError(
            f"{where}: OBJECTIVES must be a non-empty list of Objective(name, direction) (got {reprlib.repr(module.OBJECTIVES)})"
        )
    for objective in objectives:
        if not (isinstance(objective.name, str) and objective.name):
            raise SpaceError(f"{where}: an objective's name is the metric it reads, such as 'val_loss' (got {objective.name!r})")
        if objective.direction not in DIRECTIONS:
            raise SpaceError(f"{where}: objective {objective.name} has direction {objective.direction!r}; use minimize or maximize")
    budget = module.BUDGET
    if not isinstance(budget, Budget):
        raise SpaceError(f"{where}: BUDGET must be Budget(max_epochs=..., grace_period=..., reduction_factor=..., trials=...)")
    not_counts = [f"{f.name}={getattr(budget, f.name)!r}" for f in fields(budget) if not of_type(getattr(budget, f.name), 0)]
    if not_counts:
        raise SpaceError(f"{where}: BUDGET takes whole numbers, not {', '.join(not_counts)}")
    if not (1 <= budget.grace_period <= budget.max_epochs) or budget.reduction_factor < 2 or budget.trials < 1:
        raise SpaceError(
            f"{where}: BUDGET needs 1 <= grace_period <= max_epochs, reduction_factor >= 2 and trials >= 1 (got {budget})"
        )
    resources = getattr(module, "RESOURCES", Resources())
    if not isinstance(resources, Resources):
        raise SpaceError(f"{where}: RESOURCES must be Resources(cpus=..., gpus=..., workers=...) (got {resources!r})")
    if resources.problem():
        raise SpaceError(f"{where}: RESOURCES {resources.problem()}")
    trainer = module.TRAINER
    from trainers.base import TrainerFamily

    if not (isinstance(trainer, type) and issubclass(trainer, TrainerFamily)):
        raise SpaceError(f"{where}: TRAINER must be a trainers.base.TrainerFamily subclass (got {trainer!r})")
    sampler = getattr(module, "SAMPLER", DEFAULT_SAMPLER)
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise SpaceError(f"{where}: SAMPLER {sampler!r} is unknown; use one of {', '.join(SAMPLERS)}")
    declared_baselines = getattr(module, "BASELINES", {})
    if not (isinstance(declared_baselines, Mapping) and all(isinstance(each, Mapping) for each in declared_baselines.values())):
        shown = reprlib.repr(declared_baselines)
        raise SpaceError(f"{where}: BASELINES must be {{name: {{knob: value}}}}, the log's configs by its names (got {shown})")
    baselines = {name: flatten(values) for name, values in declared_baselines.items()}
    for name, values in baselines.items():
        _check_settings(where, f"baseline {name!r}", values, knobs)
    headlines = getattr(module, "HEADLINES", [])
    if not (isinstance(headlines, (list, tuple)) and all(isinstance(name, str) and name for name in headlines)):
        raise SpaceError(f"{where}: HEADLINES must be a list of metric names (got {reprlib.repr(headlines)})")
    headlines = list(headlines)
    search = _search(where, module, objectives, sampler)
    constraints = _constraints(where, module, [o.name for o in objectives] + headlines)
    phases, warm_start = _phases(where, module, knobs, fixed)
    return Space(
        name=path.stem,
        path=path,
        config=dict(module.CONFIG),
        knobs=knobs,
        fixed=fixed,
        baselines=baselines,
        objectives=objectives,
        budget=budget,
        resources=resources,
        trainer=trainer,
        sampler=sampler,
        headlines=headlines,
        search=search,
        constraints=constraints,
        phases=phases,
        warm_start=warm_start,
        module=module,
    )


def _check_settings(where: str, owner: str, values: Mapping[str, Any], knobs: Mapping[str, Knob]) -> None:
    """Knob values a baseline or a phase sets: each a knob of CONFIG, within its range."""
    for knob_name, value in values.items():
        if knob_name not in knobs:
            raise SpaceError(f"{where}: {owner} sets {knob_name}, which is not a knob in CONFIG")
        knob = knobs[knob_name]
        if not knob.takes(value):
            raise SpaceError(
                f"{where}: {owner} sets {knob_name}={value!r}, a {type(value).__name__}; the knob takes {knob.expected}"
            )
        if isinstance(knob, Categorical):
            if not any(of_type(value, choice) and value == choice for choice in knob.choices):
                raise SpaceError(f"{where}: {owner} sets {knob_name}={value!r}, not one of the knob's choices; add it to them")
            continue
        distribution = knob.distribution()
        if not distribution._contains(distribution.to_internal_repr(value)):
            raise SpaceError(f"{where}: {owner} sets {knob_name}={value!r}, outside the knob's range; widen the range to span it")


def _search(where: str, module: ModuleType, objectives: Sequence[Objective], sampler: str) -> str:
    """``SEARCH``, validated: a Pareto search needs two objectives, and a declared SAMPLER that searches them jointly."""
    search = getattr(module, "SEARCH", "first")
    if search not in SEARCHES:
        raise SpaceError(f'{where}: SEARCH {search!r} is unknown; use "first" (the first objective drives it) or "pareto"')
    if search == "pareto" and len(objectives) < 2:
        raise SpaceError(f'{where}: SEARCH = "pareto" needs two or more OBJECTIVES; it declares {objectives[0].name} only')
    if search == "pareto" and hasattr(module, "SAMPLER") and not SAMPLERS[sampler].pareto:
        joint = ", ".join(method.name for method in SAMPLERS.values() if method.pareto)
        raise SpaceError(f'{where}: SAMPLER {sampler!r} searches one objective; SEARCH = "pareto" takes one of {joint}')
    return search


def _constraints(where: str, module: ModuleType, declared: Sequence[str]) -> Constraints:
    """``CONSTRAINTS``, validated: each a declared metric with a range ``(LOW, HIGH)``, ``None`` for an open side."""
    given = getattr(module, "CONSTRAINTS", {})
    shape = f'{where}: CONSTRAINTS must map a metric to (LOW, HIGH), None for an open side, e.g. {{"predicted_fg_fraction": (0.3, 0.7)}}'
    if not isinstance(given, Mapping):
        raise SpaceError(f"{shape} (got {given!r})")
    constraints: Constraints = {}
    for metric, limits in given.items():
        numbers = isinstance(limits, (tuple, list)) and len(limits) == 2
        if not numbers or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in limits):
            raise SpaceError(f"{shape} (got {metric!r}: {limits!r})")
        low = -math.inf if limits[0] is None else float(limits[0])
        high = math.inf if limits[1] is None else float(limits[1])
        problem = constraint_problem(str(metric), low, high, declared)
        if problem:
            raise SpaceError(f"{where}: CONSTRAINTS {problem}")
        constraints[str(metric)] = (low, high)
    return constraints


def _phases(where: str, module: ModuleType, knobs: Mapping[str, Knob], fixed: Mapping[str, Any]) -> tuple[dict, str | None]:
    """``PHASES`` and ``WARM_START``, validated: each phase's settings are knobs in range; WARM_START a fixed value."""
    declared = getattr(module, "PHASES", None)
    if declared is None:
        return {}, None
    if not isinstance(declared, Mapping) or not declared:
        raise SpaceError(f"{where}: PHASES must be {{name: {{knob: value}}}} in the order the phases run (got {declared!r})")
    warm_start = getattr(module, "WARM_START", None)
    if not isinstance(warm_start, str) or warm_start not in fixed:
        raise SpaceError(f"{where}: WARM_START must name a fixed value of CONFIG: the path of the starting weights (got {warm_start!r})")
    phases = {}
    for name, settings in declared.items():
        if not isinstance(settings, Mapping):
            raise SpaceError(f"{where}: phase {name!r} must be a mapping of knob values (got {settings!r})")
        phases[str(name)] = flatten(settings)
        _check_settings(where, f"phase {name!r}", phases[str(name)], knobs)
    return phases, warm_start


def _check_knob(where: str, name: str, knob: Knob, knobs: Mapping[str, Knob]) -> None:
    if knob.when is not None and not isinstance(knob.when, Mapping):
        raise SpaceError(
            f"{where}: knob {name} takes when={{knob: value}}, an earlier knob's value (got {reprlib.repr(knob.when)})"
        )
    if isinstance(knob, (Float, Int)):
        if not (knob.takes(knob.low) and knob.takes(knob.high)):
            raise SpaceError(f"{where}: knob {name} needs low and high of type {knob.expected} (got {knob.low!r}, {knob.high!r})")
        if not (math.isfinite(knob.low) and math.isfinite(knob.high) and knob.low < knob.high):
            raise SpaceError(f"{where}: knob {name} needs low < high (got {knob.low}, {knob.high})")
        if knob.log and knob.low <= 0:
            raise SpaceError(f"{where}: knob {name} is log-scaled, so low must be > 0 (got {knob.low})")
    elif not knob.choices:
        raise SpaceError(f"{where}: knob {name} has no choices")
    try:
        knob.distribution()
    except (ValueError, TypeError) as exc:  # Optuna's own checks: a step that does not divide the range, choices that are no list
        raise SpaceError(f"{where}: knob {name} is invalid: {exc}") from exc
    order = list(knobs)
    for parent in knob.when or {}:
        if parent not in knobs or order.index(parent) > order.index(name):
            raise SpaceError(f"{where}: knob {name} depends on {parent}, which must be a knob declared before it")
