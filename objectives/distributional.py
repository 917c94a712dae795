"""Distances between sets of points (cell populations), batched, for set-to-set models such as STATE.

Shapes: ``x`` is ``[B, N, D]`` and ``y`` is ``[B, M, D]``: B pairs of point clouds, each point weighted
equally. The distances return one value per pair, ``[B]``; :func:`set_loss` turns a name from the
researcher's config (``model.loss``: ``energy``, ``sinkhorn`` or ``mse``) into a scalar loss, the mean
over the batch (seeds/001_7bf7081cee559d14.txt, "The Core Confusion": ``model.loss`` is the one switch,
and both of STATE's heads use the loss it names).

Example::

    import torch
    from objectives.distributional import energy_distance, set_loss

    predicted, observed = torch.randn(4, 32, 16), torch.randn(4, 32, 16)
    per_set = energy_distance(predicted, observed)  # [4]
    loss = set_loss("sinkhorn", blur=0.05)(predicted, observed)  # scalar
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from geomloss import SamplesLoss

SET_LOSSES = ("energy", "sinkhorn", "mse")


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``E|x-y| - E|x-x'|/2 - E|y-y'|/2`` per pair of sets, ``[B]``.

    This is geomloss's ``SamplesLoss("energy")`` (the kernel norm with kernel ``-|x-y|``), the loss the
    log's STATE model trains with; it is half of Székely's energy distance, zero exactly when the two
    samples coincide as distributions. Written in torch so that it needs no solver and is exact.
    """
    cross = torch.cdist(x, y).mean(dim=(-2, -1))
    within_x = torch.cdist(x, x).mean(dim=(-2, -1))
    within_y = torch.cdist(y, y).mean(dim=(-2, -1))
    return cross - 0.5 * within_x - 0.5 * within_y


def sinkhorn_divergence(x: torch.Tensor, y: torch.Tensor, blur: float) -> torch.Tensor:
    """Debiased entropic optimal-transport divergence (squared Euclidean cost, geomloss), ``[B]``.

    ``blur`` is the entropic length scale: below it, the divergence no longer resolves structure.
    """
    return SamplesLoss("sinkhorn", p=2, blur=blur, debias=True, backend="tensorized")(x, y)


def mean_squared_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Point-to-point MSE per pair of sets, ``[B]``: the i-th cell of ``x`` against the i-th of ``y``."""
    return ((x - y) ** 2).mean(dim=(-2, -1))


def set_loss(name: str, blur: float = 0.05) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``model.loss`` names, as ``loss(predicted, observed) -> scalar`` (mean over the batch)."""
    if name == "energy":
        distance = energy_distance
    elif name == "sinkhorn":
        def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return sinkhorn_divergence(x, y, blur)
    elif name == "mse":
        distance = mean_squared_error
    else:
        raise ValueError(f"unknown set loss {name!r}; use one of {', '.join(SET_LOSSES)}")

    def loss(predicted: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        return distance(predicted, observed).mean()

    return loss
