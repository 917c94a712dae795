"""The flyvis latent evolution trainer: model, simulator, constant baseline, loaders, and its search space."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from objectives.dynamics import constant_model_loss, improvement_over_constant
from studies.space import load_space
from trainers.base import fit
from trainers.flyvis import (
    DEFAULT_CONFIG,
    FRAME_SECONDS,
    Connectome,
    LatentEvolution,
    LatentEvolutionNetwork,
    VoltageFrames,
    fly_connectome,
    load_recording,
    recording_for,
    simulate_voltages,
    synthetic_recording,
)

SPACE_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "flyvis.py"



@pytest.fixture(scope="module")
def recording():
    data = DEFAULT_CONFIG["data"]
    return synthetic_recording(data["num_columns"], data["frames"], data["noise_std"], data["seed"])


@pytest.mark.parametrize("latent_dims, stimulus_channels, batch_norm", [(64, 0, False), (1, 32, True)])
def test_network_maps_voltages_one_step_ahead(latent_dims, stimulus_channels, batch_norm):
    config = LatentEvolution().resolve({"latent_dims": latent_dims, "training": {"use_batch_norm": batch_norm}})
    network = LatentEvolutionNetwork(config, neurons=192, stimulus_channels=stimulus_channels)
    voltage, stimulus = torch.randn(8, 192), torch.rand(8, stimulus_channels)
    assert network(voltage, stimulus).shape == (8, 192)
    assert network.encoder(voltage).shape == (8, latent_dims)
    assert network.evolve(network.encoder(voltage), stimulus).shape == (8, latent_dims)
    assert (network.stimulus_encoder is not None) == bool(stimulus_channels)
    # Batch norm sits in encoder, decoder and evolver when asked for, never in the stimulus encoder.
    has_batch_norm = any(isinstance(m, torch.nn.BatchNorm1d) for m in network.modules())
    assert has_batch_norm == batch_norm
    if network.stimulus_encoder is not None:
        assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in network.stimulus_encoder.modules())


def test_an_unknown_train_step_is_a_config_error():
    with pytest.raises(ValueError, match="training.train_step must be one of train_step, train_step_nocompile"):
        LatentEvolution().resolve({"training": {"train_step": "compiled"}})


def test_a_frame_is_20_ms_of_leaky_integration():
    # One isolated neuron per time constant, a constant drive, no wiring, no noise: v_k = b (1 - exp(-20 ms (k+1) / tau)).
    time_constants = torch.tensor([0.01, 0.04, 0.1])
    drive = 0.8
    connectome = Connectome(torch.zeros(3, 3), time_constants, torch.full((3,), drive), torch.zeros(3, 1))
    voltages = simulate_voltages(connectome, torch.zeros(10, 1), noise_std=0.0, seed=0)
    elapsed = FRAME_SECONDS * torch.arange(1, 11)[:, None]
    expected = drive * (1 - torch.exp(-elapsed / time_constants))
    torch.testing.assert_close(voltages, expected)
    assert FRAME_SECONDS == 0.02


def test_simulated_recording_is_bounded_and_driven_by_the_stimulus(recording):
    data = DEFAULT_CONFIG["data"]
    neurons = data["num_columns"] * 6
    assert recording.voltage.shape == (data["frames"], neurons)
    assert recording.stimulus.shape == (data["frames"], data["num_columns"])
    assert recording.stimulus.min() >= 0 and recording.stimulus.max() <= 1
    # Outputs saturate at 1, so no voltage can exceed what all its inputs give at once (plus a noise margin).
    connectome = fly_connectome(data["num_columns"], data["seed"])
    bound = (connectome.weights.abs().sum(1) + connectome.resting_drive.abs() + connectome.stimulus_gain.sum(1)).max()
    assert torch.isfinite(recording.voltage).all()
    assert recording.voltage.abs().max() <= bound + 6 * data["noise_std"]
    # Photoreceptors (type 0 of each column) follow their column's luminance...
    photoreceptor, luminance = recording.voltage[100:, 0], recording.stimulus[100:, 0]
    assert torch.corrcoef(torch.stack([photoreceptor, luminance]))[0, 1] > 0.8
    # ...and the whole network moves several times more than under a uniform grey screen.
    grey = simulate_voltages(connectome, torch.full((1000, data["num_columns"]), 0.5), data["noise_std"], data["seed"])
    assert recording.voltage[100:1000].std(0).mean() > 2 * grey[100:].std(0).mean()


def test_constant_baseline_is_the_mse_of_predicting_no_change(tmp_path):
    # The log's constant model (latent.py's val_loss_constant_model) predicts x(t+1) = x(t).
    voltage = np.array([[0, 0], [1, 2], [1, 0], [3, 0], [0, 1], [2, 2], [2, 4], [0, 0], [1, 1], [1, 1]], dtype=np.float32)
    path = tmp_path / "recording.npy"
    np.save(path, voltage)
    split = {"train_start": 0, "train_end": 4, "validation_start": 4, "validation_end": 7, "test_start": 7, "test_end": 10}
    config = LatentEvolution().resolve({"data": {"path": str(path), "standardize": False}, "training": {"data_split": split}})
    data = VoltageFrames(config)
    data.setup()
    # validation frames (0,1) -> (2,2) -> (2,4): squared steps 4+1 and 0+4, over 2 steps x 2 neurons
    assert data.constant_baseline_losses["validation"] == pytest.approx((4 + 1 + 0 + 4) / 4)
    assert data.constant_baseline_losses["train"] == pytest.approx((1 + 4 + 0 + 4 + 4 + 0) / 6)
    assert data.constant_baseline_losses["test"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert constant_model_loss(torch.from_numpy(voltage[4:7])).item() == pytest.approx(9 / 4)
    assert improvement_over_constant(0.25 * 9 / 4, 9 / 4) == pytest.approx(0.75)
    # The pairs the model learns from are (x(t), x(t+1)) inside each split.
    x_t, stimulus, x_next = data.datasets["validation"].tensors
    assert torch.equal(x_t, torch.from_numpy(voltage[4:6])) and torch.equal(x_next, torch.from_numpy(voltage[5:7]))
    assert stimulus.shape == (2, 0)


def test_npz_and_npy_recordings_load(tmp_path):
    voltage = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    stimulus = np.random.default_rng(1).uniform(size=(50, 3)).astype(np.float32)
    np.savez(tmp_path / "sim.npz", voltage=voltage, stimulus=stimulus)
    np.save(tmp_path / "voltage.npy", voltage)
    np.savez(tmp_path / "wrong.npz", voltages=voltage)
    loaded = load_recording(str(tmp_path / "sim.npz"))
    assert torch.equal(loaded.voltage, torch.from_numpy(voltage)) and torch.equal(loaded.stimulus, torch.from_numpy(stimulus))
    assert load_recording(str(tmp_path / "voltage.npy")).stimulus is None
    with pytest.raises(ValueError, match="'voltage'"):
        load_recording(str(tmp_path / "wrong.npz"))
    split = {"train_start": 0, "train_end": 30, "validation_start": 30, "validation_end": 40, "test_start": 40, "test_end": 50}
    family = LatentEvolution()
    without_stimulus = family.resolve(
        {"use_stimulus": True, "data": {"path": str(tmp_path / "voltage.npy")}, "training": {"data_split": split}}
    )
    with pytest.raises(ValueError, match="no stimulus"):
        recording_for(without_stimulus)
    # A saved recording trains like the simulated one: neurons and stimulus channels come from the file.
    with_stimulus = {"use_stimulus": True, "data": {"path": str(tmp_path / "sim.npz")}, "training": {"data_split": split}}
    model = family.build_model(family.resolve(with_stimulus))
    assert model.network.encoder[0].in_features == 6 and model.network.stimulus_encoder[0].in_features == 3


def test_space_carries_the_logs_sweeps_and_configs():
    space = load_space(SPACE_FILE)
    assert space.trainer is LatentEvolution
    assert [o.name for o in space.objectives] == ["val_loss", "improvement_over_constant", "test_loss"]
    assert space.objectives[1].direction == "maximize"
    grid = space.grid()
    assert grid["training.batch_size"] == [32, 128, 256, 512, 1024, 2048]
    assert grid["training.learning_rate"] == [1e-3, 1e-4, 1e-5, 1e-6]
    assert grid["latent_dims"] == [1, 64, 128, 256, 512]
    assert grid["encoder_params.l1_reg_loss"] == [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1]
    assert space.resources.cpus == 1 and space.resources.gpus == 0
    # Every baseline sets every knob, with the log's values.
    for values in space.baselines.values():
        assert set(values) == set(space.knobs)
    best = space.baselines["add_stimulus_lr 256 / 1e-5"]
    assert (best["training.batch_size"], best["training.learning_rate"], best["use_stimulus"]) == (256, 1e-5, True)
    assert space.baselines["baseline experiment"]["training.use_batch_norm"] is True
    assert space.baselines["latent1d"]["latent_dims"] == 1


def test_a_baseline_trains_and_reports_every_epoch():
    space = load_space(SPACE_FILE)
    reports = []
    # This baseline asks for the compiled train step: on a CPU it runs eagerly (compilation is CUDA-only).
    config = space.training_config(space.baselines["add_stimulus_lr 256 / 1e-5"])
    fit(space.trainer(), config, max_epochs=2, report=lambda metrics, folder: reports.append(metrics))
    assert [r["epoch"] for r in reports] == [1.0, 2.0]
    for metrics in reports:
        for name in ("val_loss", "constant_baseline_loss", "improvement_over_constant", "test_loss", "test_improvement_over_constant"):
            assert math.isfinite(metrics[name]), name
        assert metrics["improvement_over_constant"] == pytest.approx(1 - metrics["val_loss"] / metrics["constant_baseline_loss"])
        assert "peak_gpu_memory_mb" not in metrics  # CUDA only
    assert reports[0]["constant_baseline_loss"] == reports[1]["constant_baseline_loss"]
    assert math.isfinite(reports[1]["train_total_loss"])
