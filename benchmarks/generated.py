"""Generated learning-curve tasks: many random problems, each drawn from a seed, none seen when the searchers were built.

The synthetic family has two hand-made problems and the recorded one three spaces; a search tuned to
them could still fail on curves of another shape. Each task here is drawn at random, from its index,
within the ranges below, so that the family spans what real learning curves do (LCBench, Zimmer et al.,
TPAMI 2021; the parametric curve families of Domhan et al., IJCAI 2015):

- **Knobs:** a log-scaled ``learning_rate`` and 2 to 6 of weight decay, dropout, width, depth, momentum,
  warm-up share and batch size (floats and ints, log-scaled or not), and in half the tasks a categorical
  ``optimizer`` of 2 to 4 choices that moves both the asymptote and the best learning rate.
- **Final loss landscape** over the knobs in unit coordinates ``u``: a weighted bowl about a random
  centre (a third of the knobs barely matter) minus 1 to 6 Gaussian wells of random depth and width, so
  some tasks are smooth and some have several modes.
- **Curve:** ``y(e) = G(u) + R (1 + pace(u) e) ** -alpha``, a power law (``alpha`` 0.5 to 2 per task) from
  about ``G + R`` towards the asymptote ``G``. The pace grows with the learning rate and, by a per-task
  ``crossing`` of 0 to 3, with a worse asymptote: at ``crossing`` 0 the early ranking holds to the end, at 3
  the configs that lead at epoch 1 are mostly the ones that end worse, so ASHA's early rungs mislead.
- **Divergence** in about half the tasks: a learning rate above a per-task limit gives NaN from an epoch
  that comes sooner the further past the limit it is; such a config never trains every epoch.
- **Noise:** each observed value gets independent Gaussian noise, its std per task 0.02 to 0.15 of the
  scale below, deterministic in (seed, config, epoch) as in ``benchmarks/curves.py``.
- **Scale and regret:** values are shifted and scaled so that the best final value is 0 and the median
  over random configs is 1; the regret of a config is its noise-free final value. The best is the least of
  20 000 random configs refined by L-BFGS-B (ints as continuous, so it bounds every int config from below);
  a config better than that refinement found counts as regret 0, as in ``benchmarks/yahpo.py``.
- **Epochs:** 27 or 52 (LCBench's), per task.

**Corner tasks** (:func:`corner_problems`) are drawn as the others and then given a best config in a corner of the space,
as flyvis's was (benchmarks/RESULTS.md, "The researchers' own problems": the log's grid found 0.1428 at its least batch
size and greatest learning rate, where 190 random configs recorded never beat the log's baseline): on 2 or 3 numeric
knobs the bowl's centre lies 0.1 to 0.4 of the range past one end, those knobs all matter, and one well more, deeper
than the others and narrow on those knobs (0.04 to 0.1 of the range), sits at that end. Either end of the learning
rate can be the corner's; at its high end the task does not diverge (a range a researcher set where the best rate is
its greatest ends below where training diverges).

**Many-knobs tasks** (:func:`many_knobs_problems`) are drawn as the others and then given 8 to 14 knobs more, of the kinds
the researchers' logs add to a trainer's (loss and class weights, temperatures, thresholds), so 12 to 20 numeric knobs in
all, as the spaces in ``search_spaces/`` have 10 to 22. A third of the added knobs matter as much as a trainer's (bowl
weights as the others', and the wells' widths on them 0.3 to 0.6 of the range); the rest move the loss 20 times less
and leave the wells as they are.

**Noisy tasks** (:func:`noisy_problems`) are drawn as the others and then given more noise: each observed value's own
0.1 to 0.4 of the scale (the others' 0.02 to 0.15), and an offset per run, 0.05 to 0.3, that moves the whole curve, as a
seed or a small validation set moves a real one: a run that looks good at its first epochs keeps looking good. The
regret is still the noise-free final value, so a search that trusts a lucky run is charged for it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy.optimize import minimize

from benchmarks.curves import epoch_noise
from benchmarks.recorded import category_code, unit_coordinate
from studies.space import Categorical, Float, Int, Knob

TASKS = 8
HELD_OUT_TASKS = 16
# Sets of HELD_OUT_TASKS tasks past the first TASKS, in order (benchmarks/default_search.py): once measured, tasks 8 to 23
# guided a choice of the default search, and tasks 24 to 39 its first-rung rule.
HELD_OUT_FAMILIES = ("once-held-out", "held-out")
# The tasks past those, none of them run before the unseen section (benchmarks/unseen.py) first measured them.
UNSEEN_FAMILY, UNSEEN_TASKS = "unseen", 32
# The tasks past those: benchmarks/documented.py's, each with the configs a log would document.
DOCUMENTED_FIRST_TASK, DOCUMENTED_TASKS = TASKS + HELD_OUT_TASKS * len(HELD_OUT_FAMILIES) + UNSEEN_TASKS, 16
# The tasks past those: benchmarks/corner.py's, each with its best config in a corner.
CORNER_FAMILY, CORNER_FIRST_TASK, CORNER_TASKS = "corner", DOCUMENTED_FIRST_TASK + DOCUMENTED_TASKS, 16
CORNER_PAST = (0.1, 0.4)  # how far past the range's end the bowl's centre lies on a corner knob, in unit coordinates
CORNER_WELL_WIDTH = (0.04, 0.1)  # the corner well's width on a corner knob; on the others it is an ordinary well's
# The tasks past those: benchmarks/many_knobs.py's, each with 8 to 14 more knobs, as the researchers' spaces have 10 to 22.
MANY_KNOBS_FAMILY, MANY_KNOBS_FIRST_TASK, MANY_KNOBS_TASKS = "many-knobs", CORNER_FIRST_TASK + CORNER_TASKS, 16
EXTRA_KNOBS = (8, 14)  # how many a many-knobs task adds, least and most
# The kinds of knob the researchers' logs add to a trainer's: search_spaces/vesuvius.py's loss weights, class weights and
# threshold, search_spaces/cabbi.py's temperatures (the ranges wider than theirs; a task's landscape is in unit coordinates).
EXTRA_KNOB_KINDS = {
    "loss_weight": Float(0.0, 2.0),
    "class_weight": Float(0.1, 10.0, log=True),
    "temperature": Float(0.01, 1.0, log=True),
    "threshold": Float(0.05, 0.95),
}
EXTRA_MATTER = 1 / 3  # the share of the added knobs that matter as much as a trainer's; the rest move the loss 20 times less
EXTRA_WELL_WIDTH = (0.3, 0.6)  # a well's width on an added knob that matters: wide, so that a well is not a needle in 20 knobs
# The tasks past those: benchmarks/noisy.py's, whose observed values are noisier than the others' (0.02 to 0.15).
NOISY_FAMILY, NOISY_FIRST_TASK, NOISY_TASKS = "noisy", MANY_KNOBS_FIRST_TASK + MANY_KNOBS_TASKS, 16
NOISY_EPOCH_STD = (0.1, 0.4)  # each observed value's own noise, of the scale, drawn log-uniformly per task
NOISY_RUN_STD = (0.05, 0.3)  # a run's whole curve moved by its seed, as a small validation set or a seed moves it
SAMPLES = 20_000  # random configs for the scale (median) and the starts of the refinement of the best
REFINED_STARTS = 8  # per optimizer choice: the best random configs refined by L-BFGS-B
OTHER_KNOBS = {  # what a trainer's knobs are like: their ranges and scales
    "weight_decay": Float(1e-6, 1e-1, log=True),
    "dropout": Float(0.0, 0.8),
    "width": Int(16, 1024, log=True),
    "layers": Int(1, 6),
    "momentum": Float(0.0, 0.99),
    "warmup_fraction": Float(0.0, 0.3),
    "batch_size": Int(16, 512, log=True),
}
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LEARNING_RATE = Float(1e-5, 1.0, log=True)


@dataclass(frozen=True, eq=False)  # eq=False: compared by identity, not by their arrays
class GeneratedTask:
    """One generated task (see the module's docstring); build it with :func:`generated_task`."""

    name: str
    description: str
    knobs: dict[str, Knob]
    max_epochs: int
    weights: np.ndarray = field(repr=False)  # [numeric knob]: the bowl's weights
    centre: np.ndarray = field(repr=False)  # [numeric knob]
    wells: tuple[np.ndarray, np.ndarray, np.ndarray] = field(repr=False)  # depths [k], centres [k, knob], widths [k, knob]
    choice_offset: np.ndarray = field(repr=False)  # [choice]: what the optimizer adds to the asymptote
    choice_lr_shift: np.ndarray = field(repr=False)  # [choice]: how it moves the best learning rate (unit coordinate)
    alpha: float = 1.0
    start_gap: float = 2.0  # R
    base_pace: float = 1.0
    lr_speed: float = 2.0
    crossing: float = 0.0
    diverge_above: float = math.inf  # in the learning rate's unit coordinate; inf: never diverges
    noise_std: float = 0.05
    run_noise_std: float = 0.0  # of one offset per run (seed and config) added to every epoch's value
    typical: tuple[float, float] = (0.0, 1.0)  # the asymptote's least and median over random configs: pace's scale
    scale: tuple[float, float] = (0.0, 1.0)  # the final value's best and median: 0 and 1 after scaling
    family: str = "generated"
    documented: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # a log's configs: benchmarks/documented.py
    corner: Mapping[str, int] = field(default_factory=dict)  # a corner task's corner: knob -> the end of its range (0 or 1)

    @property
    def numeric_knobs(self) -> list[str]:
        return [name for name, knob in self.knobs.items() if not isinstance(knob, Categorical)]

    def asymptote(self, unit: np.ndarray, choice: np.ndarray) -> np.ndarray:
        """``G``: the value a config's curve tends to, for rows of unit coordinates and optimizer codes."""
        shifted = unit.copy()
        shifted[:, 0] -= self.choice_lr_shift[choice]  # the learning rate is the first numeric knob
        bowl = (self.weights * (shifted - self.centre) ** 2).sum(axis=1) * 4 / self.weights.sum()
        depths, centres, widths = self.wells
        wells = (depths * np.exp(-0.5 * (((shifted[:, None, :] - centres) / widths) ** 2).sum(axis=2))).sum(axis=1)
        return bowl - wells + self.choice_offset[choice]

    def raw(self, unit: np.ndarray, choice: np.ndarray, epoch: float) -> np.ndarray:
        """The noise-free value at ``epoch`` before scaling; NaN where the config has diverged by then."""
        goal = self.asymptote(unit, choice)
        low, median = self.typical
        pace = self.base_pace * np.exp(self.lr_speed * (unit[:, 0] - 0.5) + self.crossing * ((goal - low) / (median - low) - 0.5))
        value = goal + self.start_gap * (1 + pace * epoch) ** -self.alpha
        past = unit[:, 0] - self.diverge_above
        diverges_at = np.where(past > 0, np.maximum(1, np.ceil(self.max_epochs * (1 - 4 * past))), np.inf)
        return np.where(epoch >= diverges_at, np.nan, value)

    def _encode(self, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        unit = np.array([[unit_coordinate(self.knobs[name], params[name]) for name in self.numeric_knobs]])
        optimizer = self.knobs.get("optimizer")
        choice = np.array([category_code(optimizer, params["optimizer"]) if optimizer else 0])
        return unit, choice

    def value(self, params: Mapping[str, Any], epoch: int) -> float:
        """The noise-free value at ``epoch``, scaled: 0 is the best final value, 1 the median one."""
        best, median = self.scale
        return float((self.raw(*self._encode(params), epoch)[0] - best) / (median - best))

    def observed(self, params: Mapping[str, Any], epoch: int, seed: int) -> float:
        observed = self.value(params, epoch) + epoch_noise(params, epoch, seed, self.noise_std)
        # Epoch 0, which no run reports: the run's own offset, the same at every epoch.
        return observed + epoch_noise(params, 0, seed, self.run_noise_std) if self.run_noise_std else observed

    def regret(self, params: Mapping[str, Any]) -> float:
        """The noise-free final value, 0 at the least (a diverged config: NaN, never recommended: it does not train every epoch)."""
        return float(np.maximum(self.value(params, self.max_epochs), 0.0))  # NaN stays NaN


def generated_task(index: int, variant: str | None = None) -> GeneratedTask:
    """Task ``index``, drawn from its own seed: the same task on every machine and every run; ``variant`` (CORNER_FAMILY,
    MANY_KNOBS_FAMILY or NOISY_FAMILY): changed as the module's docstring says, the rest of the task as drawn without."""
    rng = np.random.default_rng([20261203, index])
    others = [str(name) for name in rng.choice(list(OTHER_KNOBS), size=rng.integers(2, 7), replace=False)]
    knobs: dict[str, Knob] = {"learning_rate": LEARNING_RATE, **{name: OTHER_KNOBS[name] for name in others}}
    choices = int(rng.integers(2, 5)) if rng.random() < 0.5 else 1
    if choices > 1:
        knobs["optimizer"] = Categorical(list(OPTIMIZERS[:choices]))
    dims = len(knobs) - (choices > 1)
    weights = rng.lognormal(0.0, 1.0, dims) * np.where(rng.random(dims) < 1 / 3, 0.05, 1.0)
    wells_count = int(rng.integers(1, 7))
    wells = (
        rng.uniform(0.2, 0.8, wells_count),
        rng.uniform(0.0, 1.0, (wells_count, dims)),
        rng.uniform(0.08, 0.35, (wells_count, dims)),
    )
    max_epochs = int(rng.choice([27, 52]))
    alpha = float(rng.uniform(0.5, 2.0))
    residual = rng.uniform(0.05, 0.3)  # of the start gap, left at the last epoch by a typical config
    diverges = rng.random() < 0.5
    task = GeneratedTask(
        name=f"generated_{index}",
        description="",
        knobs=knobs,
        max_epochs=max_epochs,
        weights=weights,
        centre=rng.uniform(0.2, 0.8, dims),
        wells=wells,
        choice_offset=np.concatenate([[0.0], rng.uniform(0.0, 0.3, choices - 1)]),
        choice_lr_shift=np.concatenate([[0.0], rng.normal(0.0, 0.15, choices - 1)]),
        alpha=alpha,
        start_gap=float(rng.uniform(1.0, 3.0)),
        base_pace=float((residual ** (-1 / alpha) - 1) / max_epochs),
        lr_speed=float(rng.uniform(1.0, 4.0)),
        crossing=float(rng.uniform(0.0, 3.0)),
        diverge_above=float(rng.uniform(0.75, 0.95)) if diverges else math.inf,
        noise_std=float(np.exp(rng.uniform(math.log(0.02), math.log(0.15)))),
    )
    task = _widened(task, index) if variant == MANY_KNOBS_FAMILY else _noisier(task, index) if variant == NOISY_FAMILY else task
    task, corner_point = _cornered(task, index) if variant == CORNER_FAMILY else (task, None)
    dims = len(task.numeric_knobs)
    unit, choice = rng.uniform(0.0, 1.0, (SAMPLES, dims)), rng.integers(0, choices, SAMPLES)
    goals = task.asymptote(unit, choice)
    task = dataclasses.replace(task, typical=(float(goals.min()), float(np.median(goals))))
    finals = task.raw(unit, choice, max_epochs)
    starts = [] if corner_point is None else [corner_point]  # the corner itself: few random configs fall in its well
    best = min(_refined(task, unit[choice == c], c, finals[choice == c], starts) for c in range(choices))
    described = (
        f"{dims} numeric knobs{f' ({len(task.knobs) - len(knobs)} added)' if variant == MANY_KNOBS_FAMILY else ''}"
        f"{f' + optimizer ({choices})' if choices > 1 else ''}, {wells_count} well{'s' * (wells_count > 1)}, "
        f"{max_epochs} epochs, crossing {task.crossing:.1f}, {'diverges' if math.isfinite(task.diverge_above) else 'no divergence'}"
    )
    if task.corner:
        described += "; best in the corner " + ", ".join(f"{name} {('low', 'high')[end]}" for name, end in task.corner.items())
    return dataclasses.replace(task, scale=(best, float(np.nanmedian(finals))), description=described)


def local_optimum(task: GeneratedTask, start: np.ndarray, choice: int) -> tuple[np.ndarray, float]:
    """The local optimum of the final value that L-BFGS-B reaches from ``start`` (unit coordinates) with optimizer ``choice``,
    within the unit box, and its unscaled value: a config that diverges counts as 1e9, so the search stays off it."""

    def final(point: np.ndarray) -> float:
        value = task.raw(point[None, :], np.array([choice]), task.max_epochs)[0]
        return float(value) if math.isfinite(value) else 1e9

    found = minimize(final, start, method="L-BFGS-B", bounds=[(0.0, 1.0)] * len(start))
    return found.x, float(found.fun)


def _cornered(task: GeneratedTask, index: int) -> tuple[GeneratedTask, np.ndarray]:
    """``task`` with its best config moved into a corner (the module's docstring), drawn from ``index``; and the corner
    well's centre in unit coordinates."""
    rng = np.random.default_rng([20261207, index])
    dims = len(task.numeric_knobs)
    knobs = sorted(int(k) for k in rng.choice(dims, size=min(dims, int(rng.integers(2, 4))), replace=False))
    point = rng.uniform(0.0, 1.0, dims)
    point[knobs] = rng.integers(0, 2, len(knobs))
    # The learning rate is the first numeric knob; a range that ends at a best rate ends below where the task diverges.
    stable = 0 in knobs and point[0] == 1
    centre, weights = task.centre.copy(), task.weights.copy()
    past = rng.uniform(*CORNER_PAST, len(knobs))
    centre[knobs] = np.where(point[knobs] == 1, 1 + past, -past)
    weights[knobs] = rng.lognormal(0.5, 0.5, len(knobs))  # a corner knob matters: none is damped
    width = rng.uniform(0.15, 0.35, dims)
    width[knobs] = rng.uniform(*CORNER_WELL_WIDTH, len(knobs))
    depths, centres, widths = task.wells
    wells = (np.append(depths, max(depths.max(), 0.8) + 0.2), np.vstack([centres, point]), np.vstack([widths, width]))
    diverge_above = math.inf if stable else task.diverge_above
    ends = {task.numeric_knobs[k]: int(point[k]) for k in knobs}
    cornered = dataclasses.replace(task, centre=centre, weights=weights, wells=wells, diverge_above=diverge_above, corner=ends)
    return cornered, point


def _widened(task: GeneratedTask, index: int) -> GeneratedTask:
    """``task`` with EXTRA_KNOBS more numeric knobs (the module's docstring), drawn from ``index``; a third of them matter."""
    rng = np.random.default_rng([20261208, index])
    count = int(rng.integers(EXTRA_KNOBS[0], EXTRA_KNOBS[1] + 1))
    kinds = [str(kind) for kind in rng.choice(list(EXTRA_KNOB_KINDS), size=count)]
    added = {f"{kind}_{n}": EXTRA_KNOB_KINDS[kind] for n, kind in enumerate(kinds, start=1)}
    matters = rng.random(count) < EXTRA_MATTER
    weights = rng.lognormal(0.0, 1.0, count) * np.where(matters, 1.0, 0.05)
    depths, centres, widths = task.wells
    added_widths = np.where(matters, rng.uniform(*EXTRA_WELL_WIDTH, (len(depths), count)), np.inf)  # inf: no effect
    return dataclasses.replace(
        task,
        knobs={**task.knobs, **added},  # after the optimizer: the numeric knobs keep their order, the added ones last
        weights=np.concatenate([task.weights, weights]),
        centre=np.concatenate([task.centre, rng.uniform(0.2, 0.8, count)]),
        wells=(depths, np.hstack([centres, rng.uniform(0.0, 1.0, (len(depths), count))]), np.hstack([widths, added_widths])),
    )


def _noisier(task: GeneratedTask, index: int) -> GeneratedTask:
    """``task`` with its noise drawn from NOISY_EPOCH_STD and NOISY_RUN_STD (the module's docstring), from ``index``."""
    rng = np.random.default_rng([20261209, index])
    epoch_std, run_std = (
        float(np.exp(rng.uniform(math.log(low), math.log(high)))) for low, high in (NOISY_EPOCH_STD, NOISY_RUN_STD)
    )
    return dataclasses.replace(task, noise_std=epoch_std, run_noise_std=run_std)


def _refined(task: GeneratedTask, unit: np.ndarray, choice: int, finals: np.ndarray, starts: list[np.ndarray]) -> float:
    """The least final value with optimizer ``choice``: the best random configs and ``starts``, refined within the unit box."""
    best = unit[np.argsort(np.where(np.isfinite(finals), finals, np.inf))[:REFINED_STARTS]]
    return min(local_optimum(task, start, choice)[1] for start in [*best, *starts])


@functools.lru_cache(maxsize=None)
def generated_problems(count: int = TASKS) -> dict[str, GeneratedTask]:
    """The first ``count`` generated tasks, by name; built once per process."""
    tasks = (generated_task(index) for index in range(count))
    return {task.name: task for task in tasks}


def held_out_problems(family: str, count: int = HELD_OUT_TASKS) -> dict[str, GeneratedTask]:
    """The first ``count`` tasks of one of HELD_OUT_FAMILIES, drawn as the first TASKS are, named as that family."""
    return _family_problems(family, TASKS + HELD_OUT_TASKS * HELD_OUT_FAMILIES.index(family), count)


def unseen_problems(count: int = UNSEEN_TASKS) -> dict[str, GeneratedTask]:
    """The first ``count`` tasks past every held-out family's, named as UNSEEN_FAMILY."""
    return _family_problems(UNSEEN_FAMILY, TASKS + HELD_OUT_TASKS * len(HELD_OUT_FAMILIES), count)


def corner_problems(count: int = CORNER_TASKS) -> dict[str, GeneratedTask]:
    """The first ``count`` corner tasks (the module's docstring), past every other family's, named as CORNER_FAMILY."""
    return _family_problems(CORNER_FAMILY, CORNER_FIRST_TASK, count, variant=CORNER_FAMILY)


def many_knobs_problems(count: int = MANY_KNOBS_TASKS) -> dict[str, GeneratedTask]:
    """The first ``count`` many-knobs tasks (the module's docstring), past every other family's, named as MANY_KNOBS_FAMILY."""
    return _family_problems(MANY_KNOBS_FAMILY, MANY_KNOBS_FIRST_TASK, count, variant=MANY_KNOBS_FAMILY)


def noisy_problems(count: int = NOISY_TASKS) -> dict[str, GeneratedTask]:
    """The first ``count`` noisy tasks (the module's docstring), past every other family's, named as NOISY_FAMILY."""
    return _family_problems(NOISY_FAMILY, NOISY_FIRST_TASK, count, variant=NOISY_FAMILY)


def _family_problems(family: str, first: int, count: int, variant: str | None = None) -> dict[str, GeneratedTask]:
    tasks = (dataclasses.replace(generated_task(index, variant), family=family) for index in range(first, first + count))
    return {task.name: task for task in tasks}
