"""MLP regression on tabular features, for targets whose tails matter (CABBI, AbAg).

One family serves both logs; the config chooses the data and the losses:

- CABBI (shared/seeds/000): standardised, heavy-tailed gene-interaction targets; MSE plus
  DistLoss and SupCR on an embedding head, under an adaptive weighting schedule; warmup then
  exponential LR decay.
- AbAg (shared/seeds/002): 150 features, affinities in five imbalanced bins; (focal) MSE with
  per-bin class weights; Adam/AdamW with ReduceLROnPlateau or CosineAnnealingWarmRestarts.

``config`` is nested like :data:`DEFAULT_CONFIG`; a config names only what it changes, and a key
the family does not know is an error (a misspelt knob would otherwise be tuned for nothing). The
data are synthetic (``data.source`` "cabbi" or "abag") or a CSV/Parquet file (``data.source``
"table" with ``data.path``, ``data.target_column`` and optionally ``data.feature_columns``).

Example::

    from trainers.base import fit
    from trainers.regression import MLPRegression

    metrics = fit(MLPRegression(), {"model": {"activation": "gelu"}}, max_epochs=2)  # synthetic AbAg
    print(metrics["val_mse"], metrics["rmse_very_strong"], metrics["tail_rmse"], metrics["std_ratio"])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from objectives.regression import (
    AFFINITY_BINS,
    RegressionLoss,
    bin_indices,
    regression_metrics,
)
from trainers.base import TrainerFamily

DEFAULT_CONFIG: dict[str, Any] = {
    "data": {
        "source": "abag",  # "cabbi" or "abag" (synthetic), or "table" (a CSV or Parquet file)
        "path": None,  # table: the file
        "target_column": None,  # table: the column to predict
        "feature_columns": None,  # table: the inputs; None takes every other numeric column
        "n_samples": 5120,  # synthetic: training + validation, small enough for sub-second epochs
        "n_features": 150,  # AbAg's MLP input: 150 features (shared/seeds/002 §2)
        "val_fraction": 0.2,
        "standardize_target": False,  # CABBI's targets are standardised (shared/seeds/000 §2)
        "bin_edges": [5.0, 7.0, 9.0, 11.0],  # pKd; the AbAg log names the bins, not their edges
        "batch_size": 128,  # AbAg default (shared/seeds/002 "Adjust Batch Size")
        "seed": 0,
    },
    "model": {
        "hidden_dims": [256, 128],  # AbAg v1: 150 → 256 → 128 → 1 (shared/seeds/002 §2)
        "activation": "relu",  # AbAg v1 (shared/seeds/002 §1)
        "dropout": 0.3,  # AbAg (shared/seeds/002 "Overfitting": "0.4 vs 0.3")
        "xavier_init": False,  # AbAg v2 added it (shared/seeds/002 §8)
        "embedding_dim": 0,  # SupCR's embedding head; 0 leaves it out
    },
    "loss_config": {
        "use_focal_loss": False,  # AbAg v2 option (shared/seeds/002 §5)
        "focal_gamma": 2.0,  # not in the log; 2 is the focal-loss convention
        "class_weights": False,  # AbAg per-bin weights total/(n_classes*count) (shared/seeds/002 §3)
        "extreme_bin_multiplier": 1.0,  # AbAg v1: 1, v2: 10 (shared/seeds/002 §3)
        "lambda_dist": 0.0,  # CABBI 016: 0.1, 017: 0.5 (shared/seeds/000 §3); 0 leaves DistLoss out
        "lambda_supcr": 0.0,  # CABBI 016: 0.001, 017: 0.01 (shared/seeds/000 §3); 0 leaves SupCR out
        "buffer_size": 4096,  # CABBI 017 (shared/seeds/000 §1)
        "bandwidth": 2.0,  # CABBI 017 (shared/seeds/000 §2)
        "min_samples_for_dist": 128,  # CABBI 017 (shared/seeds/000 §8)
        "min_samples_for_supcr": 128,  # CABBI 017 (shared/seeds/000 §8)
        "init_temperature": 0.2,  # CABBI 017 (shared/seeds/000 §4)
        "final_temperature": 0.05,  # CABBI 017 (shared/seeds/000 §4)
        "temp_schedule": "cosine",  # CABBI 017 (shared/seeds/000 §8)
        "warmup_epochs": 10,  # CABBI 017 (shared/seeds/000 §7)
        "stable_epoch": 40,  # CABBI 017 (shared/seeds/000 §7)
        "max_buffer_weight": 0.9,  # "reached buffer_weight=0.9" (shared/seeds/000 §7)
        "max_epochs": 150,  # the schedules' horizon; CABBI 017 "match trainer" (shared/seeds/000 §7)
    },
    "optimizer": {
        "name": "adam",  # AbAg v1 Adam, v2 AdamW (shared/seeds/002 §7)
        "lr": 1e-3,  # AbAg v1 (shared/seeds/002 §4); unused by warmup_decay, which peaks at max_lr
        "weight_decay": 0.0,
    },
    "scheduler": {
        "name": "constant",  # or reduce_on_plateau, cosine_warm_restarts (AbAg §7), warmup_decay (CABBI §5)
        "min_lr": 0.0,  # the floor of every schedule
        "factor": 0.5,  # reduce_on_plateau; not in the log
        "patience": 5,  # reduce_on_plateau; not in the log
        "T_0": 20,  # cosine_warm_restarts: "Epoch 21: LR jumps" (shared/seeds/002 "Learning Rate Schedule")
        "T_mult": 1,  # cosine_warm_restarts: equal cycles in the log's sketch
        "max_lr": 5e-4,  # warmup_decay peak, CABBI 017 (shared/seeds/000 §5)
        "warmup_steps": 5,  # warmup_decay, in epochs (scheduler steps), CABBI 017 (shared/seeds/000 §5)
        "gamma": 0.85,  # warmup_decay per-epoch decay, CABBI 017 (shared/seeds/000 §8)
    },
    "trainer": {
        "gradient_clip_val": 0.0,  # 0 is off; AbAg v2 clips at 1.0 (shared/seeds/002 §6)
        "accumulate_grad_batches": 1,  # CABBI accumulates 8 (shared/seeds/000 "Effective Batch Size")
    },
    "metrics": {"tail_sigma": 2.0},  # tail_rmse covers targets beyond ±2σ
}

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = ("constant", "reduce_on_plateau", "cosine_warm_restarts", "warmup_decay")
SOURCES = ("cabbi", "abag", "table")

# AbAg v1's per-bin weights total/(5*count), very_weak … very_strong (shared/seeds/002 §3, "v1 Weight").
ABAG_V1_BIN_WEIGHTS = (81.2, 3.3, 3.9, 3.7, 2439.4)
# The rarest bins still get this many validation samples, so rmse_very_strong is always defined.
MIN_VALIDATION_PER_BIN = 8


def hidden_layer_widths(hidden_dims: Sequence[int] | str) -> list[int]:
    """``[512, 256]`` or the categorical knob's spelling ``"512,256"`` -> ``[512, 256]``."""
    if isinstance(hidden_dims, str):
        return [int(width) for width in hidden_dims.split(",")]
    return [int(width) for width in hidden_dims]


