"""The one list of search methods: a name, a line of help, and a factory that builds its Optuna sampler.

``tune run --sampler NAME`` and a space's ``SAMPLER = "NAME"`` pick from :data:`SAMPLERS`; the CLI's
choices and help, and the space's validation, all read this table, so a new method is one entry here.

A factory gets the loaded space and the :class:`SamplerSettings` of the run and returns any
``optuna.samplers.BaseSampler``; the driver wraps it (knobs held fixed, the bridge to Ray Tune) and
never looks inside. A method of your own, for example from OptunaHub, is one call, made in the space
file before it names the method::

    from studies.samplers import SamplerSettings, register

    @register("qmc", "Optuna's quasi-Monte Carlo sampler: even coverage, no model")
    def qmc(space, settings: SamplerSettings):
        import optuna

        return optuna.samplers.QMCSampler(seed=settings.seed)

    SAMPLER = "qmc"

Factories import Optuna themselves, so that reading this table (``tune --help``) stays cheap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from studies.errors import UserInputError

if TYPE_CHECKING:  # the space module imports this table to validate SAMPLER: the type only, at check time
    import optuna

    from studies.space import Space


class SamplerError(UserInputError):
    """A search method that cannot be built as asked; the message says what to pass instead."""


@dataclass(frozen=True)
class SamplerSettings:
    """What a run tells the factory: the seed, and for a grid, which knobs to grid and which baseline holds the rest."""

    seed: int | None = None
    grid_knobs: Sequence[str] | None = None
    grid_base: str | None = None


Factory = Callable[["Space", SamplerSettings], "optuna.samplers.BaseSampler"]


@dataclass(frozen=True)
class SearchMethod:
    name: str
    summary: str  # one line, shown by `tune run --help` and the README's table
    build: Factory
    pareto: bool = False  # searches several objectives jointly (a Pareto study), not only the first
    brackets: int = 1  # ASHA's brackets the run gets: above 1, each new trial's first rung is chosen among them
    gated: bool = False  # ASHA stops trials that repeat an earlier one's curve or cannot beat the best finished one


SAMPLERS: dict[str, SearchMethod] = {}
DEFAULT_SAMPLER = "bohb-gated"  # measured in benchmarks/RESULTS.md, "The default search"
# TPE's multi-objective mode: NSGA-II draws its whole first generation (50 configs) at random, most of a default budget.
PARETO_SAMPLER = "tpe"


def register(
    name: str, summary: str, pareto: bool = False, brackets: int = 1, gated: bool = False
) -> Callable[[Factory], Factory]:
    """Add a search method under ``name`` (a decorator of its factory); a name already taken is refused.

    ``pareto``: the sampler it builds searches a multi-objective study (Optuna's ``directions``) jointly.
    ``brackets``: above 1, ASHA runs that many brackets and the driver first judges each new trial at the lowest
    rung not shown to mislead (:class:`studies.rung_tpe.FirstRungChoice`).
    ``gated``: ASHA stops a trial whose first two epochs repeat an earlier trial's exactly, and lets a trial past its last
    rung only if, gaining from there as much as any trial that trained every epoch did, it would end better than the best
    of them (:class:`studies.driver.rungs.StoredRungsASHA`)."""

    def add(factory: Factory) -> Factory:
        if name in SAMPLERS and SAMPLERS[name].build is not factory:
            raise SamplerError(f"search method {name!r} is already registered; register yours under another name")
        SAMPLERS[name] = SearchMethod(name, summary, factory, pareto, brackets, gated)
        return factory

    return add


def check_name(name: str) -> None:
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")


def method_for(asked: str | None, declared: str, pareto: bool) -> str:
    """The search method of a run: ``--sampler`` if given, else the space's; a Pareto search takes :data:`PARETO_SAMPLER`
    where the space's method searches one objective, and refuses a ``--sampler`` that does."""
    name = asked or declared
    check_name(name)
    if not pareto or SAMPLERS[name].pareto:
        return name
    if asked:
        joint = ", ".join(method.name for method in SAMPLERS.values() if method.pareto)
        raise SamplerError(f"--sampler {asked} searches one objective; a Pareto search takes one of {joint}")
    return PARETO_SAMPLER


def make_sampler(name: str, space: Space, settings: SamplerSettings = SamplerSettings()) -> optuna.samplers.BaseSampler:
    """The sampler of method ``name`` for ``space``."""
    check_name(name)
    return SAMPLERS[name].build(space, settings)


def described() -> str:
    """Every method in one line each: the ``--sampler`` help."""
    return "; ".join(f"{method.name}: {method.summary}" for method in SAMPLERS.values())


def hold(sampler: optuna.samplers.BaseSampler, values: dict[str, Any] | None) -> optuna.samplers.BaseSampler:
    """``sampler`` for every knob but those in ``values``, which keep their values (Optuna's PartialFixedSampler)."""
    if not values:
        return sampler
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.PartialFixedSampler(values, sampler)


@register("tpe", "Optuna's TPE with constant liar: parallel trials are not proposed the same config", pareto=True)
def _tpe(space: Space, settings: SamplerSettings) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=settings.seed, constant_liar=True)


