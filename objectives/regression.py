"""Losses and metrics for regression whose tails matter, in pure torch.

A model that predicts the mean everywhere scores a fair MSE and misses every extreme target: the
CABBI log (shared/seeds/000) saw "predictions concentrated around mean, missing high/low gene
interactions", and the AbAg log (shared/seeds/002) saw a very-strong-binder RMSE of 2.94 against an
overall 1.48. What is here:

- :func:`focal_mse`, :func:`bin_class_weights`: AbAg's per-sample focal MSE and its per-bin weights.
- :func:`dist_loss`, :func:`kde_pseudo_labels`, :class:`SampleBuffer`: CABBI's DistLoss, sorted
  predictions pulled towards the quantiles of a Gaussian KDE of recently seen targets.
- :func:`supcr_loss`: supervised contrastive regression (Rank-N-Contrast) on embeddings.
- :func:`temperature_at`, :func:`buffer_weight_at`: CABBI's schedules.
- :class:`RegressionLoss`: all of the above combined as a config asks.
- :func:`regression_metrics`: MSE, RMSE, Pearson, Spearman, R², RMSE per affinity bin and the tail
  metrics (tail_rmse, std_ratio, distribution_distance).

Example::

    import torch
    from objectives.regression import regression_metrics

    metrics = regression_metrics(torch.randn(100), torch.randn(100), bin_edges=[-2.0, -1.0, 1.0, 2.0])
    print(metrics["tail_rmse"], metrics["std_ratio"])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

AFFINITY_BINS = ("very_weak", "weak", "moderate", "strong", "very_strong")
"""The AbAg log's five bins, lowest target first; ``bin_edges`` holds the four values between them."""

TEMPERATURE_SCHEDULES = ("exponential", "cosine")


# ---------------------------------------------------------------------------------------------
# Point losses and per-bin weights (AbAg, shared/seeds/002 "Focal Loss", "10x Stronger Class Weights")


