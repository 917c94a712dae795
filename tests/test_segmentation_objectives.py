"""Every loss and metric of objectives.segmentation on cases small enough to work out by hand."""

import math

import pytest
import torch

from objectives.segmentation import (
    COMPONENTS,
    METRICS,
    SegmentationCounts,
    SurfaceLoss,
    boundary_band,
    boundary_loss,
    class_weighted_bce,
    connectivity_loss,
    focal_loss,
    reference_loss,
    segmentation_metrics,
    soft_cldice_loss,
    soft_dice_loss,
    soft_skeleton,
    variance_loss,
)

LN2, LN3 = math.log(2), math.log(3)


def volume(values, shape=None):
    """A ``[1, 1, D, H, W]`` tensor; a flat list becomes a row along W unless ``shape`` says otherwise."""
    tensor = torch.tensor(values, dtype=torch.float32)
    return tensor.reshape(shape or (1, 1, 1, 1, len(values)))


def thin_line():
    """A 1-voxel-thick line through the middle of a 5^3 volume."""
    labels = torch.zeros(1, 1, 5, 5, 5)
    labels[0, 0, 2, 2, :] = 1
    return labels


# ---------------------------------------------------------------------------------------------- dice


def test_dice_loss_of_a_perfect_prediction_is_zero():
    labels = volume([1, 1, 0, 0, 1])
    assert soft_dice_loss(labels.clone(), labels).item() == pytest.approx(0.0, abs=1e-7)