# First rungs 1, 3 and 9 at ASHA's grace 1 and factor 3: judged first at a third of 27 epochs where both 1 and 3 mislead.
BOHB_BRACKETS = 3


@register(
    "bohb-gated",
    "bohb-brackets, and ASHA stops a trial whose first two epochs repeat an earlier trial's exactly, and trains a trial "
    "past its last rung only if, gaining from there as much as any trial that trained every epoch did, it would end better "
    "than the best of them (unless the finished trials show that rung misleading, as for a first rung): the epochs go to "
    "new configs, not to copies of the best",
    brackets=BOHB_BRACKETS,
    gated=True,
)
@register(
    "bohb-brackets",
    "bohb, each new trial first judged by ASHA at the first rung, or at a later one once the finished trials show the "
    "first rung's ranking reversed later or that it would stop the trial leading later (Hyper-Tune's bracket choice): "
    "as bohb, and better where early epochs mislead",
    brackets=BOHB_BRACKETS,
)
@register(
    "bohb",
    "BOHB's model on ASHA: TPE fitted on trials' values at the highest well-filled rung, no near-copies, "
    "half of the configs random (where the space has baselines, half of those a baseline and a quarter the leader, one or two "
    "knobs moved)",
)
def _bohb(space: Space, settings: SamplerSettings) -> optuna.samplers.BaseSampler:
    from studies.rung_tpe import RungTPESampler

    return RungTPESampler(seed=settings.seed, prior=list(space.baselines.values()))


@register("random", "independent uniform draws: the baseline every model-based method must beat", pareto=True)
def _random(space: Space, settings: SamplerSettings) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=settings.seed)


@register("grid", "every grid= value of every knob (or of --grid-knobs, the rest held at --grid-base)", pareto=True)
def _grid(space: Space, settings: SamplerSettings) -> optuna.samplers.BaseSampler:
    import optuna

    grid = optuna.samplers.GridSampler(space.grid(settings.grid_knobs), seed=settings.seed)
    if not settings.grid_knobs:
        return grid
    # A log's grid over a few knobs (flyvis: batch size x learning rate), the rest as one baseline has them.
    base = settings.grid_base or next(iter(space.baselines), None)
    if base is None:
        raise SamplerError(f"--grid-knobs needs a baseline of {space.name} to hold the other knobs at; the space has none")
    return hold(grid, space.held_at(base, settings.grid_knobs))


@register("cmaes", "Optuna's CMA-ES: continuous knobs, many trials")
def _cmaes(space: Space, settings: SamplerSettings) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.CmaEsSampler(seed=settings.seed, warn_independent_sampling=False)


@register("gp", "Optuna's Gaussian-process sampler: few, expensive trials", pareto=True)
def _gp(space: Space, settings: SamplerSettings) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.GPSampler(seed=settings.seed)


@register("nsga2", "Optuna's NSGA-II genetic search", pareto=True)
def _nsga2(space: Space, settings: SamplerSettings) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=settings.seed)