def focal_mse(predictions: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample ``mse * (1 + mse^(gamma/2))``: large errors weigh more (AbAg v2 "Focal Loss")."""
    squared_error = (predictions - targets) ** 2
    # Clamped so that a zero error (x^(g/2) has an infinite slope at 0 for g < 2) gives no NaN gradient.
    focus = squared_error.clamp_min(torch.finfo(squared_error.dtype).tiny) ** (gamma / 2)
    return squared_error * (1 + focus)


def bin_indices(targets: torch.Tensor, bin_edges: torch.Tensor) -> torch.Tensor:
    """The bin of each target: 0 below ``bin_edges[0]``, ``len(bin_edges)`` at or above the last edge."""
    return torch.bucketize(targets, bin_edges.to(targets), right=True)


def bin_class_weights(bin_counts: torch.Tensor, extreme_bin_multiplier: float = 1.0) -> torch.Tensor:
    """``total / (n_classes * count)`` per bin, the first and last bins times the multiplier.

    AbAg v1 used the plain inverse frequency; v2 multiplied very_weak and very_strong by 10. An
    empty bin gets weight 0: it has no sample to weigh.
    """
    counts = bin_counts.to(torch.float64)
    n_classes = len(counts)
    weights = torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    weights[0] *= extreme_bin_multiplier
    weights[-1] *= extreme_bin_multiplier
    return weights.to(torch.float32)


# ---------------------------------------------------------------------------------------------
# DistLoss over a buffer of recent targets (CABBI, shared/seeds/000 sections 1, 2 and "Buffer Dynamics")


def gather_from_all_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` from every DDP rank, rank order, as one 1-D tensor; the input itself without DDP.

    Ranks may hold different counts (a last, short batch), so each pads to the longest first.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    world_size = dist.get_world_size()
    count = torch.tensor([values.numel()], device=values.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    longest = max(int(c) for c in counts)
    padded = torch.zeros(longest, dtype=values.dtype, device=values.device)
    padded[: values.numel()] = values.reshape(-1)
    gathered = [torch.zeros_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([rank_values[: int(c)] for rank_values, c in zip(gathered, counts)])


class SampleBuffer(nn.Module):
    """The most recent ``capacity`` targets seen in training, from every DDP rank.

    Its contents are module buffers, so a checkpoint keeps them and a resumed trial does not start
    from an empty KDE.
    """

    def __init__(self, capacity: int):
        super().__init__()
        if capacity < 1:
            raise ValueError(f"a sample buffer needs capacity >= 1 (got {capacity})")
        self.capacity = int(capacity)
        self.register_buffer("values", torch.zeros(self.capacity))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("next_slot", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.filled)

    @torch.no_grad()
    def push(self, targets: torch.Tensor) -> None:
        """Add this step's targets (gathered across ranks), overwriting the oldest once full."""
        incoming = gather_from_all_ranks(targets.detach().reshape(-1).to(self.values))[-self.capacity :]
        slots = (self.next_slot + torch.arange(len(incoming), device=self.values.device)) % self.capacity
        self.values[slots] = incoming
        self.next_slot.copy_((self.next_slot + len(incoming)) % self.capacity)
        self.filled.clamp_(max=self.capacity - len(incoming)).add_(len(incoming))

    def samples(self) -> torch.Tensor:
        """The stored targets (order is irrelevant to a KDE)."""
        return self.values[: len(self)]


@torch.no_grad()
def kde_quantiles(
    samples: torch.Tensor,
    bandwidth: float,
    levels: torch.Tensor,
    start: torch.Tensor | None = None,
    max_iterations: int = 60,
) -> torch.Tensor:
    """Where the Gaussian KDE of ``samples`` (kernel std ``bandwidth``) reaches each CDF level.

    Safeguarded Newton: every iteration keeps a bracket [low, high] around the root and bisects it
    whenever a Newton step would leave it, so it converges on any buffer, multimodal ones included.
    It stops once every CDF value is within a few hundred ulps of its level. ``start`` is a guess,
    such as the previous step's answer: a buffer that changed by k of n samples moves the CDF by at
    most k/n, so one or two Newton steps finish from there.
    """
    samples = samples.reshape(-1)
    tolerance = 100 * torch.finfo(samples.dtype).eps
    levels = levels.to(samples)
    standard_quantiles = torch.special.ndtri(levels)
    # Every kernel's CDF is <= level at min(samples) + h*z and >= level at max(samples) + h*z.
    low = samples.min() + bandwidth * standard_quantiles
    high = samples.max() + bandwidth * standard_quantiles
    if start is None:
        # The normal with the KDE's mean and variance: exact for one sample, close for most.
        start = samples.mean() + torch.sqrt(samples.var(unbiased=False) + bandwidth**2) * standard_quantiles
    x = torch.minimum(torch.maximum(start.to(samples), low), high)
    # In units of h*sqrt(2), CDF = (1 + mean erf(u)) / 2 and density = mean exp(-u^2) / (h*sqrt(2*pi)).
    scale = bandwidth * math.sqrt(2)
    scaled_samples = samples / scale
    for _ in range(max_iterations):
        u = (x / scale)[:, None] - scaled_samples[None, :]
        cdf = 0.5 * (1 + torch.erf(u).mean(dim=1))
        gap = cdf - levels
        if gap.abs().max() <= tolerance:
            break
        low = torch.where(gap < 0, x, low)
        high = torch.where(gap > 0, x, high)
        density = u.square_().neg_().exp_().mean(dim=1) / (bandwidth * math.sqrt(2 * math.pi))
        newton = x - gap / density
        inside = torch.isfinite(newton) & (newton > low) & (newton < high)
        x = torch.where(inside, newton, (low + high) / 2)
    return x


def rank_levels(n: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """CDF levels ``(i + 0.5) / n`` of the n sorted ranks of a batch (midpoint plotting positions)."""
    return (torch.arange(n, device=device, dtype=dtype) + 0.5) / n


def dist_loss(predictions: torch.Tensor, pseudo_labels: torch.Tensor) -> torch.Tensor:
    """DistLoss (Nie et al., ICLR 2025): L1 between the sorted predictions and sorted pseudo-labels.

    With :func:`kde_pseudo_labels` as the pseudo-labels, a batch whose predictions sit at the mean
    is pulled apart towards the target's tails. L1 is the paper's default distance.
    """
    return F.l1_loss(torch.sort(predictions.reshape(-1)).values, pseudo_labels.to(predictions))


def kde_pseudo_labels(
    reference_targets: torch.Tensor, bandwidth: float, batch_size: int, start: torch.Tensor | None = None
) -> torch.Tensor:
    """DistLoss's pseudo-labels: the KDE's quantiles at the sorted ranks of a batch, ascending."""
    levels = rank_levels(batch_size, device=reference_targets.device, dtype=reference_targets.dtype)
    return kde_quantiles(reference_targets, bandwidth, levels, start=start)


# ---------------------------------------------------------------------------------------------
# SupCR, supervised contrastive regression (Zha et al. 2023, Rank-N-Contrast)


def supcr_loss(embeddings: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Rank-N-Contrast loss: each pair (i, j) contrasted against every k at least as far in label.

    ``-mean over i != j of log( exp(s_ij/t) / sum_{k != i, |y_i-y_k| >= |y_i-y_j|} exp(s_ik/t) )``
    with ``s`` the negative L2 distance between embeddings, so embeddings order as the labels do.
    Sorting each anchor's others by label distance turns every denominator into a suffix sum: O(n²).
    """
    n = len(targets)
    if n < 2:
        return embeddings.sum() * 0
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=embeddings.device)
    # Row i holds anchor i's n-1 others.
    logits = (-torch.cdist(embeddings, embeddings) / temperature)[off_diagonal].reshape(n, n - 1)
    label_distance = (targets.reshape(-1, 1) - targets.reshape(1, -1)).abs()[off_diagonal].reshape(n, n - 1)
    label_distance, order = torch.sort(label_distance, dim=1)
    logits = torch.gather(logits, 1, order)
    # Subtracting the row max keeps exp() finite at low temperature and leaves every ratio unchanged.
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    at_least_as_far = torch.flip(torch.cumsum(torch.flip(logits.exp(), [1]), 1), [1])
    # A positive's denominator starts at the first other tied with it in label distance.
    first_tied = torch.searchsorted(label_distance.contiguous(), label_distance.contiguous(), right=False)
    denominator = torch.gather(at_least_as_far, 1, first_tied)
    return -(logits - denominator.log()).mean()


# ---------------------------------------------------------------------------------------------
# CABBI's schedules (shared/seeds/000 sections 4 and 7)


def temperature_at(progress: float, init_temperature: float, final_temperature: float, schedule: str) -> float:
    """SupCR temperature at ``progress`` in [0, 1] of the run: ``init`` at 0, ``final`` at 1.

    CABBI 016 decayed exponentially (geometric interpolation); 017 switched to cosine ("smoother").
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "exponential":
        return init_temperature * (final_temperature / init_temperature) ** progress
    if schedule == "cosine":
        return final_temperature + 0.5 * (init_temperature - final_temperature) * (1 + math.cos(math.pi * progress))
    raise ValueError(f"temp_schedule {schedule!r} is unknown; use one of {', '.join(TEMPERATURE_SCHEDULES)}")


def buffer_weight_at(epoch: float, warmup_epochs: float, stable_epoch: float, max_buffer_weight: float) -> float:
    """Weight of the buffer-based losses (DistLoss, SupCR) at ``epoch``.

    0 during the warmup (MSE alone while the buffer fills), a linear ramp from ``warmup_epochs`` to
    ``stable_epoch``, then ``max_buffer_weight``: CABBI 016 (warmup 30, stable 30) "reached
    buffer_weight=0.9 at epoch 30 and stayed there"; 017 (10, 40) warms up fast and reaches 0.9 by 40.
    A stable epoch at or before the warmup's end makes it a step at ``warmup_epochs``.
    """
    if epoch < warmup_epochs:
        return 0.0
    if epoch >= stable_epoch:
        return max_buffer_weight
    return max_buffer_weight * (epoch - warmup_epochs) / (stable_epoch - warmup_epochs)


# ---------------------------------------------------------------------------------------------
# Everything combined as a config asks


class RegressionLoss(nn.Module):
    """``point + buffer_weight * (lambda_dist * DistLoss + lambda_supcr * SupCR)``.

    The point loss is MSE, or focal MSE with ``use_focal_loss``, each sample times its bin's class
    weight when ``class_weights`` is on (AbAg). DistLoss starts once the buffer holds
    ``min_samples_for_dist`` targets and SupCR once it holds ``min_samples_for_supcr`` (CABBI);
    a zero lambda leaves its term out. ``options`` is the config's ``loss_config`` section.
    """

    def __init__(self, options: Mapping, bin_edges: Sequence[float], train_bin_counts: torch.Tensor):
        super().__init__()
        self.use_focal_loss = bool(options["use_focal_loss"])
        self.focal_gamma = float(options["focal_gamma"])
        self.lambda_dist = float(options["lambda_dist"])
        self.lambda_supcr = float(options["lambda_supcr"])
        self.bandwidth = float(options["bandwidth"])
        self.min_samples_for_dist = int(options["min_samples_for_dist"])
        self.min_samples_for_supcr = int(options["min_samples_for_supcr"])
        self.init_temperature = float(options["init_temperature"])
        self.final_temperature = float(options["final_temperature"])
        self.temp_schedule = options["temp_schedule"]
        if self.temp_schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(f"temp_schedule {self.temp_schedule!r} is unknown; use one of {', '.join(TEMPERATURE_SCHEDULES)}")
        self.warmup_epochs = float(options["warmup_epochs"])
        self.stable_epoch = float(options["stable_epoch"])
        self.max_buffer_weight = float(options["max_buffer_weight"])
        self.schedule_epochs = float(options["max_epochs"])
        self.register_buffer("bin_edges", torch.tensor(list(bin_edges), dtype=torch.float32))
        weights = (
            bin_class_weights(train_bin_counts, float(options["extreme_bin_multiplier"]))
            if options["class_weights"]
            else torch.ones(len(bin_edges) + 1)
        )
        self.register_buffer("bin_weights", weights)
        self.buffer = SampleBuffer(int(options["buffer_size"]))
        # The last pseudo-labels per batch size: the next step's start (see kde_quantiles).
        self._pseudo_labels: dict[int, torch.Tensor] = {}

    @property
    def uses_buffer(self) -> bool:
        return self.lambda_dist > 0 or self.lambda_supcr > 0

    def forward(
        self,
        predictions: torch.Tensor,
        targets: torch.Tensor,
        embeddings: torch.Tensor | None,
        epoch: int,
        record_targets: bool,
    ) -> torch.Tensor:
        """The loss of one batch at ``epoch``; ``record_targets`` adds them to the buffer (training only)."""
        per_sample = focal_mse(predictions, targets, self.focal_gamma) if self.use_focal_loss else (predictions - targets) ** 2
        loss = (per_sample * self.bin_weights[bin_indices(targets, self.bin_edges)]).mean()
        if not self.uses_buffer:
            return loss
        if record_targets:
            self.buffer.push(targets)
        weight = buffer_weight_at(epoch, self.warmup_epochs, self.stable_epoch, self.max_buffer_weight)
        if weight == 0:
            return loss
        if self.lambda_dist > 0 and len(self.buffer) >= self.min_samples_for_dist:
            batch_size = predictions.numel()
            pseudo_labels = kde_pseudo_labels(
                self.buffer.samples(), self.bandwidth, batch_size, start=self._pseudo_labels.get(batch_size)
            )
            self._pseudo_labels[batch_size] = pseudo_labels
            loss = loss + weight * self.lambda_dist * dist_loss(predictions, pseudo_labels)
        if self.lambda_supcr > 0 and embeddings is not None and len(self.buffer) >= self.min_samples_for_supcr:
            temperature = temperature_at(
                epoch / self.schedule_epochs, self.init_temperature, self.final_temperature, self.temp_schedule
            )
            loss = loss + weight * self.lambda_supcr * supcr_loss(embeddings, targets, temperature)
        return loss


# ---------------------------------------------------------------------------------------------
# Metrics over a whole validation set


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing their average rank (as Spearman's rho needs)."""
    sorted_values, order = torch.sort(values)
    _, group, group_sizes = torch.unique_consecutive(sorted_values, return_inverse=True, return_counts=True)
    last_rank = torch.cumsum(group_sizes, 0).to(torch.float64)
    group_rank = last_rank - (group_sizes.to(torch.float64) - 1) / 2
    ranks = torch.empty(len(values), dtype=torch.float64, device=values.device)
    ranks[order] = group_rank[group]
    return ranks


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson's r; NaN when either side is constant."""
    a = a.to(torch.float64) - a.to(torch.float64).mean()
    b = b.to(torch.float64) - b.to(torch.float64).mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


def rmse(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Root mean squared error; NaN for no sample."""
    if len(targets) == 0:
        return math.nan
    return math.sqrt(float(((predictions - targets) ** 2).mean()))


def regression_metrics(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    bin_edges: Sequence[float],
    tail_sigma: float = 2.0,
) -> dict[str, float]:
    """Every metric the two logs judge by, over one whole evaluation set.

    ``mse``, ``rmse``, ``pearson``, ``spearman``, ``r2``; ``rmse_<bin>`` for each of
    :data:`AFFINITY_BINS` split at ``bin_edges`` (NaN for an empty bin); and the tail metrics:
    ``tail_rmse`` (RMSE on targets more than ``tail_sigma`` standard deviations from their mean),
    ``std_ratio`` (prediction std / target std: below 1 is a collapse towards the mean) and
    ``distribution_distance`` (1-D Wasserstein-1 between the predicted and target distributions,
    the mean gap between the sorted samples).
    """
    if len(bin_edges) != len(AFFINITY_BINS) - 1:
        raise ValueError(f"bin_edges needs {len(AFFINITY_BINS) - 1} values between the bins {AFFINITY_BINS}, got {list(bin_edges)}")
    predictions = predictions.detach().reshape(-1).to(torch.float64)
    targets = targets.detach().reshape(-1).to(torch.float64)
    squared_error = (predictions - targets) ** 2
    mse = float(squared_error.mean())
    target_mean, target_std = targets.mean(), targets.std(unbiased=False)
    metrics = {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "pearson": pearson(predictions, targets),
        "spearman": pearson(average_ranks(predictions), average_ranks(targets)),
        "r2": 1 - float(squared_error.sum() / ((targets - target_mean) ** 2).sum()),
    }
    bins = bin_indices(targets, torch.tensor(list(bin_edges), dtype=torch.float64))
    for index, name in enumerate(AFFINITY_BINS):
        in_bin = bins == index
        metrics[f"rmse_{name}"] = rmse(predictions[in_bin], targets[in_bin])
    in_tail = (targets - target_mean).abs() > tail_sigma * target_std
    metrics["tail_rmse"] = rmse(predictions[in_tail], targets[in_tail])
    metrics["std_ratio"] = float(predictions.std(unbiased=False) / target_std)
    metrics["distribution_distance"] = float((torch.sort(predictions).values - torch.sort(targets).values).abs().mean())
    return metrics
