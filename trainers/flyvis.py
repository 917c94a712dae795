"""Fly visual system voltages, one 20 ms step ahead: the latent evolution model of the flyvis log.

The model (seeds/003_47ed67130df93812.txt, "Baseline experiment" and "Add the stimulus")::

    x(t) [neurons] --encoder--> z(t) [latent_dims]
    stimulus(t) [columns] --stimulus encoder--> s(t) [64]            (use_stimulus only)
    evolver:  z(t+1) = z(t) + f([z(t), s(t)])
    x̂(t+1) = decoder(z(t+1))

Encoder, decoder and evolver are MLPs with optional batch norm after each hidden layer; the stimulus
encoder never has it. Training minimises the one-step MSE plus the reconstruction MSE of
``decoder(encoder(x(t)))`` plus an L1 penalty, the mean ``|w|`` of each encoder/decoder weight tensor
times ``encoder_params.l1_reg_loss`` / ``decoder_params.l1_reg_loss`` (the log's "Add regularization loss").

The config is the log's ``latent.py`` config as its command lines spell it (``--latent-dims``,
``--training.batch-size``, ``--training.learning-rate``, ``--training.use-batch-norm``,
``--training.train-step``, ``--training.use-tf32-matmul``, ``--evolver-params.num-hidden-layers``,
``--encoder_params.l1_reg_loss``, ...) plus ``use_stimulus`` and a ``data`` section; see
:data:`DEFAULT_CONFIG`. Keys left out take its value; unknown keys are an error. ``train_step`` and
``use_tf32_matmul`` act on CUDA only: on a CPU, compiling costs more than a small trial, and TF32
does not exist.

Voltages are z-scored per neuron with the training frames' mean and spread (``data.standardize``),
so every loss below is in units of each neuron's standard deviation.

Metrics, each validation epoch, over whole splits:

``val_loss``                    one-step MSE on the validation frames (the log's "Val Loss")
``constant_baseline_loss``      MSE of the constant model x̂(t+1) = x(t) on the validation frames (the
                                log's ``val_loss_constant_model``), computed once when the data is set up
``improvement_over_constant``   ``1 - val_loss / constant_baseline_loss`` (the log's "Improvement vs Constant")
``test_loss``, ``test_constant_baseline_loss``, ``test_improvement_over_constant``   the same on the test frames
``train_loss``                  one-step MSE on the training batches, comparable with ``val_loss``
``train_reconstruction_loss``   the reconstruction MSE
``train_total_loss``            what is optimised: the sum of the two plus the L1 penalty. The log's
                                "Train Loss" column is this total, which is why it sits above its val loss.
``peak_gpu_memory_mb``          on CUDA only (the log's "GPU Mem")

Data: by default a simulated recording (:func:`synthetic_recording`): neurons of six cell types in
every column of a ring of retinotopic columns, sparse type-to-type wiring between neighbouring columns,
leaky voltages integrated exactly between 20 ms frames, photoreceptors driven by a moving visual
stimulus. ``data.path`` names a real recording or a saved simulation instead (:func:`load_recording`).

Example::

    from trainers.base import fit
    from trainers.flyvis import LatentEvolution

    metrics = fit(LatentEvolution(), {"use_stimulus": True, "training": {"batch_size": 256}}, max_epochs=2)
    print(metrics["val_loss"], metrics["improvement_over_constant"])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from objectives.dynamics import constant_model_loss, improvement_over_constant
from trainers.base import TrainerFamily

LOG = "seeds/003_47ed67130df93812.txt"

FRAME_SECONDS = 0.02  # LOG "Baseline experiment": "the simulated 20ms time step resolution"

DEFAULT_CONFIG: dict[str, Any] = {
    "latent_dims": 256,  # LOG "sweep latent dimensions": "Use latent dimension 64 or 256 as default"
    "use_stimulus": False,  # LOG "Baseline experiment": "we are not adding in the stimulus"
    "encoder_params": {
        "num_hidden_layers": 3,  # latent_default.yaml at the log's commit 0412ea1 ("Assess variance in training")
        "num_hidden_units": 64,  # the log's is 256 for 13741 neurons; 64 keeps a CPU epoch well under a second
        "l1_reg_loss": 0.0,  # LOG "Add regularization loss": swept 0.0 ... 0.1, off before
    },
    "decoder_params": {
        "num_hidden_layers": 3,  # symmetric to the encoder, as in the log's model
        "num_hidden_units": 64,
        "l1_reg_loss": 0.0,
    },
    "evolver_params": {
        "num_hidden_layers": 3,  # latent_default.yaml; LOG "Make latent dim 1" sets 0
        "num_hidden_units": 64,
    },
    "stimulus_encoder_params": {  # LOG "Add the stimulus": "64 hidden units, 3 hidden layers, 64 output dims"
        "num_hidden_layers": 3,
        "num_hidden_units": 64,
        "num_output_dims": 64,
    },
    "training": {
        "batch_size": 512,  # LOG "Assess variance in training": "Use batch size 512 as default"
        "learning_rate": 1e-4,  # LOG "sweep learning rate": "Use learning rate 0.0001"
        "optimizer": "Adam",  # the log's latent_default.yaml
        "use_batch_norm": False,  # LOG "Assess impact of normalization": "STRONGLY RECOMMEND disabling"
        "train_step": "train_step",  # one of TRAIN_STEPS: "train_step" compiles the step (on CUDA only)
        "compile_mode": "reduce-overhead",  # LOG "sweep learning rate": max-autotune failed, reduce-overhead worked
        "use_tf32_matmul": False,  # LOG "sweep latent dimensions": "tf32 didn't make a difference, let's turn it off"
        "seed": 42,  # the log's default seed (its runs without --training.seed are seed 42)
        "data_split": {  # frames; as in the log's latent_default.yaml, train skips the burn-in and gaps part the splits
            "train_start": 100,
            "train_end": 3100,
            "validation_start": 3200,
            "validation_end": 3700,
            "test_start": 3800,
            "test_end": 4300,
        },
    },
    "data": {
        "standardize": True,  # z-score each neuron by its training frames: cell types differ in range, and losses read in units of each neuron's spread
        "path": None,  # .npz with "voltage" [frames, neurons] and "stimulus" [frames, channels], or .npy voltages; None simulates
        "num_columns": 32,  # simulation: retinotopic columns (flyvis has 721); 6 cell types each
        "frames": 4300,  # simulation: 20 ms frames, 86 s
        "noise_std": 0.02,  # simulation: stationary voltage noise, the part no model can predict
        "seed": 0,  # simulation: wiring, stimulus and noise
    },
}

TRAIN_STEPS = ("train_step", "train_step_nocompile")  # the log's compiled and eager training steps


# ---------------------------------------------------------------------------------------------- data


CELL_TYPES = ("R", "L1", "L2", "Mi1", "Tm1", "T4")
# Membrane time constants (s): photoreceptors follow the stimulus within a frame or two, T4 integrates longest.
TIME_CONSTANTS = {"R": 0.01, "L1": 0.015, "L2": 0.015, "Mi1": 0.02, "Tm1": 0.03, "T4": 0.04}
RESTING_DRIVE = {"R": 0.0, "L1": 0.5, "L2": 0.5, "Mi1": 0.5, "Tm1": 0.0, "T4": 0.0}
# (presynaptic, postsynaptic): (weight, column offsets the synapse spans). Sign inversions at the
# lamina make L1/L2 OFF cells and Mi1 an ON cell; T4 sums Mi1 of its column with the slower Tm1 of
# the next one and inhibits its neighbours, so it prefers one direction of motion.
SYNAPSES = {
    ("R", "L1"): (-1.5, (0,)),
    ("R", "L2"): (-1.2, (0,)),
    ("L1", "Mi1"): (-1.0, (0,)),
    ("L2", "Tm1"): (1.0, (0,)),
    ("L2", "L1"): (0.3, (-1, 1)),
    ("Mi1", "T4"): (1.0, (0,)),
    ("Tm1", "T4"): (-0.8, (1,)),
    ("T4", "T4"): (-0.4, (-1, 1)),
}
PHOTORECEPTOR_GAIN = 1.5  # stimulus luminance (0..1) to photoreceptor drive


@dataclass(frozen=True)
class Connectome:
    """A network to simulate: ``weights[post, pre]``, per-neuron time constants (s) and drives."""

    weights: torch.Tensor  # [neurons, neurons]
    time_constants: torch.Tensor  # [neurons]
    resting_drive: torch.Tensor  # [neurons]
    stimulus_gain: torch.Tensor  # [neurons, columns]: which column's luminance drives which neuron


@dataclass(frozen=True)
class Recording:
    """Voltages over time and the stimulus shown, one row per 20 ms frame."""

    voltage: torch.Tensor  # [frames, neurons]
    stimulus: torch.Tensor | None  # [frames, channels]


def fly_connectome(num_columns: int, seed: int) -> Connectome:
    """Six cell types in each column of a ring; :data:`SYNAPSES` wires them, each synapse ±20% apart."""
    generator = torch.Generator().manual_seed(seed)
    num_types = len(CELL_TYPES)
    neurons = num_columns * num_types

    def index(cell_type: str, column: int) -> int:
        return (column % num_columns) * num_types + CELL_TYPES.index(cell_type)

    weights = torch.zeros(neurons, neurons)
    for (pre, post), (weight, offsets) in SYNAPSES.items():
        for column in range(num_columns):
            for offset in offsets:
                jitter = 1 + 0.2 * torch.randn((), generator=generator)
                weights[index(post, column), index(pre, column + offset)] += weight * jitter / len(offsets)
    time_constants = torch.tensor([TIME_CONSTANTS[t] for t in CELL_TYPES]).repeat(num_columns)
    resting_drive = torch.tensor([RESTING_DRIVE[t] for t in CELL_TYPES]).repeat(num_columns)
    stimulus_gain = torch.zeros(neurons, num_columns)
    for column in range(num_columns):
        stimulus_gain[index("R", column), column] = PHOTORECEPTOR_GAIN
    return Connectome(weights, time_constants, resting_drive, stimulus_gain)


def visual_stimulus(frames: int, num_columns: int, seed: int, segment_frames: int = 50) -> torch.Tensor:
    """Luminance (0..1) per column and frame: 1 s segments of full-field flashes, drifting gratings or flicker."""
    generator = np.random.default_rng(seed)
    angle = 2 * np.pi * np.arange(num_columns) / num_columns
    stimulus = np.empty((frames, num_columns), dtype=np.float32)
    for start in range(0, frames, segment_frames):
        t = FRAME_SECONDS * np.arange(min(segment_frames, frames - start))[:, None]
        kind = generator.integers(3)
        if kind == 0:  # full-field flashes, a new level every 100 ms
            levels = generator.uniform(0, 1, size=math.ceil(len(t) / 5))
            segment = np.repeat(levels[np.arange(len(t)) // 5][:, None], num_columns, axis=1)
        elif kind == 1:  # a grating drifting one way round the ring
            wavenumber = generator.integers(1, 4)
            speed = generator.uniform(np.pi, 4 * np.pi) * generator.choice([-1, 1])
            contrast = generator.uniform(0.5, 1)
            segment = 0.5 + 0.5 * contrast * np.sin(wavenumber * angle[None, :] - speed * t + generator.uniform(0, 2 * np.pi))
        else:  # flicker: a new random pattern each frame, blurred over neighbouring columns
            noise = generator.uniform(0, 1, size=(len(t), num_columns))
            segment = (np.roll(noise, 1, axis=1) + noise + np.roll(noise, -1, axis=1)) / 3
        stimulus[start : start + len(t)] = segment
    return torch.from_numpy(stimulus)


def simulate_voltages(
    connectome: Connectome, stimulus: torch.Tensor, noise_std: float, seed: int, substeps: int = 4
) -> torch.Tensor:
    """Leaky voltages ``tau dv/dt = -v + W a(v) + drive + gain @ stimulus`` sampled every 20 ms, ``[frames, neurons]``.

    ``a(v) = tanh(relu(v))`` is the rectified, saturating output of a neuron, so voltages stay within
    the summed absolute input any neuron can receive. Each 20 ms frame is ``substeps`` exact
    exponential steps with the inputs held (the stimulus holds for a frame); the noise is a stationary
    Ornstein-Uhlenbeck term of standard deviation ``noise_std``. Frame 0 is the state after the first frame.
    """
    weights = connectome.weights.double().numpy()
    drive = (stimulus @ connectome.stimulus_gain.T + connectome.resting_drive).double().numpy()  # [frames, neurons]
    decay = np.exp(-FRAME_SECONDS / substeps / connectome.time_constants.double().numpy())
    noise = np.random.default_rng(seed).standard_normal((stimulus.shape[0], substeps, weights.shape[0]))
    noise *= noise_std * np.sqrt(1 - decay**2)
    voltage = np.zeros(weights.shape[0])
    frames = np.empty((stimulus.shape[0], weights.shape[0]), dtype=np.float32)
    for frame in range(stimulus.shape[0]):  # numpy: a step costs microseconds, a torch op on 192 values several
        for substep in range(substeps):
            target = weights @ np.tanh(np.maximum(voltage, 0)) + drive[frame]
            voltage = decay * voltage + (1 - decay) * target + noise[frame, substep]
        frames[frame] = voltage
    return torch.from_numpy(frames)


@functools.lru_cache(maxsize=4)
def synthetic_recording(num_columns: int, frames: int, noise_std: float, seed: int) -> Recording:
    """A simulated recording of :func:`fly_connectome` watching :func:`visual_stimulus` (cached per process)."""
    stimulus = visual_stimulus(frames, num_columns, seed)
    voltage = simulate_voltages(fly_connectome(num_columns, seed), stimulus, noise_std, seed)
    return Recording(voltage, stimulus)


@functools.lru_cache(maxsize=4)
def load_recording(path: str) -> Recording:
    """A recording saved as arrays: ``.npz`` with ``voltage`` [frames, neurons] and optionally
    ``stimulus`` [frames, channels], or a ``.npy`` holding the voltages alone; one row per 20 ms frame."""
    suffix = Path(path).suffix
    if suffix == ".npy":
        return Recording(torch.from_numpy(np.load(path).astype(np.float32)), None)
    if suffix != ".npz":
        raise ValueError(f"data.path {path} must be .npz (voltage, stimulus) or .npy (voltage)")
    with np.load(path) as arrays:
        if "voltage" not in arrays:
            raise ValueError(f"{path} holds {', '.join(arrays.files)}; it needs a 'voltage' array [frames, neurons]")
        stimulus = torch.from_numpy(arrays["stimulus"].astype(np.float32)) if "stimulus" in arrays else None
        voltage = torch.from_numpy(arrays["voltage"].astype(np.float32))
    if stimulus is not None and stimulus.shape[0] != voltage.shape[0]:
        raise ValueError(f"{path}: stimulus has {stimulus.shape[0]} frames, voltage {voltage.shape[0]}")
    return Recording(voltage, stimulus)


def recording_for(config: Mapping[str, Any]) -> Recording:
    """The recording the (resolved) config names, checked against its split and ``use_stimulus``."""
    data = config["data"]
    if data["path"] is None:
        recording = synthetic_recording(data["num_columns"], data["frames"], data["noise_std"], data["seed"])
    else:
        recording = load_recording(str(data["path"]))
    last_frame = max(config["training"]["data_split"].values())
    if last_frame > recording.voltage.shape[0]:
        raise ValueError(f"training.data_split reaches frame {last_frame}; the recording has {recording.voltage.shape[0]}")
    if config["use_stimulus"] and recording.stimulus is None:
        raise ValueError("use_stimulus is true but the recording has no stimulus; save it as an .npz with a 'stimulus' array")
    return recording


EVALUATION_SPLITS = ("validation", "test")  # the order of val_dataloader's loaders
EVALUATION_METRICS = {  # split: (its loss, its constant model's loss, the improvement over it)
    "validation": ("val_loss", "constant_baseline_loss", "improvement_over_constant"),
    "test": ("test_loss", "test_constant_baseline_loss", "test_improvement_over_constant"),
}


class VoltageFrames(pl.LightningDataModule):
    """Consecutive frame pairs (x(t), stimulus(t), x(t+1)) of each split; evaluation splits come whole.

    ``config`` is resolved (:meth:`LatentEvolution.resolve`).
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = config
        self.datasets: dict[str, TensorDataset] = {}
        self.constant_baseline_losses: dict[str, float] = {}

    def setup(self, stage: str | None = None) -> None:
        recording = recording_for(self.config)
        split = self.config["training"]["data_split"]
        voltage = recording.voltage
        if self.config["data"]["standardize"]:
            train = voltage[split["train_start"] : split["train_end"]]
            voltage = (voltage - train.mean(0)) / train.std(0).clamp_min(1e-6)
        for name, start, end in (
            ("train", split["train_start"], split["train_end"]),
            ("validation", split["validation_start"], split["validation_end"]),
            ("test", split["test_start"], split["test_end"]),
        ):
            frames = voltage[start:end]
            stimulus = recording.stimulus[start:end] if recording.stimulus is not None else torch.zeros(end - start, 0)
            self.datasets[name] = TensorDataset(frames[:-1], stimulus[:-1], frames[1:])
            self.constant_baseline_losses[name] = constant_model_loss(frames).item()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["train"], batch_size=self.config["training"]["batch_size"], shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(self.datasets[name], batch_size=len(self.datasets[name])) for name in EVALUATION_SPLITS]