# ---------------------------------------------------------------------------------------------
# Data


def cabbi_interactions(
    n_samples: int, n_features: int = 32, n_factors: int = 2, noise_share: float = 0.35, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic gene pairs and their interaction score, heavy-tailed like CABBI's (shared/seeds/000).

    Features are two genes' descriptors side by side; the score is a sum of ``n_factors`` bilinear
    products between them (a product of Gaussians has kurtosis 9) plus Student-t noise (3 degrees
    of freedom) making up ``noise_share`` of the variance. The noise is unpredictable, so the MSE
    optimum shrinks predictions towards the mean and the tails are where it shows: "predictions
    concentrated around mean, missing high/low gene interactions".
    """
    generator = torch.Generator().manual_seed(seed)
    gene_dim = n_features // 2
    left = torch.randn(gene_dim, n_factors, generator=generator) / math.sqrt(gene_dim)
    right = torch.randn(gene_dim, n_factors, generator=generator) / math.sqrt(gene_dim)
    features = torch.randn(n_samples, 2 * gene_dim, generator=generator)
    first_gene, second_gene = features[:, :gene_dim], features[:, gene_dim:]
    signal = ((first_gene @ left) * (second_gene @ right)).sum(dim=1)
    signal = signal / signal.std()
    # Student-t with 3 degrees of freedom: a normal over the root of a chi-square(3)/3.
    chi_square = (torch.randn(n_samples, 3, generator=generator) ** 2).sum(dim=1)
    noise = torch.randn(n_samples, generator=generator) / torch.sqrt(chi_square / 3)
    noise = noise / noise.std()
    targets = math.sqrt(1 - noise_share) * signal + math.sqrt(noise_share) * noise
    return features, targets


def abag_affinities(
    n_samples: int,
    n_features: int = 150,
    bin_edges: Sequence[float] = (5.0, 7.0, 9.0, 11.0),
    min_per_bin: int = 1,
    noise_share: float = 0.2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic antibody–antigen features and affinities in AbAg's five imbalanced bins.

    A fixed random tanh network of the 150 features (plus ``noise_share`` of unexplained variance)
    ranks the samples; the ranks fill the bins lowest first, each bin holding the share AbAg v1's
    class weights imply (weight ∝ 1/count, so very_strong is the rarest, then very_weak), with at
    least ``min_per_bin`` samples. Within a bin, affinities spread evenly over its width; the outer
    bins are as wide as the inner ones, so few samples span the extremes — the log's hard part.
    """
    generator = torch.Generator().manual_seed(seed)
    hidden_weights = torch.randn(n_features, 32, generator=generator) / math.sqrt(n_features)
    output_weights = torch.randn(32, generator=generator)
    linear_weights = torch.randn(n_features, generator=generator) / math.sqrt(n_features)
    features = torch.randn(n_samples, n_features, generator=generator)
    score = torch.tanh(2 * features @ hidden_weights) @ output_weights + features @ linear_weights
    score = score / score.std()
    score = math.sqrt(1 - noise_share) * score + math.sqrt(noise_share) * torch.randn(n_samples, generator=generator)

    shares = torch.tensor([1 / weight for weight in ABAG_V1_BIN_WEIGHTS])
    counts = torch.clamp(torch.round(shares / shares.sum() * n_samples).long(), min=min_per_bin)
    counts[counts.argmax()] -= int(counts.sum()) - n_samples
    edges = list(bin_edges)
    width = (edges[-1] - edges[0]) / (len(edges) - 1)
    bounds = [edges[0] - width, *edges, edges[-1] + width]
    targets = torch.empty(n_samples)
    ranked = torch.argsort(score)
    start = 0
    for index, count in enumerate(counts.tolist()):
        evenly = (torch.arange(count) + 0.5) / count
        targets[ranked[start : start + count]] = bounds[index] + (bounds[index + 1] - bounds[index]) * evenly
        start += count
    return features, targets


def load_table(
    path: str | Path, target_column: str, feature_columns: Sequence[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and target from a CSV or Parquet file (by suffix); rows with a missing value are dropped."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data.path {path} does not exist; give a .csv or .parquet file")
    frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    if target_column not in frame.columns:
        raise ValueError(f"data.target_column {target_column!r} is not in {path.name}; its columns are {list(frame.columns)}")
    if feature_columns is None:
        feature_columns = [c for c in frame.select_dtypes("number").columns if c != target_column]
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        raise ValueError(f"data.feature_columns {missing} are not in {path.name}; its columns are {list(frame.columns)}")
    frame = frame[list(feature_columns) + [target_column]].dropna()
    features = torch.tensor(frame[list(feature_columns)].to_numpy(dtype="float32"))
    targets = torch.tensor(frame[target_column].to_numpy(dtype="float32"))
    return features, targets


def stratified_split(bins: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices with each bin split in proportion, so rare bins reach validation."""
    generator = torch.Generator().manual_seed(seed)
    train, validation = [], []
    for index in torch.unique(bins):
        members = torch.nonzero(bins == index).reshape(-1)
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = round(len(members) * val_fraction)
        validation.append(members[:n_val])
        train.append(members[n_val:])
    return torch.cat(train), torch.cat(validation)


class RegressionData(pl.LightningDataModule):
    """Training and validation tensors from the ``data`` section of a resolved config.

    Targets are standardised over the whole set when ``standardize_target`` is on (the split is
    stratified by bin, so the bins must be known first); features are standardised with the
    training split's statistics.
    """

    def __init__(self, options: Mapping[str, Any]):
        super().__init__()
        self.options = dict(options)
        self.bin_edges = [float(edge) for edge in self.options["bin_edges"]]
        if len(self.bin_edges) != len(AFFINITY_BINS) - 1:
            raise ValueError(f"data.bin_edges needs {len(AFFINITY_BINS) - 1} values between {', '.join(AFFINITY_BINS)}")
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.train_bin_counts: torch.Tensor | None = None
        self.n_features: int | None = None

    def _features_and_targets(self) -> tuple[torch.Tensor, torch.Tensor]:
        options = self.options
        if options["source"] == "table":
            if not options["path"] or not options["target_column"]:
                raise ValueError("data.source 'table' needs data.path and data.target_column")
            return load_table(options["path"], options["target_column"], options["feature_columns"])
        if options["source"] == "cabbi":
            return cabbi_interactions(options["n_samples"], options["n_features"], seed=options["seed"])
        return abag_affinities(
            options["n_samples"],
            options["n_features"],
            self.bin_edges,
            min_per_bin=math.ceil(MIN_VALIDATION_PER_BIN / options["val_fraction"]),
            seed=options["seed"],
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        features, targets = self._features_and_targets()
        if self.options["standardize_target"]:
            targets = (targets - targets.mean()) / targets.std()
        bins = bin_indices(targets, torch.tensor(self.bin_edges))
        train_index, val_index = stratified_split(bins, self.options["val_fraction"], self.options["seed"])
        mean = features[train_index].mean(dim=0)
        std = features[train_index].std(dim=0).clamp(min=1e-8)
        features = (features - mean) / std
        self.train_set = TensorDataset(features[train_index], targets[train_index])
        self.val_set = TensorDataset(features[val_index], targets[val_index])
        self.train_bin_counts = torch.bincount(bins[train_index], minlength=len(AFFINITY_BINS))
        self.n_features = features.shape[1]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=int(self.options["batch_size"]), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=int(self.options["batch_size"]))


# ---------------------------------------------------------------------------------------------
# Model


class MLPRegressor(nn.Module):
    """Linear → activation → dropout per hidden layer, one output, optional embedding head for SupCR."""

    def __init__(
        self,
        n_features: int,
        hidden_dims: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        xavier_init: bool = False,
        embedding_dim: int = 0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        self.embedding_head = nn.Linear(width, embedding_dim) if embedding_dim else None
        if xavier_init:
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden = self.body(features)
        embeddings = self.embedding_head(hidden) if self.embedding_head is not None else None
        return self.head(hidden).squeeze(-1), embeddings


def warmup_decay_factor(epoch: int, warmup_steps: int, gamma: float, floor: float) -> float:
    """LR multiplier: linear warmup to 1 over ``warmup_steps`` epochs, then ``gamma`` per epoch, >= ``floor``."""
    if epoch < warmup_steps:
        return max((epoch + 1) / warmup_steps, floor)
    return max(gamma ** (epoch - warmup_steps + 1), floor)


class RegressionModule(pl.LightningModule):
    """The MLP and its loss; the network is built in :meth:`setup`, once the data's width is known.

    ``config`` is resolved (:meth:`MLPRegression.resolve`). Every validation epoch logs ``val_loss``
    (the training loss on validation), ``val_mse`` and every :func:`objectives.regression.regression_metrics`
    metric under its plain name, computed over the whole validation set. Training logs ``train_loss``.
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = config
        self.network: MLPRegressor | None = None
        self.loss: RegressionLoss | None = None
        self._val_predictions: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def setup(self, stage: str) -> None:
        if self.network is not None:
            return
        data = self.trainer.datamodule
        model = self.config["model"]
        self.network = MLPRegressor(
            data.n_features,
            hidden_layer_widths(model["hidden_dims"]),
            model["activation"],
            float(model["dropout"]),
            bool(model["xavier_init"]),
            int(model["embedding_dim"]),
        )
        self.loss = RegressionLoss(self.config["loss_config"], data.bin_edges, data.train_bin_counts)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(features)[0]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, targets = batch
        predictions, embeddings = self.network(features)
        loss = self.loss(predictions, targets, embeddings, self.current_epoch, record_targets=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(targets), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, targets = batch
        predictions, embeddings = self.network(features)
        loss = self.loss(predictions, targets, embeddings, self.current_epoch, record_targets=False)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(targets), sync_dist=True)
        self._val_predictions.append(predictions.detach())
        self._val_targets.append(targets.detach())

    def on_validation_epoch_end(self) -> None:
        predictions = self.all_gather(torch.cat(self._val_predictions)).reshape(-1)
        targets = self.all_gather(torch.cat(self._val_targets)).reshape(-1)
        self._val_predictions.clear()
        self._val_targets.clear()
        metrics = regression_metrics(
            predictions, targets, self.trainer.datamodule.bin_edges, float(self.config["metrics"]["tail_sigma"])
        )
        self.log("val_mse", metrics.pop("mse"), on_epoch=True)
        for name, value in metrics.items():
            self.log(name, value, on_epoch=True)

    def configure_optimizers(self) -> Any:
        optimizer_options, schedule = self.config["optimizer"], self.config["scheduler"]
        peak_lr = schedule["max_lr"] if schedule["name"] == "warmup_decay" else optimizer_options["lr"]
        optimizer = OPTIMIZERS[optimizer_options["name"]](
            self.parameters(), lr=float(peak_lr), weight_decay=float(optimizer_options["weight_decay"])
        )
        min_lr = float(schedule["min_lr"])
        if schedule["name"] == "constant":
            return optimizer
        if schedule["name"] == "reduce_on_plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=float(schedule["factor"]), patience=int(schedule["patience"]), min_lr=min_lr
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}}
        if schedule["name"] == "cosine_warm_restarts":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=int(schedule["T_0"]), T_mult=int(schedule["T_mult"]), eta_min=min_lr
            )
        else:
            factor = functools.partial(
                warmup_decay_factor,
                warmup_steps=int(schedule["warmup_steps"]),
                gamma=float(schedule["gamma"]),
                floor=min_lr / float(peak_lr),
            )
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class MLPRegression(TrainerFamily):
    """CABBI's and AbAg's MLP regression, one family: the config picks data, losses and schedule."""

    DEFAULTS = DEFAULT_CONFIG

    def check(self, config: Mapping[str, Any]) -> None:
        """A data source, activation, optimizer or scheduler the family does not have raises ``ValueError``."""
        for key, value, choices in (
            ("data.source", config["data"]["source"], SOURCES),
            ("model.activation", config["model"]["activation"], ACTIVATIONS),
            ("optimizer.name", config["optimizer"]["name"], OPTIMIZERS),
            ("scheduler.name", config["scheduler"]["name"], SCHEDULERS),
        ):
            if value not in choices:
                raise ValueError(f"{key}={value!r} is unknown; use one of {', '.join(choices)}")

    def build_model(self, config: Mapping[str, Any]) -> RegressionModule:
        return RegressionModule(config)

    def build_data(self, config: Mapping[str, Any]) -> RegressionData:
        return RegressionData(config["data"])

    def trainer_options(self, config: Mapping[str, Any]) -> dict[str, Any]:
        options = config["trainer"]
        return {
            "gradient_clip_val": float(options["gradient_clip_val"]),
            "accumulate_grad_batches": int(options["accumulate_grad_batches"]),
        }
