"""Learning-curve shaped test problems with a known optimum, for benchmarking search under a budget of epochs.

A problem's validation loss at epoch ``e`` for the config ``(x, learning_rate[, optimizer])`` is

    loss(e) = g(x) + lr_cost * learning_rate + gap[optimizer]
              + exp(-speed * sqrt(learning_rate) * (1 + g(x)) * boost[optimizer] * e)
              + noise

- ``g`` is a standard global-optimisation test function with a published minimum (Branin, 2-D;
  Hartmann 6-D), shifted so its minimum is 0 and divided by its median over the box, so a typical
  random ``x`` sits at 1 and the optimum at 0 (values from Surjanovic & Bingham's Virtual Library of
  Simulation Experiments).
- The curve is the exponential-decay family of parametric learning curves (Domhan et al., IJCAI 2015):
  it decays from about ``g + 1`` towards its asymptote. A higher learning rate converges sooner but
  to a worse asymptote (``lr_cost * learning_rate``, the SGD noise floor), so at epoch 1 and 3 a high
  learning rate looks best while at full budget a moderate one wins: the curves cross and ASHA's
  early rungs can mislead.
- Configs with a worse asymptote get there sooner (the ``1 + g(x)`` factor): a small model plateaus
  early, a good one keeps improving, as in LCBench's curves (Zimmer et al., TPAMI 2021).
- The optimizer knob (Hartmann problem only) is Wilson et al.'s (NeurIPS 2017) observation: Adam
  trains ``boost`` = 3 times faster but generalises worse (``gap`` = 0.15), so it leads early and
  loses at full budget.
- Noise: each epoch's value gets independent Gaussian noise (``noise_std``), a deterministic function
  of the run's seed, the config and the epoch, so a config's curve is the same under every method.

The known optimum at ``max_epochs`` is ``g* = 0`` plus the minimum over the learning rate (and the
optimizer) of ``lr_cost * lr + gap + exp(-speed * sqrt(lr) * boost * max_epochs)``; that term is convex in
``sqrt(lr)``, so a bounded scalar minimisation finds it exactly. (The faster pace of a worse ``x`` never pays:
the loss grows with ``g`` at the rate ``1 - a exp(-a (1 + g)) >= 1 - 1/e`` for the exponent ``a`` at ``g = 0``.) Regret is the noise-free loss at
``max_epochs`` of a recommended config minus that optimum.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from scipy.optimize import minimize_scalar

from studies.space import Categorical, Float, Knob

LEARNING_RATE = Float(1e-4, 1.0, log=True)
TYPICAL_SAMPLES = 100_000  # uniform draws over the box for g's median (a fixed seed: the same scale every run)


def branin(x: np.ndarray) -> np.ndarray:
    """Branin-Hoo on [-5, 10] x [0, 15]; three global minimisers, minimum 5 / (4 pi)."""
    x1, x2 = x[..., 0], x[..., 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
HARTMANN_A = np.array(
    [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
)
HARTMANN_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(x: np.ndarray) -> np.ndarray:
    """Hartmann 6-D on [0, 1]^6; one global minimiser, minimum -3.32237."""
    inner = np.einsum("ij,...ij->...i", HARTMANN_A, (x[..., None, :] - HARTMANN_P) ** 2)
    return -(HARTMANN_ALPHA * np.exp(-inner)).sum(axis=-1)


def epoch_noise(params: Mapping[str, Any], epoch: int, seed: int, std: float) -> float:
    """Gaussian noise of ``std`` on one observed value, the same for the same seed, config and epoch under every method."""
    config_key = zlib.crc32(repr(sorted(params.items())).encode())
    return float(np.random.default_rng([seed, config_key, epoch]).normal(0.0, std))


@dataclass(frozen=True)
class Problem:
    """One learning-curve problem: its knobs (``x1``.., ``learning_rate``, maybe ``optimizer``) and its curve."""

    name: str
    description: str
    function: Callable[[np.ndarray], np.ndarray]
    minimum: float  # the published global minimum of ``function``
    bounds: tuple[tuple[float, float], ...]  # of x1, x2, ...
    optimizers: Mapping[str, tuple[float, float]]  # name -> (speed boost, asymptote gap)
    lr_cost: float = 1.0
    speed: float = 1.5
    noise_std: float = 0.03

    @property
    def knobs(self) -> dict[str, Knob]:
        """The search space, as `tune` declares one: what the bridge, OptunaSearch and random search all search."""
        knobs: dict[str, Knob] = {f"x{i + 1}": Float(low, high) for i, (low, high) in enumerate(self.bounds)}
        knobs["learning_rate"] = LEARNING_RATE
        if len(self.optimizers) > 1:
            knobs["optimizer"] = Categorical(list(self.optimizers))
        return knobs

    @functools.cached_property
    def typical_gap(self) -> float:
        """Median of ``function - minimum`` over the box: the unit of ``g``."""
        low, high = np.array(self.bounds).T
        points = np.random.default_rng(0).uniform(low, high, size=(TYPICAL_SAMPLES, len(self.bounds)))
        return float(np.median(self.function(points) - self.minimum))

    def asymptote_gap(self, params: Mapping[str, Any]) -> float:
        """``g(x)``: 0 at the test function's minimum, about 1 for a random x."""
        x = np.array([params[f"x{i + 1}"] for i in range(len(self.bounds))])
        return float(self.function(x) - self.minimum) / self.typical_gap

    def _training_term(self, learning_rate: float, optimizer: str, epoch: float, pace: float = 1.0) -> float:
        """What the learning rate and optimizer add at ``epoch``: their noise floor and the loss not yet trained away."""
        boost, gap = self.optimizers[optimizer]
        return self.lr_cost * learning_rate + gap + math.exp(-self.speed * math.sqrt(learning_rate) * boost * pace * epoch)

    def loss(self, params: Mapping[str, Any], epoch: float) -> float:
        """The noise-free validation loss of ``params`` after ``epoch`` epochs."""
        g = self.asymptote_gap(params)
        optimizer = params.get("optimizer", next(iter(self.optimizers)))
        return g + self._training_term(params["learning_rate"], optimizer, epoch, pace=1 + g)

    def observed(self, params: Mapping[str, Any], epoch: int, seed: int) -> float:
        """The loss a run with ``seed`` sees at ``epoch``: noise fixed by seed, config and epoch."""
        return self.loss(params, epoch) + epoch_noise(params, epoch, seed, self.noise_std)

    def optimum(self, max_epochs: int) -> float:
        """The least noise-free loss at ``max_epochs`` over the whole space (g* = 0 by construction)."""
        low, high = math.sqrt(LEARNING_RATE.low), math.sqrt(LEARNING_RATE.high)
        return min(
            minimize_scalar(
                lambda root: self._training_term(root**2, optimizer, max_epochs),
                bounds=(low, high),
                method="bounded",
                options={"xatol": 1e-10},
            ).fun
            for optimizer in self.optimizers
        )

    def regret(self, params: Mapping[str, Any], max_epochs: int) -> float:
        """Noise-free loss of ``params`` at ``max_epochs`` minus the best any config reaches there."""
        return self.loss(params, max_epochs) - self.optimum(max_epochs)


PROBLEMS = {
    problem.name: problem
    for problem in (
        Problem(
            name="branin_lr",
            description="Branin (2-D) asymptote + learning rate: 3 knobs",
            function=branin,
            minimum=5 / (4 * math.pi),
            bounds=((-5.0, 10.0), (0.0, 15.0)),
            optimizers={"sgd": (1.0, 0.0)},
        ),
        Problem(
            name="hartmann6_lr_optimizer",
            description="Hartmann (6-D) asymptote + learning rate + optimizer: 8 knobs",
            function=hartmann6,
            minimum=-3.322368011415515,
            bounds=((0.0, 1.0),) * 6,
            optimizers={"sgd": (1.0, 0.0), "adam": (3.0, 0.15)},
        ),
    )
}