# ---------------------------------------------------------------------------------------------- model


def mlp(inputs: int, outputs: int, hidden_layers: int, hidden_units: int, batch_norm: bool) -> nn.Sequential:
    """Linear → [BatchNorm] → ReLU for each hidden layer, then a linear output (the log's MLP)."""
    layers: list[nn.Module] = []
    for _ in range(hidden_layers):
        layers += [nn.Linear(inputs, hidden_units), *([nn.BatchNorm1d(hidden_units)] if batch_norm else []), nn.ReLU()]
        inputs = hidden_units
    return nn.Sequential(*layers, nn.Linear(inputs, outputs))


class LatentEvolutionNetwork(nn.Module):
    """Encoder, evolver, decoder and, when ``stimulus_channels`` > 0, a stimulus encoder feeding the evolver."""

    def __init__(self, config: Mapping[str, Any], neurons: int, stimulus_channels: int):
        super().__init__()
        latent = config["latent_dims"]
        batch_norm = config["training"]["use_batch_norm"]
        encoder, decoder, evolver = config["encoder_params"], config["decoder_params"], config["evolver_params"]
        self.encoder = mlp(neurons, latent, encoder["num_hidden_layers"], encoder["num_hidden_units"], batch_norm)
        self.decoder = mlp(latent, neurons, decoder["num_hidden_layers"], decoder["num_hidden_units"], batch_norm)
        stimulus_dims = 0
        self.stimulus_encoder = None
        if stimulus_channels:
            params = config["stimulus_encoder_params"]
            stimulus_dims = params["num_output_dims"]
            self.stimulus_encoder = mlp(
                stimulus_channels, stimulus_dims, params["num_hidden_layers"], params["num_hidden_units"], False
            )
        self.evolver = mlp(
            latent + stimulus_dims, latent, evolver["num_hidden_layers"], evolver["num_hidden_units"], batch_norm
        )

    def evolve(self, latent: torch.Tensor, stimulus: torch.Tensor) -> torch.Tensor:
        """One 20 ms step in latent space: a residual update from the latent state and the encoded stimulus."""
        if self.stimulus_encoder is not None:
            return latent + self.evolver(torch.cat([latent, self.stimulus_encoder(stimulus)], dim=-1))
        return latent + self.evolver(latent)

    def forward(self, voltage: torch.Tensor, stimulus: torch.Tensor) -> torch.Tensor:
        """x̂(t+1) from x(t) and stimulus(t)."""
        return self.decoder(self.evolve(self.encoder(voltage), stimulus))

    def reconstruct(self, voltage: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(voltage))


