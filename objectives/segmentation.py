"""Losses and metrics for binary 3D segmentation (papyrus surface detection), in pure torch.

Shapes: ``logits``, ``probs`` and ``labels`` are ``[B, 1, D, H, W]``; labels hold 0 (background) and
1 (foreground). Losses that are numerically delicate near 0 and 1 (focal, BCE, boundary) take logits;
the overlap and shape losses take probabilities. Every loss returns one scalar tensor for the batch.

The combined loss, a weighted mean of the components, follows the researcher's config layout (``loss_weights`` with ``dice_weight``,
``focal_weight``, ``variance_weight``, ``boundary_weight``, ``cldice_weight``, ``connectivity_weight``;
``focal_gamma``, ``focal_alpha``, ``use_class_weights``, ``background_weight``, ``foreground_weight``;
seeds/004_b3e37686342072be.txt, "PREVIOUS WORKING Configuration" and "Config v5").

Metrics are computed from voxel counts (:class:`SegmentationCounts`) so that a validation set can be
summed batch by batch and turned into metrics once, over all voxels.

Example::

    import torch
    from objectives.segmentation import SurfaceLoss, segmentation_metrics

    logits = torch.randn(2, 1, 8, 8, 8)
    labels = (torch.rand(2, 1, 8, 8, 8) < 0.6).float()
    total, components = SurfaceLoss(dice_weight=0.4, focal_weight=0.25)(logits, labels)
    metrics = segmentation_metrics(torch.sigmoid(logits), labels, threshold=0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

COMPONENTS = (
    "dice_loss",
    "focal_loss",
    "variance_loss",
    "boundary_loss",
    "cldice_loss",
    "connectivity_loss",
    "weighted_bce_loss",
)
METRICS = (
    "predicted_fg_fraction",
    "label_fg_fraction",
    "class_balance_error",
    "precision",
    "recall",
    "dice",
    "iou",
    "prob_std",
)


def _per_sample_sum(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.flatten(1).sum(dim=1)


def soft_dice_loss(probs: torch.Tensor, labels: torch.Tensor, smooth: float = 1e-6) -> torch.Tensor:
    """``1 - (2·Σpy + s) / (Σp + Σy + s)`` per sample, averaged over the batch (s keeps empty volumes at 0)."""
    intersection = _per_sample_sum(probs * labels)
    total = _per_sample_sum(probs) + _per_sample_sum(labels)
    return (1 - (2 * intersection + smooth) / (total + smooth)).mean()


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017, eq. 5), written as torchvision's ``sigmoid_focal_loss``.

    ``FL = α_t · (1 - p_t)^γ · BCE(x, y)`` with ``p_t = p·y + (1-p)·(1-y)`` and
    ``α_t = α·y + (1-α)·(1-y)``: α weights foreground voxels, 1-α background ones; α < 0 turns the
    weighting off. So lowering α (v2: 0.75 -> 0.4) weights background errors, i.e. false foreground,
    more. Mean over voxels. At γ = 0 it is the α-weighted BCE.
    """
    probs = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    p_t = probs * labels + (1 - probs) * (1 - labels)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * labels + (1 - alpha) * (1 - labels))
    return loss.mean()


