"""objectives.regression: every loss and metric on cases small enough to check by hand."""

import math
import os

import pytest
import torch
import torch.distributed as dist

from objectives.regression import (
    RegressionLoss,
    SampleBuffer,
    average_ranks,
    bin_class_weights,
    bin_indices,
    buffer_weight_at,
    dist_loss,
    focal_mse,
    kde_pseudo_labels,
    kde_quantiles,
    regression_metrics,
    supcr_loss,
    temperature_at,
)

DOUBLE = torch.float64

PHI_INVERSE_075 = 0.6744897501960817  # the standard normal's 75% quantile


def test_focal_mse_is_mse_times_one_plus_mse_to_the_half_gamma():
    predictions = torch.tensor([0.0, 1.0, 3.0])
    targets = torch.tensor([0.0, 0.0, 1.0])
    # squared errors 0, 1, 4: gamma 2 gives e*(1+e) = 0, 2, 20; gamma 1 gives e*(1+sqrt e) = 0, 2, 12.
    assert torch.allclose(focal_mse(predictions, targets, gamma=2.0), torch.tensor([0.0, 2.0, 20.0]))
    assert torch.allclose(focal_mse(predictions, targets, gamma=1.0), torch.tensor([0.0, 2.0, 12.0]))
    # A zero error has a zero gradient, not NaN, even where x^(gamma/2) is infinitely steep at 0.
    exact = torch.tensor([1.0, 2.0], requires_grad=True)
    focal_mse(exact, torch.tensor([1.0, 0.0]), gamma=0.5).sum().backward()
    assert torch.isfinite(exact.grad).all() and exact.grad[0] == 0.0


def test_bin_indices_put_each_edge_in_the_bin_above():
    edges = torch.tensor([5.0, 7.0, 9.0, 11.0])
    assert bin_indices(torch.tensor([4.9, 5.0, 8.0, 10.99, 11.0, 13.0]), edges).tolist() == [0, 1, 2, 3, 4, 4]


def test_bin_class_weights_inverse_frequency_with_extreme_multiplier():
    counts = torch.tensor([1, 10, 10, 10, 1])
    # total 32, 5 classes: 32/(5*1) = 6.4 for the extremes, 32/(5*10) = 0.64 for the rest.
    assert torch.allclose(bin_class_weights(counts), torch.tensor([6.4, 0.64, 0.64, 0.64, 6.4]))
    # AbAg v2: the extremes times 10 (81.2 -> 812.0 in the log's table), the rest unchanged.
    assert torch.allclose(bin_class_weights(counts, 10.0), torch.tensor([64.0, 0.64, 0.64, 0.64, 64.0]))
    # An empty bin has nothing to weigh: weight 0 rather than infinity; 20/(5*5) = 0.8 for the rest.
    assert torch.allclose(bin_class_weights(torch.tensor([0, 5, 5, 5, 5]), 10.0), torch.tensor([0.0, 0.8, 0.8, 0.8, 8.0]))


def test_sample_buffer_keeps_the_most_recent_and_survives_a_state_dict():
    buffer = SampleBuffer(capacity=4)
    buffer.push(torch.tensor([1.0, 2.0, 3.0]))
    assert len(buffer) == 3 and buffer.samples().tolist() == [1.0, 2.0, 3.0]
    buffer.push(torch.tensor([4.0, 5.0]))
    assert len(buffer) == 4 and sorted(buffer.samples().tolist()) == [2.0, 3.0, 4.0, 5.0]
    buffer.push(torch.arange(10.0, 16.0))
    assert sorted(buffer.samples().tolist()) == [12.0, 13.0, 14.0, 15.0]
    restored = SampleBuffer(capacity=4)
    restored.load_state_dict(buffer.state_dict())
    restored.push(torch.tensor([20.0]))
    assert sorted(restored.samples().tolist()) == [13.0, 14.0, 15.0, 20.0]