def step_losses(
    network: LatentEvolutionNetwork, voltage: torch.Tensor, stimulus: torch.Tensor, next_voltage: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-step and reconstruction MSE: the log's ``train_step_nocompile``, which ``train_step`` compiles."""
    return F.mse_loss(network(voltage, stimulus), next_voltage), F.mse_loss(network.reconstruct(voltage), voltage)


def l1_penalty(module: nn.Module, weight: float) -> torch.Tensor:
    """``weight`` times the sum over parameter tensors of their mean absolute value (the log's latent.py)."""
    return weight * sum(parameter.abs().mean() for parameter in module.parameters())


class LatentEvolutionModel(pl.LightningModule):
    """Trains :class:`LatentEvolutionNetwork` one step ahead and logs the module docstring's metrics.

    ``config`` is resolved (:meth:`LatentEvolution.resolve`).
    """

    def __init__(self, config: Mapping[str, Any], neurons: int, stimulus_channels: int):
        super().__init__()
        self.config = config
        torch.manual_seed(self.config["training"]["seed"])  # the initial weights are the config's seed's, as in the log
        self.network = LatentEvolutionNetwork(self.config, neurons, stimulus_channels)
        self.step_losses = step_losses
        self._squared_errors: dict[str, list[torch.Tensor]] = {}

    def on_fit_start(self) -> None:
        if self.device.type != "cuda":
            return  # TF32 and compilation are GPU matters (the log's "Performance benchmark experiments")
        training = self.config["training"]
        torch.backends.cuda.matmul.allow_tf32 = training["use_tf32_matmul"]
        torch.backends.cudnn.allow_tf32 = training["use_tf32_matmul"]
        torch.cuda.reset_peak_memory_stats(self.device)
        if training["train_step"] == "train_step":
            self.step_losses = torch.compile(step_losses, mode=training["compile_mode"])

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_index: int) -> torch.Tensor:
        voltage, stimulus, next_voltage = batch
        step_loss, reconstruction_loss = self.step_losses(self.network, voltage, stimulus, next_voltage)
        regularisation = l1_penalty(self.network.encoder, self.config["encoder_params"]["l1_reg_loss"]) + l1_penalty(
            self.network.decoder, self.config["decoder_params"]["l1_reg_loss"]
        )
        total = step_loss + reconstruction_loss + regularisation
        size = voltage.shape[0]
        self.log("train_loss", step_loss, on_step=False, on_epoch=True, batch_size=size)
        self.log("train_reconstruction_loss", reconstruction_loss, on_step=False, on_epoch=True, batch_size=size)
        self.log("train_total_loss", total, on_step=False, on_epoch=True, batch_size=size)
        return total

    def on_validation_epoch_start(self) -> None:
        self._squared_errors = {split: [] for split in EVALUATION_SPLITS}

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_index: int, dataloader_idx: int = 0) -> None:
        voltage, stimulus, next_voltage = batch
        errors = (self.network(voltage, stimulus) - next_voltage) ** 2
        self._squared_errors[EVALUATION_SPLITS[dataloader_idx]].append(errors.flatten())

    def on_validation_epoch_end(self) -> None:
        baselines = self.trainer.datamodule.constant_baseline_losses
        metrics = {}
        for split, (loss_name, baseline_name, improvement_name) in EVALUATION_METRICS.items():
            loss = torch.cat(self._squared_errors[split]).mean().item()
            metrics[loss_name] = loss
            metrics[baseline_name] = baselines[split]
            metrics[improvement_name] = improvement_over_constant(loss, baselines[split])
        if self.device.type == "cuda":
            metrics["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.log_dict(metrics)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = getattr(torch.optim, self.config["training"]["optimizer"])
        return optimizer(self.network.parameters(), lr=self.config["training"]["learning_rate"])


class LatentEvolution(TrainerFamily):
    """The flyvis latent evolution model on simulated or recorded voltages."""

    DEFAULTS = DEFAULT_CONFIG

    def check(self, config: Mapping[str, Any]) -> None:
        """A training step the log does not have raises ``ValueError``."""
        if config["training"]["train_step"] not in TRAIN_STEPS:
            raise ValueError(f"training.train_step must be one of {', '.join(TRAIN_STEPS)}")

    def build_model(self, config: Mapping[str, Any]) -> LatentEvolutionModel:
        recording = recording_for(config)
        stimulus_channels = recording.stimulus.shape[1] if config["use_stimulus"] else 0
        return LatentEvolutionModel(config, recording.voltage.shape[1], stimulus_channels)

    def build_data(self, config: Mapping[str, Any]) -> VoltageFrames:
        return VoltageFrames(config)
