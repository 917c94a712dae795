"""Papyrus surface segmentation: a 3D U-Net, synthetic and TIFF data, trained as the Vesuvius log trains it.

The config is the researcher's training YAML as loaded (seeds/004_b3e37686342072be.txt, the layout of
"Config v5" and "GPU Optimization & Training Restart"): ``learning_rate``, ``weight_decay``,
``optimizer``, ``loss_weights: {dice_weight, ...}``, ``focal_gamma``, ``focal_alpha``,
``use_class_weights``, ``background_weight``, ``foreground_weight``, ``threshold``, ``batch_size``,
``swa_start_epoch``, ``gradient_clip``, ``noise_*``, ``patch_size``, ``num_workers``, plus
``momentum``, ``skeleton_iterations``, ``model: {base_channels, depth}``,
``scheduler: {T_0, T_mult, eta_min}`` and ``data: {...}``. Epochs count from 0, as the log's do. Keys left
out take :data:`DEFAULT_CONFIG`'s value; unknown keys are an error, so a typo cannot pass silently.

Each validation epoch logs ``val_loss``, every loss component as ``val_<component>``
(``val_dice_loss``, ...), and the metrics of :data:`objectives.segmentation.METRICS` under their own
names, at the config's ``threshold`` and over all voxels of the validation set.

Example::

    from trainers.base import fit
    from trainers.segmentation import SurfaceSegmentation

    metrics = fit(SurfaceSegmentation(), {"learning_rate": 1e-3, "optimizer": "AdamW"}, max_epochs=2)
    print(metrics["val_loss"], metrics["class_balance_error"])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import tifffile
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from objectives.segmentation import (
    COMPONENTS,
    SegmentationCounts,
    SurfaceLoss,
    reference_loss,
)
from trainers.base import TrainerFamily

# "LOG" in the comments below: seeds/004_b3e37686342072be.txt, the researcher's log, by section.

DEFAULT_CONFIG: dict[str, Any] = {
    "learning_rate": 1e-4,  # LOG "PREVIOUS WORKING Configuration" (v1)
    "weight_decay": 0.01,  # LOG v1
    "optimizer": "SGD",  # LOG v1: "SGD with CosineAnnealingWarmRestarts"; or "AdamW"
    "momentum": 0.99,  # nnU-Net's SGD momentum, the log's "Topology-aware nnU-Net"; the log gives none
    "scheduler": {"T_0": 10, "T_mult": 2, "eta_min": 1e-6},  # CosineAnnealingWarmRestarts; the log gives no values
    "loss_weights": {  # LOG v1
        "dice_weight": 0.2,
        "focal_weight": 0.4,
        "variance_weight": 0.3,
        "boundary_weight": 0.05,
        "cldice_weight": 0.05,
        "connectivity_weight": 0.0,
    },
    "focal_gamma": 2.0,  # LOG v1
    "focal_alpha": 0.75,  # LOG v1
    "use_class_weights": True,  # LOG v1
    "background_weight": 2.94,  # LOG v1
    "foreground_weight": 1.52,  # LOG v1
    "skeleton_iterations": 3,  # soft-skeleton passes of clDice: they reach the middle of sheets up to ~7 voxels thick
    "threshold": 0.5,  # LOG v2 table: "postprocess threshold" 0.5 before v2
    "batch_size": 2,  # LOG v1; the log's num_epochs is not a key: fit's max_epochs sets the length
    "swa_start_epoch": 40,  # LOG v1 "SWA enabled (epoch 40)"; epochs count from 0 as the log's do; None turns SWA off
    "gradient_clip": 0.5,  # LOG v1 "Gradient clipping: 0.5"; 0 turns clipping off
    "noise_enabled": False,  # LOG v1 has no weight noise; v2_optimized onwards does
    "noise_start_epoch": 30,  # LOG Config v5: "vs 30 in v2"; counted from 0
    "noise_frequency": 10,  # LOG Config v5: "vs 10 in v2"
    "noise_std": 0.001,  # LOG Config v5: "vs 0.001 in v2"
    "noise_decay": 0.9,  # the log names noise_decay without a value; each injection is 0.9x the last
    "patch_size": [24, 24, 24],  # LOG "GPU Optimization": [128, 128, 128] on the GPU; 24^3 trains in ~1 s an epoch on a CPU
    "num_workers": 0,  # LOG "GPU Optimization": 4 on the GPU machine; 0 loads in the training process
    "model": {
        "base_channels": 4,  # the log's nnU-Net has 22.6M parameters; 4 channels keep a CPU epoch near a second
        "depth": 3,  # resolution levels: 24^3 -> 12^3 -> 6^3
    },
    "data": {
        "source": "synthetic",  # "synthetic" or "tiff"
        "volume_dir": None,  # tiff: folder of 3D image volumes (*.tif, *.tiff)
        "label_dir": None,  # tiff: folder of label volumes with the same file names
        "foreground_values": [1],  # tiff: label values that are surface; Vesuvius labels are 0 bg, 1 surface, 2 unlabeled
        "patches_per_volume": 4,  # tiff: random patches drawn from each volume per epoch
        "num_volumes": 30,  # synthetic: volumes generated, all folds together (24 train, 6 validation)
        "num_folds": 5,  # LOG References: "5-fold CV"
        "fold": 0,  # LOG "Training fold_0 active"
        "seed": 0,  # synthetic volumes and validation patches
    },
}

# The log's "Actual Training Label Distribution" (LOG, "Critical Analysis Update"): per-volume foreground.
LABEL_FG_MEAN, LABEL_FG_STD, LABEL_FG_MIN, LABEL_FG_MAX = 0.609, 0.1803, 0.1795, 0.9228


# ---------------------------------------------------------------------------------------------- model


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    # nnU-Net's stage: two (conv 3^3, instance norm, leaky ReLU); instance norm suits batches of 2.
    layers: list[nn.Module] = []
    for channels_in in (in_channels, out_channels):
        layers += [
            nn.Conv3d(channels_in, out_channels, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        ]
    return nn.Sequential(*layers)


class UNet3D(nn.Module):
    """A 3D U-Net: ``depth`` resolution levels, ``base_channels`` doubling per level; one logit per voxel.

    Each side of the input must be divisible by ``2 ** (depth - 1)``.
    """

    def __init__(self, base_channels: int = 4, depth: int = 3, in_channels: int = 1):
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError(f"UNet3D needs depth >= 1 and base_channels >= 1 (got {depth}, {base_channels})")
        widths = [base_channels * 2**level for level in range(depth)]
        self.encoders = nn.ModuleList(
            _conv_block(channels_in, channels_out) for channels_in, channels_out in zip([in_channels, *widths], widths)
        )
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose3d(widths[level + 1], widths[level], kernel_size=2, stride=2) for level in range(depth - 1)
        )
        self.decoders = nn.ModuleList(_conv_block(2 * widths[level], widths[level]) for level in range(depth - 1))
        self.head = nn.Conv3d(widths[0], 1, kernel_size=1)
        self.divisor = 2 ** (depth - 1)

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        if any(side % self.divisor for side in volume.shape[2:]):
            raise ValueError(f"UNet3D of this depth needs sides divisible by {self.divisor}; got {tuple(volume.shape[2:])}")
        skips = []
        features = volume
        for level, encoder in enumerate(self.encoders):
            features = encoder(features if level == 0 else F.max_pool3d(features, 2))
            skips.append(features)
        for level in reversed(range(len(self.decoders))):
            features = self.upsamplers[level](features)
            features = self.decoders[level](torch.cat([skips[level], features], dim=1))
        return self.head(features)


# ----------------------------------------------------------------------------------------------- data


def papyrus_volume(
    size: Sequence[int], fg_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic scroll patch: a stack of curved sheets covering about ``fg_fraction`` of the volume.

    Sheets are the level sets ``depth + tilt + two sine bends`` in bands of a random period; a voxel
    is sheet when its phase within the period is below ``fg_fraction``. The image is the label,
    blurred (partial volume at the sheet faces) and buried in Gaussian noise of random strength, so
    the faces stay uncertain and the loss's class weights move where the model puts them.
    Returns ``(image, label)``, each ``[1, D, H, W]`` float32; the image has zero mean, unit std.
    """

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    depth, height, width = size
    z, y, x = torch.meshgrid(
        torch.arange(depth, dtype=torch.float32),
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    period = uniform(6.0, 11.0)
    surface = (
        z
        + uniform(-0.3, 0.3) * y
        + uniform(-0.3, 0.3) * x
        + uniform(1.0, 3.0) * torch.sin(2 * math.pi * y / uniform(16.0, 40.0) + uniform(0, 2 * math.pi))
        + uniform(1.0, 3.0) * torch.sin(2 * math.pi * x / uniform(16.0, 40.0) + uniform(0, 2 * math.pi))
    )
    phase = torch.remainder(surface / period + uniform(0.0, 1.0), 1.0)
    label = (phase < fg_fraction).float()[None]
    blurred = F.avg_pool3d(label[None], kernel_size=3, stride=1, padding=1, count_include_pad=False)[0]
    image = blurred + uniform(0.4, 0.9) * torch.randn(label.shape, generator=generator)
    image = (image - image.mean()) / image.std()
    return image, label


def label_fg_fractions(count: int, rng: np.random.Generator) -> np.ndarray:
    """Per-volume target foreground fractions like the log's labels: Beta with their mean and std, clipped to their range."""
    concentration = LABEL_FG_MEAN * (1 - LABEL_FG_MEAN) / LABEL_FG_STD**2 - 1
    fractions = rng.beta(LABEL_FG_MEAN * concentration, (1 - LABEL_FG_MEAN) * concentration, size=count)
    return fractions.clip(LABEL_FG_MIN, LABEL_FG_MAX)


def synthetic_papyrus(count: int, size: Sequence[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` synthetic volumes, ``(images, labels)`` each ``[count, 1, D, H, W]``; the same seed gives the same data."""
    generator = torch.Generator().manual_seed(seed)
    fractions = label_fg_fractions(count, np.random.default_rng(seed))
    pairs = [papyrus_volume(size, float(fraction), generator) for fraction in fractions]
    return torch.stack([image for image, _ in pairs]), torch.stack([label for _, label in pairs])


def kfold_split(count: int, num_folds: int, fold: int) -> tuple[list[int], list[int]]:
    """``(train, validation)`` indices: ``fold`` of ``num_folds`` contiguous folds is validation (like KFold unshuffled)."""
    if not 2 <= num_folds <= count:
        raise ValueError(f"num_folds must be between 2 and the number of volumes ({count}); got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1}; got {fold}")
    folds = np.array_split(np.arange(count), num_folds)
    validation = folds[fold].tolist()
    return np.concatenate(folds[:fold] + folds[fold + 1 :]).tolist(), validation


@functools.lru_cache(maxsize=8)
def _read_volume(path: str) -> np.ndarray:
    # Real volumes are ~32 MB (320^3 uint8); a few stay in memory while patches are drawn from them.
    volume = tifffile.imread(path)
    if volume.ndim != 3:
        raise ValueError(f"{path} holds a {volume.ndim}-D image; a 3D volume (D, H, W) is needed")
    return volume


@functools.cache
def _volume_shape(path: str) -> tuple[int, ...]:
    # From the TIFF header: choosing patch corners needs no voxels.
    with tifffile.TiffFile(path) as tiff:
        return tuple(tiff.series[0].shape)


def paired_tiff_files(volume_dir: str | Path, label_dir: str | Path) -> list[tuple[Path, Path]]:
    """``(volume, label)`` file pairs, sorted by name; every volume needs a label file of the same name."""
    volume_dir, label_dir = Path(volume_dir), Path(label_dir)
    volumes = sorted(p for p in volume_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    if not volumes:
        raise ValueError(f"no .tif or .tiff volumes in {volume_dir}")
    missing = [p.name for p in volumes if not (label_dir / p.name).is_file()]
    if missing:
        raise ValueError(f"{label_dir} lacks labels for {', '.join(missing)}; a label file has its volume's name")
    return [(p, label_dir / p.name) for p in volumes]


class TiffPatches(Dataset):
    """Patches of 3D TIFF volumes and their labels: random ones each epoch, or fixed ones for validation.

    Images are standardised per volume; labels are 1 where their value is in ``foreground_values``.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        patch_size: Sequence[int],
        patches_per_volume: int,
        foreground_values: Sequence[int],
        fixed_seed: int | None = None,
    ):
        self.pairs = list(pairs)
        self.patch_size = tuple(patch_size)
        self.patches_per_volume = patches_per_volume
        self.foreground_values = list(foreground_values)
        # Validation draws its corners once from a seed, so every epoch scores the same voxels.
        self.fixed_corners = None
        if fixed_seed is not None:
            generator = torch.Generator().manual_seed(fixed_seed)
            self.fixed_corners = [self._random_corner(index, generator) for index in range(len(self))]

    def __len__(self) -> int:
        return len(self.pairs) * self.patches_per_volume

    def _random_corner(self, index: int, generator: torch.Generator | None = None) -> tuple[int, ...]:
        volume_path = self.pairs[index // self.patches_per_volume][0]
        shape = _volume_shape(str(volume_path))
        if len(shape) != 3 or any(side < patch for side, patch in zip(shape, self.patch_size)):
            raise ValueError(f"{volume_path} of shape {shape} is smaller than patch_size {self.patch_size} or not 3D")
        return tuple(int(torch.randint(0, side - patch + 1, (), generator=generator)) for side, patch in zip(shape, self.patch_size))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        volume_path, label_path = self.pairs[index // self.patches_per_volume]
        volume, label = _read_volume(str(volume_path)), _read_volume(str(label_path))
        if volume.shape != label.shape:
            raise ValueError(f"{volume_path} has shape {volume.shape} but its label {label_path} has {label.shape}")
        corner = self.fixed_corners[index] if self.fixed_corners is not None else self._random_corner(index)
        window = tuple(slice(start, start + size) for start, size in zip(corner, self.patch_size))
        image = torch.from_numpy(volume[window].astype(np.float32))[None]
        mean, std = _volume_statistics(str(volume_path))
        image = (image - mean) / std
        target = torch.from_numpy(np.isin(label[window], self.foreground_values).astype(np.float32))[None]
        return image, target


@functools.lru_cache(maxsize=256)
def _volume_statistics(path: str) -> tuple[float, float]:
    volume = _read_volume(path)
    return float(volume.mean()), float(volume.std()) or 1.0


class SurfaceData(pl.LightningDataModule):
    """Synthetic papyrus volumes (``data.source: synthetic``) or TIFF volumes (``tiff``), split into k folds.

    ``config`` is resolved (:meth:`SurfaceSegmentation.resolve`).
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = config
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        data, patch_size = self.config["data"], self.config["patch_size"]
        if data["source"] == "synthetic":
            images, labels = synthetic_papyrus(data["num_volumes"], patch_size, data["seed"])
            train, validation = kfold_split(data["num_volumes"], data["num_folds"], data["fold"])
            self.train_set = TensorDataset(images[train], labels[train])
            self.val_set = TensorDataset(images[validation], labels[validation])
        elif data["source"] == "tiff":
            if not data["volume_dir"] or not data["label_dir"]:
                raise ValueError("data.source tiff needs data.volume_dir and data.label_dir")
            pairs = paired_tiff_files(data["volume_dir"], data["label_dir"])
            train, validation = kfold_split(len(pairs), data["num_folds"], data["fold"])
            common = {
                "patch_size": patch_size,
                "patches_per_volume": data["patches_per_volume"],
                "foreground_values": data["foreground_values"],
            }
            self.train_set = TiffPatches([pairs[i] for i in train], **common)
            self.val_set = TiffPatches([pairs[i] for i in validation], **common, fixed_seed=data["seed"])
        else:
            raise ValueError(f"data.source must be synthetic or tiff; got {data['source']!r}")

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set, batch_size=self.config["batch_size"], shuffle=True, num_workers=self.config["num_workers"]
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.config["batch_size"], num_workers=self.config["num_workers"])


# -------------------------------------------------------------------------------------------- training


class SurfaceSegmentationModel(pl.LightningModule):
    """The U-Net trained on the log's weighted loss; validation metrics over all voxels at ``threshold``.

    ``config`` is resolved (:meth:`SurfaceSegmentation.resolve`).
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = config
        self.save_hyperparameters({"config": self.config})
        model = self.config["model"]
        self.net = UNet3D(base_channels=model["base_channels"], depth=model["depth"])
        self.loss = SurfaceLoss(
            **self.config["loss_weights"],
            focal_gamma=self.config["focal_gamma"],
            focal_alpha=self.config["focal_alpha"],
            use_class_weights=self.config["use_class_weights"],
            background_weight=self.config["background_weight"],
            foreground_weight=self.config["foreground_weight"],
            skeleton_iterations=self.config["skeleton_iterations"],
        )
        self.threshold = self.config["threshold"]
        self.validation_counts = SegmentationCounts()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        images, labels = batch
        total, _ = self.loss(self(images), labels)
        self.log("train_loss", total, on_step=False, on_epoch=True, batch_size=len(images))
        return total

    def on_validation_epoch_start(self) -> None:
        self.validation_counts = SegmentationCounts()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        images, labels = batch
        logits = self(images)
        total, components = self.loss(logits, labels)
        # Losses: means over batches weighted by batch size. Metrics: pooled voxel counts, below.
        # val_loss is the fixed reference loss, comparable across trials; the trial's own is val_weighted_loss.
        self.log("val_loss", reference_loss(logits, labels), on_epoch=True, batch_size=len(images))
        self.log("val_weighted_loss", total, on_epoch=True, batch_size=len(images))
        for name in COMPONENTS:
            self.log(f"val_{name}", components[name], on_epoch=True, batch_size=len(images))
        self.validation_counts += SegmentationCounts.of(torch.sigmoid(logits), labels, self.threshold)

    def on_validation_epoch_end(self) -> None:
        for name, value in self.validation_counts.metrics().items():
            self.log(name, value, on_epoch=True)

    def configure_optimizers(self) -> dict[str, Any]:
        config = self.config
        if config["optimizer"] == "SGD":
            optimizer = torch.optim.SGD(
                self.parameters(),
                lr=config["learning_rate"],
                momentum=config["momentum"],
                nesterov=True,
                weight_decay=config["weight_decay"],
            )
        elif config["optimizer"] == "AdamW":
            optimizer = torch.optim.AdamW(self.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"])
        else:
            raise ValueError(f"optimizer must be SGD or AdamW; got {config['optimizer']!r}")
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, **config["scheduler"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class WeightNoiseInjection(pl.Callback):
    """Adds Gaussian noise to every weight at the start of some epochs, to shake a stuck model loose (LOG Config v5).

    Noise is added at epochs ``start_epoch``, ``start_epoch + frequency``, ... (0-based); the k-th
    injection (k = 0, 1, ...) has standard deviation ``std · decay**k``. The schedule follows from
    the epoch number alone, so a resumed run continues it.
    """

    def __init__(self, start_epoch: int, frequency: int, std: float, decay: float):
        if frequency < 1 or std < 0:
            raise ValueError(f"weight noise needs frequency >= 1 and std >= 0 (got {frequency}, {std})")
        self.start_epoch, self.frequency, self.std, self.decay = start_epoch, frequency, std, decay

    def noise_std(self, epoch: int) -> float:
        """The noise added at the start of ``epoch``: 0 on epochs without an injection."""
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.frequency:
            return 0.0
        return self.std * self.decay ** ((epoch - self.start_epoch) // self.frequency)

    @torch.no_grad()
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        std = self.noise_std(trainer.current_epoch)
        if std:
            for parameter in pl_module.parameters():
                parameter.add_(torch.randn_like(parameter) * std)


class SurfaceSegmentation(TrainerFamily):
    """The Vesuvius surface-detection family: :class:`SurfaceSegmentationModel` on :class:`SurfaceData`."""

    DEFAULTS = DEFAULT_CONFIG

    def build_model(self, config: Mapping[str, Any]) -> SurfaceSegmentationModel:
        return SurfaceSegmentationModel(config)

    def build_data(self, config: Mapping[str, Any]) -> SurfaceData:
        return SurfaceData(config)

    def callbacks(self, config: Mapping[str, Any]) -> list[pl.Callback]:
        callbacks: list[pl.Callback] = []
        if config["swa_start_epoch"] is not None:
            # The log gives no SWA learning rate; SWA holds the configured one. Lightning counts
            # swa_epoch_start from 1, the log counts epochs from 0.
            callbacks.append(
                pl.callbacks.StochasticWeightAveraging(
                    swa_lrs=float(config["learning_rate"]), swa_epoch_start=int(config["swa_start_epoch"]) + 1
                )
            )
        if config["noise_enabled"]:
            callbacks.append(
                WeightNoiseInjection(
                    start_epoch=int(config["noise_start_epoch"]),
                    frequency=int(config["noise_frequency"]),
                    std=float(config["noise_std"]),
                    decay=float(config["noise_decay"]),
                )
            )
        return callbacks

    def trainer_options(self, config: Mapping[str, Any]) -> dict[str, Any]:
        gradient_clip = config["gradient_clip"]
        return {"gradient_clip_val": float(gradient_clip)} if gradient_clip else {}