def _push_from_rank(rank: int, world_size: int, init_file: str, result_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    buffer = SampleBuffer(capacity=8)
    # Uneven counts, as on a last short batch: rank 0 pushes [0, 1], rank 1 pushes [10, 11, 12].
    buffer.push(torch.arange(rank + 2, dtype=torch.float32) + 10 * rank)
    torch.save(buffer.samples(), os.path.join(result_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_sample_buffer_gathers_every_ddp_rank(tmp_path):
    torch.multiprocessing.spawn(_push_from_rank, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank{rank}.pt").tolist() == [0.0, 1.0, 10.0, 11.0, 12.0]


def test_kde_quantiles_of_one_sample_are_the_normal_quantiles():
    # One sample at 0 with bandwidth 1 is N(0, 1): quartiles at ±0.67449; bandwidth 2 doubles them.
    quartiles = kde_quantiles(torch.tensor([0.0], dtype=DOUBLE), 1.0, torch.tensor([0.25, 0.75], dtype=DOUBLE))
    assert torch.allclose(quartiles, torch.tensor([-PHI_INVERSE_075, PHI_INVERSE_075], dtype=DOUBLE), atol=1e-9)
    wide = kde_quantiles(torch.tensor([3.0], dtype=DOUBLE), 2.0, torch.tensor([0.75], dtype=DOUBLE))
    assert wide.item() == pytest.approx(3.0 + 2 * PHI_INVERSE_075, abs=1e-9)


def test_kde_quantiles_of_two_far_modes_sit_on_the_modes():
    # Samples 0 and 10, bandwidth 0.5: F(x) = (Phi(2x) + Phi(2(x-10)))/2, so F(0) = 0.25 and F(10) = 0.75
    # to within Phi(-20) ~ 1e-89. The bisection fallback crosses the flat gap between the modes.
    samples = torch.tensor([0.0, 10.0], dtype=DOUBLE)
    quantiles = kde_quantiles(samples, 0.5, torch.tensor([0.25, 0.75], dtype=DOUBLE))
    assert torch.allclose(quantiles, torch.tensor([0.0, 10.0], dtype=DOUBLE), atol=1e-9)
    # A warm start anywhere reaches the same answer.
    restarted = kde_quantiles(samples, 0.5, torch.tensor([0.25, 0.75], dtype=DOUBLE), start=torch.tensor([7.0, -3.0]))
    assert torch.allclose(restarted, quantiles, atol=1e-9)


def test_kde_pseudo_labels_use_midpoint_ranks():
    # A batch of 2 takes levels 0.25 and 0.75.
    labels = kde_pseudo_labels(torch.tensor([0.0], dtype=DOUBLE), 1.0, batch_size=2)
    assert torch.allclose(labels, torch.tensor([-PHI_INVERSE_075, PHI_INVERSE_075], dtype=DOUBLE), atol=1e-9)


def test_dist_loss_is_l1_between_sorted_predictions_and_pseudo_labels():
    pseudo_labels = torch.tensor([-PHI_INVERSE_075, PHI_INVERSE_075])
    # Sorted predictions [-0.2, 0.3]: (|-0.2 + 0.67449| + |0.3 - 0.67449|) / 2 = (0.47449 + 0.37449) / 2.
    loss = dist_loss(torch.tensor([0.3, -0.2]), pseudo_labels)
    assert loss.item() == pytest.approx((0.47448975 + 0.37448975) / 2, abs=1e-6)


def test_dist_loss_pushes_collapsed_predictions_towards_the_tails():
    generator = torch.Generator().manual_seed(0)
    reference_targets = torch.randn(2048, generator=generator)
    # A collapsed model: 64 predictions within 0.01 of the mean.
    predictions = (0.01 * torch.randn(64, generator=generator)).requires_grad_()
    # L1's gradient per prediction is 1/64; lr 2 moves each one ~0.03 a step towards its pseudo-label.
    optimizer = torch.optim.SGD([predictions], lr=2.0)
    start_std = predictions.std().item()
    for _ in range(20):
        optimizer.zero_grad()
        loss = dist_loss(predictions, kde_pseudo_labels(reference_targets, 0.3, len(predictions)))
        loss.backward()
        optimizer.step()
    assert start_std < 0.02
    # Pseudo-labels span the KDE's quantiles (std ~1); 20 steps of ~0.03 spread the predictions out.
    assert predictions.std().item() > 0.3
    assert predictions.min().item() < -0.5 and predictions.max().item() > 0.5


def test_supcr_loss_on_three_points_by_hand():
    # Embeddings 0, 1, 3 (similarity -|z_i - z_j|), labels 0, 1, 2, temperature 1. The pairs:
    #   (0,1): k in {1,2}: -log(e^-1/(e^-1+e^-3)) = log(1+e^-2)    (0,2): k in {2}: 0
    #   (1,0): k in {0,2}: log(1+e^-1)    (1,2): k in {0,2}: -log(e^-2/(e^-1+e^-2)) = log(1+e)
    #   (2,0): k in {0}: 0                (2,1): k in {0,1}: -log(e^-2/(e^-3+e^-2)) = log(1+e^-1)
    expected = (math.log(1 + math.exp(-2)) + 2 * math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 6
    embeddings = torch.tensor([[0.0], [1.0], [3.0]], dtype=DOUBLE)
    loss = supcr_loss(embeddings, torch.tensor([0.0, 1.0, 2.0], dtype=DOUBLE), temperature=1.0)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.34445218, abs=1e-8)


def test_supcr_loss_counts_label_ties_in_the_denominator():
    # Embeddings 0, 1, 2, labels 0, 1, 1 (a tie), temperature 1:
    #   (0,1): k in {1,2}: log(1+e^-1)   (0,2): k in {1,2}: log(1+e)
    #   (1,0): k in {0}: 0               (1,2): k in {0,2} (distance 0 ties with 2): log 2
    #   (2,0): k in {0}: 0               (2,1): k in {0,1}: log(1+e^-1)
    expected = (2 * math.log(1 + math.exp(-1)) + math.log(1 + math.e) + math.log(2)) / 6
    loss = supcr_loss(torch.tensor([[0.0], [1.0], [2.0]], dtype=DOUBLE), torch.tensor([0.0, 1.0, 1.0], dtype=DOUBLE), 1.0)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.43882204, abs=1e-8)


def test_supcr_loss_temperature_scales_the_embeddings_and_gradients_stay_finite():
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(6, 3, generator=generator, dtype=DOUBLE)
    labels = torch.randn(6, generator=generator, dtype=DOUBLE)
    assert supcr_loss(embeddings, labels, 0.2).item() == pytest.approx(supcr_loss(embeddings / 0.2, labels, 1.0).item())
    # Identical embeddings (distance 0) must not give NaN gradients.
    collapsed = torch.zeros(4, 2, requires_grad=True)
    supcr_loss(collapsed, torch.tensor([0.0, 1.0, 2.0, 3.0]), 0.05).backward()
    assert torch.isfinite(collapsed.grad).all()


@pytest.mark.parametrize("schedule", ["exponential", "cosine"])
def test_temperature_schedule_runs_from_init_to_final(schedule):
    assert temperature_at(0.0, 0.2, 0.05, schedule) == pytest.approx(0.2)
    assert temperature_at(1.0, 0.2, 0.05, schedule) == pytest.approx(0.05)
    assert temperature_at(2.0, 0.2, 0.05, schedule) == pytest.approx(0.05)


def test_temperature_schedule_midpoints():
    # Exponential: the geometric mean sqrt(0.2 * 0.05) = 0.1; cosine: the arithmetic mean 0.125.
    assert temperature_at(0.5, 0.2, 0.05, "exponential") == pytest.approx(0.1)
    assert temperature_at(0.5, 0.2, 0.05, "cosine") == pytest.approx(0.125)
    with pytest.raises(ValueError, match="temp_schedule"):
        temperature_at(0.5, 0.2, 0.05, "linear")


def test_buffer_weight_schedule_of_cabbi_016_and_017():
    # 016 (warmup 30, stable 30): nothing before epoch 30, then 0.9 for good.
    assert [buffer_weight_at(e, 30, 30, 0.9) for e in (0, 29, 30, 100)] == [0.0, 0.0, 0.9, 0.9]
    # 017 (warmup 10, stable 40): nothing before 10, a ramp to 0.9 at 40 (half way, 0.45, at 25).
    assert [buffer_weight_at(e, 10, 40, 0.9) for e in (9, 10, 25, 40, 150)] == pytest.approx([0.0, 0.0, 0.45, 0.9, 0.9])


def loss_options(**changes):
    """A loss_config with every term off; tests switch on what they check."""
    options = {
        "use_focal_loss": False,
        "focal_gamma": 2.0,
        "class_weights": False,
        "extreme_bin_multiplier": 1.0,
        "lambda_dist": 0.0,
        "lambda_supcr": 0.0,
        "buffer_size": 16,
        "bandwidth": 1.0,
        "min_samples_for_dist": 4,
        "min_samples_for_supcr": 4,
        "init_temperature": 1.0,
        "final_temperature": 1.0,
        "temp_schedule": "cosine",
        "warmup_epochs": 0,
        "stable_epoch": 0,
        "max_buffer_weight": 0.5,
        "max_epochs": 10,
    }
    options.update(changes)
    return options


EDGES = [5.0, 7.0, 9.0, 11.0]
COUNTS = torch.tensor([1, 10, 10, 10, 1])


def test_regression_loss_weights_focal_mse_per_bin():
    loss = RegressionLoss(loss_options(use_focal_loss=True, class_weights=True, extreme_bin_multiplier=10.0), EDGES, COUNTS)
    # Errors 1 (very_weak, weight 64) and 2 (moderate, weight 0.64); focal gamma 2: 1*(1+1) = 2, 4*(1+4) = 20.
    value = loss(torch.tensor([5.0, 10.0]), torch.tensor([4.0, 8.0]), None, epoch=0, record_targets=True)
    assert value.item() == pytest.approx((64 * 2 + 0.64 * 20) / 2, rel=1e-6)


def test_regression_loss_adds_weighted_dist_loss_once_the_buffer_is_full_enough():
    loss = RegressionLoss(loss_options(lambda_dist=0.4, min_samples_for_dist=3), EDGES, COUNTS)
    predictions, targets = torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0])
    # Two targets in the buffer, three needed: plain MSE (0).
    assert loss(predictions, targets, None, epoch=5, record_targets=True).item() == 0.0
    # Four zeros in the buffer: KDE N(0, 1), pseudo-labels ±0.67449, DistLoss 0.67449, times 0.5 * 0.4.
    value = loss(predictions, targets, None, epoch=5, record_targets=True)
    assert value.item() == pytest.approx(0.5 * 0.4 * PHI_INVERSE_075, rel=1e-5)
    # Validation does not feed the buffer.
    loss(predictions, torch.tensor([50.0, 50.0]), None, epoch=5, record_targets=False)
    assert len(loss.buffer) == 4


def test_regression_loss_adds_supcr_at_the_scheduled_temperature_and_weight():
    loss = RegressionLoss(
        loss_options(lambda_supcr=0.1, min_samples_for_supcr=3, warmup_epochs=2, stable_epoch=6, init_temperature=2.0, final_temperature=0.5),
        EDGES,
        COUNTS,
    )
    embeddings = torch.tensor([[0.0], [1.0], [3.0]], dtype=DOUBLE)
    targets = torch.tensor([0.0, 1.0, 2.0], dtype=DOUBLE)
    # Epoch 1 is in the warmup: MSE alone.
    assert loss(targets, targets, embeddings, epoch=1, record_targets=True).item() == 0.0
    # Epoch 4: weight 0.5 * (4-2)/(6-2) = 0.25; cosine temperature at 4/10: 0.5 + 0.75 * (1 + cos(0.4 pi)).
    temperature = 0.5 + 0.75 * (1 + math.cos(0.4 * math.pi))
    expected = 0.25 * 0.1 * supcr_loss(embeddings, targets, temperature).item()
    assert loss(targets, targets, embeddings, epoch=4, record_targets=True).item() == pytest.approx(expected, rel=1e-9)


def test_average_ranks_share_ties():
    assert average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_regression_metrics_by_hand():
    targets = torch.tensor([4.0, 6.0, 8.0, 10.0, 12.0])
    predictions = torch.tensor([5.0, 6.0, 7.0, 10.0, 10.0])
    metrics = regression_metrics(predictions, targets, EDGES, tail_sigma=1.0)
    # Errors 1, 0, -1, 0, -2: MSE 6/5. Targets' mean 8, sum of squares about it 40: R² = 1 - 6/40.
    assert metrics["mse"] == pytest.approx(1.2)
    assert metrics["rmse"] == pytest.approx(math.sqrt(1.2))
    assert metrics["r2"] == pytest.approx(0.85)
    # Pearson: cov sum 28, prediction SS 21.2, target SS 40: 28 / sqrt(21.2 * 40).
    assert metrics["pearson"] == pytest.approx(28 / math.sqrt(848))
    # Spearman: prediction ranks 1, 2, 3, 4.5, 4.5 against 1..5: 9.5 / sqrt(9.5 * 10).
    assert metrics["spearman"] == pytest.approx(9.5 / math.sqrt(95))
    # One target per bin: very_weak 4 (error 1), weak 6 (0), moderate 8 (1), strong 10 (0), very_strong 12 (2).
    assert [metrics[f"rmse_{b}"] for b in ("very_weak", "weak", "moderate", "strong", "very_strong")] == pytest.approx(
        [1.0, 0.0, 1.0, 0.0, 2.0]
    )
    # Target std sqrt(8) ~ 2.83: beyond 1σ are 4 and 12 (errors 1 and 2): sqrt(5/2).
    assert metrics["tail_rmse"] == pytest.approx(math.sqrt(2.5))
    # Prediction std sqrt(4.24) over target std sqrt(8).
    assert metrics["std_ratio"] == pytest.approx(math.sqrt(4.24 / 8))
    # Sorted 5, 6, 7, 10, 10 against 4, 6, 8, 10, 12: gaps 1, 0, 1, 0, 2.
    assert metrics["distribution_distance"] == pytest.approx(0.8)


def test_regression_metrics_of_a_model_collapsed_to_the_mean():
    # Eight zeros and ±10: mean 0, std sqrt(200/10) ~ 4.47, so only ±10 lie beyond 2σ.
    targets = torch.tensor([0.0] * 8 + [10.0, -10.0])
    metrics = regression_metrics(torch.zeros(10), targets, [-2.0, -1.0, 1.0, 2.0])
    assert metrics["tail_rmse"] == pytest.approx(10.0)
    assert metrics["std_ratio"] == 0.0
    assert metrics["distribution_distance"] == pytest.approx(2.0)
    assert metrics["rmse_very_weak"] == pytest.approx(10.0) and metrics["rmse_moderate"] == 0.0
    assert math.isnan(metrics["pearson"]) and math.isnan(metrics["rmse_weak"])