def test_dice_loss_counts_soft_overlap():
    # intersection 1 + 0.5 = 1.5; Σp = 2, Σy = 2; dice = 3/4.
    loss = soft_dice_loss(volume([1, 0.5, 0.5, 0]), volume([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(0.25, abs=1e-6)


def test_dice_loss_of_a_disjoint_prediction_is_one():
    assert soft_dice_loss(volume([0, 0, 1, 1]), volume([1, 1, 0, 0])).item() == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------------------------- focal


def test_focal_at_gamma_zero_is_alpha_weighted_bce():
    # p = sigmoid(0) = 0.5 on a foreground voxel (BCE ln 2), p = sigmoid(ln 3) = 0.75 on a background one (BCE ln 4).
    logits, labels = volume([0.0, LN3]), volume([1, 0])
    expected = (0.25 * LN2 + 0.75 * 2 * LN2) / 2
    assert focal_loss(logits, labels, gamma=0.0, alpha=0.25).item() == pytest.approx(expected, rel=1e-6)


def test_focal_down_weights_easy_voxels_by_one_minus_p_t_to_the_gamma():
    # p_t = 0.5 and 0.25, so (1 - p_t)^2 = 0.25 and 0.5625.
    logits, labels = volume([0.0, LN3]), volume([1, 0])
    expected = (0.25 * 0.25 * LN2 + 0.75 * 0.5625 * 2 * LN2) / 2
    assert focal_loss(logits, labels, gamma=2.0, alpha=0.25).item() == pytest.approx(expected, rel=1e-6)


def test_focal_with_negative_alpha_is_unweighted():
    logits, labels = volume([0.0, LN3]), volume([1, 0])
    assert focal_loss(logits, labels, gamma=0.0, alpha=-1).item() == pytest.approx((LN2 + 2 * LN2) / 2, rel=1e-6)


# ------------------------------------------------------------------------------------------ variance


def test_variance_loss_is_one_for_uniform_predictions_and_zero_for_perfect_ones():
    labels = volume([1, 1, 0, 0])
    assert variance_loss(torch.full_like(labels, 0.5), labels).item() == pytest.approx(1.0)
    assert variance_loss(torch.full_like(labels, 0.9), labels).item() == pytest.approx(1.0)
    assert variance_loss(labels.clone(), labels).item() == pytest.approx(0.0)


def test_variance_loss_is_the_shortfall_of_prediction_variance_against_label_variance():
    # Var(y) = 0.25; Var(p) of 0.75, 0.75, 0.25, 0.25 = 0.0625; 1 - 0.0625/0.25 = 0.75.
    loss = variance_loss(volume([0.75, 0.75, 0.25, 0.25]), volume([1, 1, 0, 0]))
    assert loss.item() == pytest.approx(0.75)


def test_variance_loss_ignores_samples_with_a_single_class():
    uniform = torch.full((2, 1, 1, 1, 4), 0.3)
    labels = torch.stack([volume([1, 1, 0, 0])[0], volume([1, 1, 1, 1])[0]])
    # First sample: collapsed (1); second: nothing to spread (0); mean 0.5.
    assert variance_loss(uniform, labels).item() == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------ boundary


def test_boundary_band_is_the_voxel_pair_at_the_interface():
    assert boundary_band(volume([1, 1, 0, 0])).flatten().tolist() == [0, 1, 1, 0]


def test_boundary_loss_is_bce_over_the_band_only():
    # Band voxels: p = 0.75 on foreground and p = 0.25 on background, BCE ln(4/3) each; outside, badly wrong.
    logits = volume([-20.0, LN3, -LN3, 20.0])
    assert boundary_loss(logits, volume([1, 1, 0, 0])).item() == pytest.approx(math.log(4 / 3), rel=1e-6)


def test_boundary_loss_without_a_boundary_is_zero():
    assert boundary_loss(volume([0.0, 0.0, 0.0]), volume([1, 1, 1])).item() == 0.0


# -------------------------------------------------------------------------------------------- clDice


def test_soft_skeleton_of_a_thin_line_is_the_line():
    assert torch.equal(soft_skeleton(thin_line(), iterations=3), thin_line())


def test_cldice_of_a_perfect_thin_line_is_zero():
    labels = thin_line()
    assert soft_cldice_loss(labels.clone(), labels, iterations=3).item() == pytest.approx(0.0, abs=1e-6)


def test_cldice_of_a_missed_line_is_one():
    # Topology sensitivity is 0 (nothing of the line's skeleton predicted); precision is vacuously 1.
    labels = thin_line()
    assert soft_cldice_loss(torch.zeros_like(labels), labels, iterations=3).item() == pytest.approx(1.0, abs=1e-5)


def test_cldice_of_a_half_predicted_line():
    # Predicting the first 2 of 5 voxels: precision 2/2 = 1, sensitivity 2/5; 1 - 2·0.4/1.4 = 3/7.
    labels = thin_line()
    probs = torch.zeros_like(labels)
    probs[0, 0, 2, 2, :2] = 1
    assert soft_cldice_loss(probs, labels, iterations=3).item() == pytest.approx(3 / 7, abs=1e-5)


# -------------------------------------------------------------------------------------- connectivity


def test_connectivity_of_a_perfect_prediction_is_zero():
    labels = thin_line()
    assert connectivity_loss(labels.clone(), labels).item() == 0.0


def test_connectivity_counts_broken_and_invented_links():
    # A break in the middle of a 3-voxel line loses both of its links.
    assert connectivity_loss(volume([1, 0, 1]), volume([1, 1, 1])).item() == pytest.approx(1.0)
    # A half-sure middle voxel keeps each link at 0.5.
    assert connectivity_loss(volume([1, 0.5, 1]), volume([1, 1, 1])).item() == pytest.approx(0.5)
    # Bridging a gap invents both links.
    assert connectivity_loss(volume([1, 1, 1]), volume([1, 0, 1])).item() == pytest.approx(1.0)


def test_connectivity_weights_each_axis_equally():
    # A 2x2 slab (D = 1, so no depth pairs), all foreground; the prediction loses one corner voxel.
    labels = torch.ones(1, 1, 1, 2, 2)
    probs = labels.clone()
    probs[0, 0, 0, 0, 0] = 0
    # Along H: 2 pairs, 1 broken -> 0.5; along W: 2 pairs, 1 broken -> 0.5; mean 0.5.
    assert connectivity_loss(probs, labels).item() == pytest.approx(0.5)


# ------------------------------------------------------------------------------------- weighted BCE


def test_class_weighted_bce_weights_each_class_by_its_own_weight():
    # Foreground voxel at p = 0.75: BCE ln(4/3); background voxel at p = 0.75: BCE ln 4.
    logits, labels = volume([LN3, LN3]), volume([1, 0])
    expected = (3.0 * math.log(4 / 3) + 1.0 * math.log(4)) / (3.0 + 1.0)
    loss = class_weighted_bce(logits, labels, background_weight=1.0, foreground_weight=3.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_class_weighted_bce_with_equal_weights_is_plain_bce():
    logits, labels = volume([LN3, LN3]), volume([1, 0])
    plain = (math.log(4 / 3) + math.log(4)) / 2
    for weight in (0.5, 1.0, 7.0):
        assert class_weighted_bce(logits, labels, weight, weight).item() == pytest.approx(plain, rel=1e-6)


def test_raising_background_weight_scales_the_background_share():
    # Shares of the two voxels go from 1:1 to 1:3 (foreground : background).
    logits, labels = volume([LN3, LN3]), volume([1, 0])
    loss = class_weighted_bce(logits, labels, background_weight=3.0, foreground_weight=1.0)
    assert loss.item() == pytest.approx((math.log(4 / 3) + 3 * math.log(4)) / 4, rel=1e-6)


# ---------------------------------------------------------------------------------------- combined


def test_surface_loss_is_the_weighted_mean_of_its_components():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 6, 6, 6)
    labels = (torch.rand(2, 1, 6, 6, 6) < 0.6).float()
    loss = SurfaceLoss(
        dice_weight=0.4, focal_weight=0.25, variance_weight=0.2, boundary_weight=0.1, cldice_weight=0.05,
        use_class_weights=True, background_weight=1.0, foreground_weight=3.0, skeleton_iterations=2,
    )
    total, components = loss(logits, labels)
    assert set(components) == set(COMPONENTS)
    assert components["connectivity_loss"].item() == 0.0
    expected = (
        0.4 * components["dice_loss"] + 0.25 * components["focal_loss"] + 0.2 * components["variance_loss"]
        + 0.1 * components["boundary_loss"] + 0.05 * components["cldice_loss"] + components["weighted_bce_loss"]
    ) / (0.4 + 0.25 + 0.2 + 0.1 + 0.05 + 1.0)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert components["dice_loss"].item() == pytest.approx(soft_dice_loss(torch.sigmoid(logits), labels).item())
    assert components["focal_loss"].item() == pytest.approx(focal_loss(logits, labels, 2.0, 0.25).item())


def test_surface_loss_without_class_weights_reports_weighted_bce_as_zero():
    logits, labels = volume([LN3, -LN3]), volume([1, 0])
    total, components = SurfaceLoss(dice_weight=0.5)(logits, labels)
    assert components["weighted_bce_loss"].item() == 0.0
    # Only dice counts: p = 0.75 and 0.25, intersection 0.75, Σp + Σy = 2.
    assert total.item() == pytest.approx(1 - 1.5 / 2, abs=1e-6)


def test_surface_loss_does_not_fall_when_every_weight_shrinks():
    logits, labels = volume([LN3, -LN3, 0.0]), volume([1, 0, 1])
    large, _ = SurfaceLoss(dice_weight=0.6, focal_weight=0.4)(logits, labels)
    small, _ = SurfaceLoss(dice_weight=0.06, focal_weight=0.04)(logits, labels)
    assert small.item() == pytest.approx(large.item(), rel=1e-6)


def test_surface_loss_needs_some_weight():
    with pytest.raises(ValueError, match="at least one"):
        SurfaceLoss()


# ------------------------------------------------------------------------------------------ metrics


def two_by_two_by_two():
    labels = volume([1, 1, 1, 1, 0, 0, 0, 0], shape=(1, 1, 2, 2, 2))
    probs = volume([0.9, 0.8, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4], shape=(1, 1, 2, 2, 2))
    return probs, labels


def test_metrics_at_threshold_one_half():
    # Predicted foreground: 0.9, 0.8, 0.6 (true) and 0.7 (false); 0.2 is missed. TP 3, FP 1, FN 1, TN 3.
    metrics = segmentation_metrics(*two_by_two_by_two(), threshold=0.5)
    assert set(metrics) == set(METRICS)
    assert metrics["precision"] == pytest.approx(0.75)
    assert metrics["recall"] == pytest.approx(0.75)
    assert metrics["dice"] == pytest.approx(0.75)
    assert metrics["iou"] == pytest.approx(0.6)
    assert metrics["predicted_fg_fraction"] == pytest.approx(0.5)
    assert metrics["label_fg_fraction"] == pytest.approx(0.5)
    assert metrics["class_balance_error"] == pytest.approx(0.0)
    # Mean 0.5, mean square 2.6/8 = 0.325: variance 0.075.
    assert metrics["prob_std"] == pytest.approx(math.sqrt(0.075))


def test_metrics_at_a_higher_threshold_predict_less_foreground():
    # At 0.65 the 0.6 voxel drops out: TP 2, FP 1, FN 2.
    metrics = segmentation_metrics(*two_by_two_by_two(), threshold=0.65)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["dice"] == pytest.approx(4 / 7)
    assert metrics["iou"] == pytest.approx(0.4)
    assert metrics["predicted_fg_fraction"] == pytest.approx(3 / 8)
    assert metrics["class_balance_error"] == pytest.approx(1 / 8)


def test_uniform_predictions_have_no_spread():
    probs, labels = two_by_two_by_two()
    metrics = segmentation_metrics(torch.full_like(probs, 0.5), labels, threshold=0.4)
    assert metrics["prob_std"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["predicted_fg_fraction"] == 1.0
    assert metrics["class_balance_error"] == pytest.approx(0.5)


def test_pooled_counts_are_the_counts_of_all_voxels():
    probs, labels = two_by_two_by_two()
    halves = SegmentationCounts.of(probs[:, :, :1], labels[:, :, :1], 0.5) + SegmentationCounts.of(
        probs[:, :, 1:], labels[:, :, 1:], 0.5
    )
    whole = SegmentationCounts.of(probs, labels, 0.5)
    assert halves.metrics() == pytest.approx(whole.metrics())


def test_metrics_of_empty_prediction_and_label():
    empty = torch.zeros(1, 1, 2, 2, 2)
    metrics = segmentation_metrics(empty, empty, threshold=0.5)
    assert (metrics["precision"], metrics["recall"], metrics["dice"], metrics["iou"]) == (0.0, 0.0, 1.0, 1.0)


def test_reference_loss_is_dice_plus_bce_whatever_the_weights():
    # logits 0 everywhere: p = 0.5, BCE = ln 2; labels half foreground: dice = 1 - 2*2/(4+4) = 0.5 (8 voxels).
    logits = torch.zeros(1, 1, 2, 2, 2)
    labels = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]).reshape(1, 1, 2, 2, 2)
    assert reference_loss(logits, labels).item() == pytest.approx(0.5 + math.log(2), rel=1e-5)
