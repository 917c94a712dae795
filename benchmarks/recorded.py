"""Tabular search-quality problems that replay learning curves recorded from this project's own trainers.

The curves are those of ``benchmarks/record_curves.py`` (``benchmarks/data/curves/<space>.jsonl.gz``):
real trainings of a space's baselines and random configs. A problem answers for any config of the
space's knobs with its nearest recorded config:

- Nearest: the least Euclidean distance over the knobs in normalised coordinates: ``(x - low) /
  (high - low)`` (in log space for log-scaled knobs; Int like Float), a Categorical mismatch counts 1,
  and an inactive conditional knob is a value of its own (1 from any active value, 0 from inactive).
  Ties go to the config recorded first.
- Metric: the space's first objective when it is minimised (``val_mse`` for CABBI and AbAg, whose
  ``val_loss`` carries each trial's own loss weights and so is no common yardstick; ``val_loss`` for
  flyvis), named ``metric``.
- ``observed(params, epoch, seed)``: the nearest config's recorded value at ``epoch`` plus Gaussian
  noise, deterministic in (seed, nearest config, epoch). A config that failed (raised or went
  non-finite) at epoch ``e`` observes NaN from ``e`` on, so a study records it as FAIL.
- Noise model: independent Gaussian per epoch, its std that of the nearest config's own
  epoch-to-epoch jitter, estimated robustly: the median absolute second difference
  ``|y[t+1] - 2 y[t] + y[t-1]|`` over the last third of its epochs, divided by ``0.6745 * sqrt(6)``
  (for white noise of std s the second difference has std ``sqrt(6) s``, and a Gaussian's median
  absolute value is 0.6745 std; over the last third a curve's own curvature is small next to its
  jitter). Per config, not pooled: a stalled curve barely moves while an unstable one jumps, and a
  pooled median is set by the many flat ones (CABBI's first dozen: 6e-6 pooled, 5e-4 on a moving
  curve). A config that failed before its last third takes the median of the others' stds. A
  replayed run thus jitters as much as its config's recorded training did; the spread between seeds
  of whole curves (a different start) is not modelled, since each config was trained once.
- ``loss(params)``: the noise-free final value: the nearest config's recorded value at
  ``max_epochs``; a failed config counts as the worst final value recorded.
- ``regret(params)``: normalised, ``(loss(params) - best) / (median - best)`` with best and median
  over the losses of all recorded configs (failed ones at the worst): the best recorded config is 0,
  a typical random config about 1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from benchmarks.record_curves import read_records
from studies.space import Categorical, Knob, load_space

REPO = Path(__file__).resolve().parents[1]
CURVES = REPO / "benchmarks" / "data" / "curves"
SUFFIX = ".jsonl.gz"
JITTER_TAIL = 1 / 3  # of the epochs, where the curves have flattened and what moves them is noise
GAUSSIAN_MAD = 0.6745  # median |X| / std of a Gaussian X
INACTIVE = -1  # the code of an inactive conditional Categorical: a value of its own


def unit_coordinate(knob: Knob, value: Any) -> float:
    """A Float or Int value in [0, 1] over its range, in log space for a log-scaled knob."""
    low, high, value = float(knob.low), float(knob.high), float(value)
    if knob.log:
        low, high, value = math.log(low), math.log(high), math.log(value)
    return (value - low) / (high - low)


def category_code(knob: Categorical, value: Any) -> int:
    """The index of a Categorical value among its choices (``True`` is not ``1``, though ``1.0`` is ``1``)."""
    for code, choice in enumerate(knob.choices):
        if choice == value and isinstance(choice, bool) == isinstance(value, bool):
            return code
    raise ValueError(f"{value!r} is not one of the choices {list(knob.choices)}")


def jitter_stds(curves: np.ndarray) -> np.ndarray:
    """Each curve's (row's) epoch-to-epoch noise std: the median |second difference| over its last third, scaled.

    A curve with no finite second difference there (it failed before) gets the median of the others'.
    """
    tail = curves[:, -max(3, math.ceil(curves.shape[1] * JITTER_TAIL)) :]
    second_differences = np.abs(tail[:, 2:] - 2 * tail[:, 1:-1] + tail[:, :-2])
    medians = np.array([np.median(row[np.isfinite(row)]) if np.isfinite(row).any() else math.nan for row in second_differences])
    known = medians[np.isfinite(medians)]
    medians[~np.isfinite(medians)] = np.median(known) if known.size else 0.0
    return medians / (GAUSSIAN_MAD * math.sqrt(6))


def curve(record: Mapping[str, Any], metric: str, max_epochs: int) -> list[float]:
    """A record's metric per epoch, NaN from the epoch it failed on: its first with a non-finite metric or
    val_loss (what stops a trial), else the one after its last for a config that raised (the last at the latest)."""
    values = [math.nan] * max_epochs
    for position, metrics in enumerate(record["epochs"][:max_epochs]):
        value, val_loss = metrics.get(metric), metrics.get("val_loss")
        if value is None or val_loss is None or not (math.isfinite(value) and math.isfinite(val_loss)):
            return values
        values[position] = float(value)
    if record["error"] is not None:
        failed_at = min(len(record["epochs"]), max_epochs - 1)  # the failing epoch's position
        values[failed_at:] = [math.nan] * (max_epochs - failed_at)
    return values


@dataclass(frozen=True, eq=False)  # eq=False: problems are compared by identity, not by their arrays
class RecordedCurves:
    """One space's recorded curves as a replay problem (see the module's docstring for the model)."""

    name: str
    description: str
    knobs: dict[str, Knob]
    max_epochs: int
    metric: str
    params: list[dict[str, Any]] = field(repr=False)  # the recorded configs, in recording order
    curves: np.ndarray = field(repr=False)  # [config, epoch - 1]: the metric; NaN from a failure on
    noise_std: np.ndarray = field(repr=False)  # [config]: the std of the noise on its observed values
    family: str = "recorded"
    _numeric: np.ndarray = field(init=False, repr=False)  # [config, numeric knob]; NaN: inactive
    _inactive: np.ndarray = field(init=False, repr=False)  # where _numeric is NaN
    _categories: np.ndarray = field(init=False, repr=False)  # [config, categorical knob]
    _nearest: dict[tuple, int] = field(init=False, repr=False)  # params -> config index

    def __post_init__(self) -> None:
        encoded = [self._encode(params) for params in self.params]
        object.__setattr__(self, "_numeric", np.array([numeric for numeric, _ in encoded]).reshape(len(encoded), -1))
        object.__setattr__(self, "_inactive", np.isnan(self._numeric))
        object.__setattr__(self, "_categories", np.array([codes for _, codes in encoded]).reshape(len(encoded), -1))
        object.__setattr__(self, "_nearest", {})

    @classmethod
    def from_file(cls, path: str | Path) -> RecordedCurves:
        """The problem of one curve file, over the knobs of its space, ``search_spaces/<space>.py``."""
        records, _ = read_records(Path(path))
        if not records:
            raise ValueError(f"{path} holds no recorded config")
        space_name = records[0]["space"]
        space = load_space(REPO / "search_spaces" / f"{space_name}.py")
        max_epochs = {record["max_epochs"] for record in records}
        if len(max_epochs) != 1:
            raise ValueError(f"{path} mixes trainings of {sorted(max_epochs)} epochs; one problem replays one budget")
        epochs = max_epochs.pop()
        first = space.objectives[0]
        metric = first.name if first.direction == "minimize" else "val_loss"
        curves = np.array([curve(record, metric, epochs) for record in records])
        return cls(
            name=f"recorded_{space_name}",
            description=f"{space_name}: {len(records)} recorded {space.trainer.__name__} trainings, {metric}, {epochs} epochs",
            knobs=dict(space.knobs),
            max_epochs=epochs,
            metric=metric,
            params=[record["params"] for record in records],
            curves=curves,
            noise_std=jitter_stds(curves),
        )

    def _encode(self, params: Mapping[str, Any]) -> tuple[list[float], list[int]]:
        """Normalised coordinates of the numeric knobs (NaN when inactive) and codes of the categorical ones."""
        numeric, codes = [], []
        for name, knob in self.knobs.items():
            value = params.get(name)
            if isinstance(knob, Categorical):
                codes.append(INACTIVE if value is None else category_code(knob, value))
            else:
                numeric.append(math.nan if value is None else unit_coordinate(knob, value))
        return numeric, codes

    def nearest(self, params: Mapping[str, Any]) -> int:
        """The index of the recorded config nearest to ``params`` (the first of equals)."""
        key = tuple(sorted((name, repr(value)) for name, value in params.items()))
        if key not in self._nearest:
            numeric, codes = self._encode(params)
            numeric = np.array(numeric, dtype=float)
            gaps = np.square(self._numeric - numeric)
            # NaN where either side is inactive: 0 when both are, 1 when only one is.
            gaps = np.where(np.isnan(gaps), self._inactive != np.isnan(numeric), gaps)
            distances = gaps.sum(axis=1) + (self._categories != np.array(codes, dtype=int)).sum(axis=1)
            self._nearest[key] = int(np.argmin(distances))
        return self._nearest[key]

    def observed(self, params: Mapping[str, Any], epoch: int, seed: int) -> float:
        """What a run with ``seed`` sees at ``epoch`` (1 to max_epochs): recorded value plus seeded noise, NaN once failed."""
        if not 1 <= epoch <= self.max_epochs:
            raise ValueError(f"epoch {epoch} is outside 1..{self.max_epochs}")
        index = self.nearest(params)
        noise = np.random.default_rng([seed, index, epoch]).normal(0.0, self.noise_std[index])
        return float(self.curves[index, epoch - 1] + noise)

    @functools.cached_property
    def _final_losses(self) -> np.ndarray:
        """Every recorded config's final value, a failed one at the worst finished value."""
        finals = self.curves[:, -1]
        worst = np.nanmax(finals)
        return np.where(np.isfinite(finals), finals, worst)

    def loss(self, params: Mapping[str, Any]) -> float:
        """The noise-free final metric of ``params``: its nearest recorded config's (the worst recorded if that one failed)."""
        return float(self._final_losses[self.nearest(params)])

    def regret(self, params: Mapping[str, Any]) -> float:
        """``(loss - best) / (median - best)`` over the recorded configs: 0 for the best, about 1 for a typical one."""
        best, median = float(self._final_losses.min()), float(np.median(self._final_losses))
        return (self.loss(params) - best) / (median - best)


@functools.lru_cache(maxsize=None)
def recorded_problems(folder: Path = CURVES) -> dict[str, RecordedCurves]:
    """A problem per curve file in ``folder``, by name (``recorded_<space>``); loaded once per process."""
    problems = (RecordedCurves.from_file(path) for path in sorted(Path(folder).glob(f"*{SUFFIX}")))
    return {problem.name: problem for problem in problems}