def variance_loss(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How much less the predicted probabilities vary than the label does: ``relu(1 - Var(p) / Var(y))``.

    Variances are over the voxels of each sample (population variance). A collapsed model, whose
    probabilities are one value everywhere, scores 1 (the log's "variance 0.95 = uniform outputs",
    Config v5); it falls to 0 once the predictions spread as much as the label, which a perfect
    prediction does at any foreground fraction. Scaling by the label's variance, rather than by the
    0.25 maximum of a [0, 1] variable, keeps the term from pulling every volume towards a 50/50 split,
    which would fight the class-balance goal. A sample whose label is one class throughout has
    nothing to spread and scores 0.
    """
    label_variance = labels.flatten(1).var(dim=1, correction=0)
    prob_variance = probs.flatten(1).var(dim=1, correction=0)
    has_both_classes = label_variance > 0
    shortfall = F.relu(1 - prob_variance / label_variance.clamp_min(1e-12))
    return torch.where(has_both_classes, shortfall, torch.zeros_like(shortfall)).mean()


def _dilate(volume: torch.Tensor) -> torch.Tensor:
    return F.max_pool3d(volume, kernel_size=3, stride=1, padding=1)


def _erode(volume: torch.Tensor) -> torch.Tensor:
    return -F.max_pool3d(-volume, kernel_size=3, stride=1, padding=1)


def boundary_band(labels: torch.Tensor) -> torch.Tensor:
    """Voxels whose 3x3x3 neighbourhood holds both classes: the label's morphological gradient, 2 voxels thick."""
    return _dilate(labels) - _erode(labels)


def boundary_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the voxels of the label's boundary band (:func:`boundary_band`); 0 if there is none.

    Averaging the pixel-wise loss over the interface voxels only, where the sheet meets background,
    makes the interfaces count as much as the interiors however thin the band is: the "be careful at
    FG/BG interfaces" the log asks of boundary_weight (Config v3, "Aggressive Changes Explained").
    """
    band = boundary_band(labels)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (bce * band).sum() / band.sum().clamp_min(1)


def _soft_erode(volume: torch.Tensor) -> torch.Tensor:
    # The min over the three axis-aligned 3-voxel lines: a 6-neighbourhood erosion (Shit et al. 2021).
    along_depth = -F.max_pool3d(-volume, (3, 1, 1), stride=1, padding=(1, 0, 0))
    along_height = -F.max_pool3d(-volume, (1, 3, 1), stride=1, padding=(0, 1, 0))
    along_width = -F.max_pool3d(-volume, (1, 1, 3), stride=1, padding=(0, 0, 1))
    return torch.minimum(torch.minimum(along_depth, along_height), along_width)


def soft_skeleton(volume: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Soft skeleton by iterated min/max pooling (Shit et al., clDice, CVPR 2021, Algorithm 1), in 3D.

    Each pass keeps what an opening (erode, then dilate) removes from the current erosion.
    ``iterations`` should reach half the thickest structure; thicker parts keep only their outer shell.
    """
    eroded = _soft_erode(volume)
    skeleton = F.relu(volume - _dilate(eroded))
    for _ in range(iterations):
        # The opening of the next erosion reuses that erosion, so each pass erodes once.
        volume, eroded = eroded, _soft_erode(eroded)
        delta = F.relu(volume - _dilate(eroded))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def soft_cldice_loss(
    probs: torch.Tensor, labels: torch.Tensor, iterations: int = 5, smooth: float = 1e-6
) -> torch.Tensor:
    """Soft clDice loss: 1 - harmonic mean of topology precision and sensitivity (Shit et al. 2021, eq. 1-3).

    Topology precision is the share of the predicted skeleton inside the label; topology
    sensitivity the share of the label's skeleton inside the prediction. Over the whole batch.
    """
    predicted_skeleton = soft_skeleton(probs, iterations)
    label_skeleton = soft_skeleton(labels, iterations)
    topology_precision = ((predicted_skeleton * labels).sum() + smooth) / (predicted_skeleton.sum() + smooth)
    topology_sensitivity = ((label_skeleton * probs).sum() + smooth) / (label_skeleton.sum() + smooth)
    return 1 - 2 * topology_precision * topology_sensitivity / (topology_precision + topology_sensitivity)


def connectivity_loss(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean ``|p_i·p_j - y_i·y_j|`` over all face-adjacent voxel pairs (i, j): an L1 between soft adjacency graphs.

    ``p_i·p_j`` is the soft chance that two neighbouring voxels are both foreground, i.e. that the
    predicted sheet links them. The term is 0 for a perfect prediction and grows with every link the
    prediction breaks (a hole or crack in a sheet) or invents (a bridge between sheets, a speck), the
    fragmentation the log turns ``connectivity_weight`` against ("Expected Impact": "prevent fragmented
    predictions"). Pairs are counted along each axis and the axes weighted equally (axes one voxel
    long have no pairs and are left out).
    """
    mismatches = []
    for axis in (axis for axis in (2, 3, 4) if probs.shape[axis] > 1):
        length = probs.shape[axis]
        predicted_links = probs.narrow(axis, 0, length - 1) * probs.narrow(axis, 1, length - 1)
        label_links = labels.narrow(axis, 0, length - 1) * labels.narrow(axis, 1, length - 1)
        mismatches.append((predicted_links - label_links).abs().mean())
    return torch.stack(mismatches).mean()


def class_weighted_bce(
    logits: torch.Tensor, labels: torch.Tensor, background_weight: float = 1.0, foreground_weight: float = 1.0
) -> torch.Tensor:
    """Class-weighted mean BCE: ``Σ w(y)·BCE(x, y) / Σ w(y)``, ``w = foreground_weight`` where y = 1, else ``background_weight``.

    The weighted mean of ``torch.nn.CrossEntropyLoss(weight=...)``: only the ratio of the weights
    moves the model, so the term stays on BCE's scale whatever their size. Each weight scales the
    loss on the voxels of its own class, the reading behind the log's v1 derivation
    (background_weight = 1/(1 - 0.66) "for minority class"): a larger foreground_weight penalises
    *missing* foreground and pushes the predicted foreground fraction up; to penalise false
    foreground, raise background_weight. The log's v2-v4 comments read foreground_weight the other
    way ("penalize false foreground predictions 3x").
    """
    weights = foreground_weight * labels + background_weight * (1 - labels)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (weights * bce).sum() / weights.sum()


def reference_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """nnU-Net's standard Dice + BCE, equally weighted: one yardstick for trials whose own loss weights differ.

    A search over loss weights cannot rank trials by their own weighted losses: a trial that turns
    up an easy component scores better without segmenting better (in a first study, configs that
    predicted no foreground beat every baseline that way). This fixed loss can be compared.
    """
    return soft_dice_loss(torch.sigmoid(logits), labels) + F.binary_cross_entropy_with_logits(logits, labels)


@dataclass(frozen=True)
class SurfaceLoss:
    """The researcher's weighted loss (seeds/004_b3e37686342072be.txt, every config version), as a weighted mean.

    ``total = (Σ weight_k · loss_k + c · weighted_bce) / (Σ weight_k + c)`` over dice, focal,
    variance, boundary, clDice and connectivity, with c = 1 when ``use_class_weights`` is on (the log
    switches class weights on without giving their term a weight) and 0 otherwise. The log's six
    weights sum to 1 in every version, so dividing by the sum leaves its totals as they were; it
    keeps a trial from lowering its loss by shrinking every weight, which would make ``val_loss``
    meaningless across a search. Components whose weight is 0 are not computed and read 0.
    """

    dice_weight: float = 0.0
    focal_weight: float = 0.0
    variance_weight: float = 0.0
    boundary_weight: float = 0.0
    cldice_weight: float = 0.0
    connectivity_weight: float = 0.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    use_class_weights: bool = False
    background_weight: float = 1.0
    foreground_weight: float = 1.0
    skeleton_iterations: int = 5

    def __post_init__(self) -> None:
        weights = [getattr(self, f"{name}_weight") for name in ("dice", "focal", "variance", "boundary", "cldice", "connectivity")]
        if min(weights) < 0 or (sum(weights) == 0 and not self.use_class_weights):
            raise ValueError(f"loss weights must be >= 0 with at least one > 0, or use_class_weights on (got {weights})")
        if self.background_weight <= 0 or self.foreground_weight <= 0:
            raise ValueError("background_weight and foreground_weight must be > 0")

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, components)``; components are named as in :data:`COMPONENTS`."""
        probs = torch.sigmoid(logits)
        terms = {
            "dice_loss": (self.dice_weight, lambda: soft_dice_loss(probs, labels)),
            "focal_loss": (self.focal_weight, lambda: focal_loss(logits, labels, self.focal_gamma, self.focal_alpha)),
            "variance_loss": (self.variance_weight, lambda: variance_loss(probs, labels)),
            "boundary_loss": (self.boundary_weight, lambda: boundary_loss(logits, labels)),
            "cldice_loss": (self.cldice_weight, lambda: soft_cldice_loss(probs, labels, self.skeleton_iterations)),
            "connectivity_loss": (self.connectivity_weight, lambda: connectivity_loss(probs, labels)),
            "weighted_bce_loss": (
                1.0 if self.use_class_weights else 0.0,
                lambda: class_weighted_bce(logits, labels, self.background_weight, self.foreground_weight),
            ),
        }
        weighted_sum = logits.new_zeros(())
        components = {}
        for name, (weight, compute) in terms.items():
            value = compute() if weight else logits.new_zeros(())
            components[name] = value
            weighted_sum = weighted_sum + weight * value
        return weighted_sum / sum(weight for weight, _ in terms.values()), components


@dataclass
class SegmentationCounts:
    """Voxel counts from which every metric follows; add two to pool their voxels."""

    true_positive: float = 0.0
    false_positive: float = 0.0
    false_negative: float = 0.0
    true_negative: float = 0.0
    prob_sum: float = 0.0
    prob_squared_sum: float = 0.0

    @classmethod
    @torch.no_grad()
    def of(cls, probs: torch.Tensor, labels: torch.Tensor, threshold: float) -> SegmentationCounts:
        """Counts of one batch; a voxel is predicted foreground when its probability exceeds ``threshold``."""
        predicted = probs > threshold
        actual = labels > 0.5
        probs = probs.double()
        return cls(
            true_positive=float((predicted & actual).sum()),
            false_positive=float((predicted & ~actual).sum()),
            false_negative=float((~predicted & actual).sum()),
            true_negative=float((~predicted & ~actual).sum()),
            prob_sum=float(probs.sum()),
            prob_squared_sum=float((probs**2).sum()),
        )

    def __add__(self, other: SegmentationCounts) -> SegmentationCounts:
        return SegmentationCounts(
            *(getattr(self, name) + getattr(other, name) for name in self.__dataclass_fields__)
        )

    @property
    def voxels(self) -> float:
        return self.true_positive + self.false_positive + self.false_negative + self.true_negative

    def metrics(self) -> dict[str, float]:
        """The metrics of :data:`METRICS` over all counted voxels.

        Precision and recall are 0 when undefined (nothing predicted, nothing to find); dice and IoU
        are 1 when prediction and label are both empty.
        """
        tp, fp, fn = self.true_positive, self.false_positive, self.false_negative
        voxels = self.voxels
        predicted_fg_fraction = (tp + fp) / voxels
        label_fg_fraction = (tp + fn) / voxels
        mean_prob = self.prob_sum / voxels
        prob_variance = max(self.prob_squared_sum / voxels - mean_prob**2, 0.0)
        return {
            "predicted_fg_fraction": predicted_fg_fraction,
            "label_fg_fraction": label_fg_fraction,
            "class_balance_error": abs(predicted_fg_fraction - label_fg_fraction),
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "iou": tp / (tp + fp + fn) if tp + fp + fn else 1.0,
            "prob_std": prob_variance**0.5,
        }


def segmentation_metrics(probs: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """:data:`METRICS` of one batch at ``threshold``, over all its voxels."""
    return SegmentationCounts.of(probs, labels, threshold).metrics()
