"""STATE-style perturbation model on cell sets, fine-tuned as the ST-Tahoe log fine-tunes it.

The model (the log's ``StateTransitionPerturbationModel``, seeds/001_7bf7081cee559d14.txt)::

    basal cells [B, S, E] --basal_encoder--+
                                           +--> transformer_backbone (blocks over the set) --> project_out
    perturbation [B, P] ---pert_encoder----+                                                      |
                                                    predicted perturbed cells [B, S, E] <--(+ basal cells)
                                                    gene_decoder --> predicted expression [B, S, G]

S cells of one cell type attend to each other, so the model maps a set of control cells to the set
the perturbation makes of them. E is the cell-embedding space (ST-Tahoe's 2058 dims), G the genes
(the log's 18080). ``basal_encoder``, ``pert_encoder``, ``project_out`` and ``gene_decoder`` are the
"head and tail modules"; the backbone is the stack of transformer blocks (and its final norm).

Losses, both with the one function ``model.loss`` names (``energy``, ``sinkhorn`` with ``model.blur``,
or ``mse``; LOG "The Core Confusion": ``model.loss`` is the master switch and both heads share it;
the log's ``training.loss_fn`` and ``model.distributional_loss`` do not exist here, so they cannot
mislead)::

    total = embedding loss + model.decoder_weight * decoder loss     (what the optimiser minimises)

Logged, every epoch, so that nothing has to be guessed (LOG "Misinterpretation of Loss Metrics")::

    train_loss / val_loss                  the EMBEDDING head's loss alone (predicted vs observed cells in E)
    train_decoder_loss / val_decoder_loss  the GENE DECODER head's loss alone (in G)
    train_total_loss / val_total_loss      the weighted sum above, the value that is backpropagated
    val_energy_distance                    the embedding head scored by energy distance, whatever model.loss is
    val_decoder_energy_distance            the gene decoder scored by energy distance

The last two compare trials that train with different ``model.loss``: an energy distance, a sinkhorn
divergence and an MSE have different scales, so their ``val_loss`` values cannot be ranked together.
With ``model.loss: energy`` (the log's run) they equal ``val_loss`` and ``val_decoder_loss``.

Fine-tuning controls (LOG "Phase 1" and "The specific strategy for staged unfreezing"):

- ``model.checkpoint``: pretrained weights, a ``state_dict`` file or a Lightning checkpoint; tensors
  whose shape differs (heads sized by another data set) keep their fresh initialisation.
  ``"synthetic_source"`` pretrains on the synthetic small-molecule domain (:func:`pretrain_on_source`,
  kept in the temp folder, where the trials of a study find it) and loads that.
- ``model.freeze_pert_backbone``: freeze the transformer blocks; ``training.unfreeze_top_blocks`` N
  then thaws the top N (Phases C–D); not freezing trains everything (Phase E).
- AdamW with layer-wise learning rates (:func:`parameter_groups`): heads at ``optimizer.lr``, the top
  ``optimizer.top_blocks`` blocks at ``lr * top_blocks_lr_factor``, lower blocks at
  ``lr * lower_blocks_lr_factor``; no weight decay on norms, biases and embeddings.
- Linear warmup over ``training.warmup_ratio`` of the steps, then cosine down to ``min_lr_ratio`` of
  each group's rate, stepped every batch; ``training.gradient_clip_val`` clips the gradient norm.

Data: synthetic domains that share genes and gene programs but differ in how perturbations act — a
source of small molecules on cancer cell lines and a target of CRISPRi knockdowns on a cancer line and
stem cells (:func:`synthetic_cell_sets`), or an AnnData ``.h5ad`` file (:func:`read_h5ad_cell_sets`).
Validation holds out whole perturbations.

Example::

    from trainers.base import fit
    from trainers.state_transition import StateTransition

    config = {"model": {"checkpoint": "synthetic_source", "freeze_pert_backbone": True, "decoder_weight": 0.5}}
    metrics = fit(StateTransition(), config, max_epochs=2)
    print(metrics["val_loss"], metrics["val_decoder_loss"])
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from objectives.distributional import energy_distance, set_loss
from trainers.base import CHECKPOINT_FILE, TrainerFamily, fit, resolve_config

LOG = "seeds/001_7bf7081cee559d14.txt"
LOGGER = logging.getLogger(__name__)

SOURCE_CHECKPOINT = "synthetic_source"  # model.checkpoint value: pretrain on the synthetic source domain

DEFAULT_CONFIG: dict[str, Any] = {
    "model": {
        "checkpoint": None,  # pretrained weights (path), SOURCE_CHECKPOINT, or None to start from scratch
        "freeze_pert_backbone": False,  # LOG "Stage 1: Frozen Backbone Tuning": True in Phases A and B
        "loss": "energy",  # LOG "The Core Confusion": model.loss: energy
        "blur": 0.05,  # STATE's default; used by sinkhorn only
        "decoder_weight": 1.0,  # LOG Phase B; Phase A 0.5; the paper 0.1 ("Theory vs. Practice")
        "hidden_dim": 32,  # ST-Tahoe's is 696; 32 keeps a CPU epoch under half a second
        "cell_set_len": 32,  # cells per set (STATE's cell_set_len, 512 for ST-Tahoe)
        "n_encoder_layers": 2,  # linear layers of basal_encoder and pert_encoder
        "n_decoder_layers": 2,  # linear layers of project_out
        "predict_residual": True,  # predict the change from the basal cells, as STATE does
        "transformer_backbone_kwargs": {
            "num_hidden_layers": 8,  # ST-Tahoe's 8 blocks, so "top 2-3" and "middle" mean what they do in the log
            "num_attention_heads": 4,
            "intermediate_size": 64,
        },
        "decoder_hidden_dims": [64],  # gene_decoder's hidden layers
    },
    "training": {
        "batch_size": 8,  # sets per batch
        "gradient_clip_val": 1.0,  # LOG "The First Health Check": 10 "was too high", 1.0 recommended
        "warmup_ratio": 0.05,  # LOG "A Guide to Hyperparameter Selection", Phase B
        "min_lr_ratio": 0.1,  # LOG Phase B: cosine ends at 10% of the target rate
        "unfreeze_top_blocks": 0,  # with a frozen backbone: LOG Phase C thaws the top 2-3 blocks
    },
    "optimizer": {
        "lr": 3e-4,  # heads and tails; LOG Phase A "3e-4", LLRD "Head/Tail Modules: 2e-4 to 3e-4"
        "weight_decay": 1e-3,  # LOG "The First Health Check": 5e-4 too low, 1e-3 to 5e-3 recommended
        "top_blocks": 3,  # blocks that count as "top" for LLRD: LOG Phase C "the top 2-3 Transformer blocks"
        "top_blocks_lr_factor": 1 / 3,  # LOG LLRD: "Unfrozen Top Layers ... 1e-4" against heads at 3e-4
        "lower_blocks_lr_factor": 0.1,  # LOG LLRD: "Lower/Middle Layers ... 3e-5"
    },
    "data": {
        "source": "synthetic_crispri",  # "synthetic_crispri" (target), "synthetic_small_molecule" (source) or "h5ad"
        "path": None,  # h5ad: the AnnData file
        "perturbation_key": "gene",  # h5ad: obs column naming each cell's perturbation
        "control_label": "non-targeting",  # h5ad: that column's value for control cells (STATE's control_pert)
        "cell_type_key": None,  # h5ad: obs column of the cell type or line; basal cells come from the same one
        "embedding_key": None,  # h5ad: obsm key of a cell embedding (e.g. "X_state"); None takes the PCA of X
        "embedding_dims": 16,  # synthetic and PCA: the embedding size (ST-Tahoe's 2058)
        "num_genes": 64,  # synthetic: genes (the log's 18080)
        "perturbation_dims": 16,  # synthetic: perturbation features (fingerprints, gene embeddings)
        "num_perturbations": 16,  # synthetic: drugs or knocked-down genes
        "sets_per_group": 2,  # sets drawn per (cell type, perturbation)
        "validation_fraction": 0.25,  # perturbations held out for validation
        "seed": 0,  # synthetic biology, set sampling and the validation split
    },
}

# How the stand-in for ST-Tahoe is pretrained: DEFAULT_CONFIG with these changes, the fine-tuning
# config's architecture and the genes and programs of its synthetic biology, nothing else: every
# trial of a study shares one pretrained checkpoint.
SOURCE_PRETRAINING: dict[str, Any] = {
    "model": {"decoder_weight": 0.1},  # the paper's weight (LOG "Theory vs. Practice")
    "training": {"batch_size": 16},  # the source has 3 cell lines x 32 drugs: twice the sets per step
    "optimizer": {"lr": 1e-3, "top_blocks_lr_factor": 1.0, "lower_blocks_lr_factor": 1.0},  # from scratch, one rate
    "data": {"source": "synthetic_small_molecule", "num_perturbations": 32},
}
ARCHITECTURE_KEYS = (
    "hidden_dim",
    "cell_set_len",
    "n_encoder_layers",
    "n_decoder_layers",
    "predict_residual",
    "transformer_backbone_kwargs",
    "decoder_hidden_dims",
)
BIOLOGY_KEYS = ("num_genes", "embedding_dims", "perturbation_dims", "seed")
SOURCE_PRETRAINING_EPOCHS = 20


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CellSets:
    """Sets of cells, one row per (cell type, perturbation) draw: control cells and what the perturbation made."""

    basal: torch.Tensor  # [sets, cells, embedding]
    perturbation: torch.Tensor  # [sets, perturbation features]
    perturbed: torch.Tensor  # [sets, cells, embedding]
    perturbed_expression: torch.Tensor  # [sets, cells, genes]
    perturbation_id: torch.Tensor  # [sets], which perturbation: validation holds out whole perturbations

    @classmethod
    def stack(cls, rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]]) -> CellSets:
        """Sets from rows of (basal, perturbation, perturbed, perturbed_expression, perturbation_id)."""
        basal, perturbation, perturbed, expression, ids = zip(*rows)
        return cls(torch.stack(basal), torch.stack(perturbation), torch.stack(perturbed), torch.stack(expression), torch.tensor(ids))

    def subset(self, rows: torch.Tensor) -> TensorDataset:
        return TensorDataset(self.basal[rows], self.perturbation[rows], self.perturbed[rows], self.perturbed_expression[rows])


GENE_PROGRAMS = 8  # latent programs that cell states vary along
SYNTHETIC_DOMAINS = {  # cell types (indices into the shared cell-type means) and how perturbations act
    "synthetic_small_molecule": {"cell_types": (0, 1, 2), "shared_mechanism": 1.0, "knockdown": False},  # Tahoe: cancer lines
    "synthetic_crispri": {"cell_types": (0, 3), "shared_mechanism": 0.5, "knockdown": True},  # a cancer line and stem cells
}
RESPONDING_FRACTION = 0.7  # cells a perturbation reaches (drug resistance, guide efficiency): a bimodal population
KNOCKDOWN_REMAINING = 0.2  # CRISPRi leaves a fifth of the target gene's expression


def synthetic_cell_sets(
    source: str,
    num_genes: int,
    embedding_dims: int,
    perturbation_dims: int,
    num_perturbations: int,
    cell_set_len: int,
    sets_per_group: int,
    seed: int,
) -> CellSets:
    """Cells on shared gene programs; a domain decides how perturbations move them.

    Shared by both domains (same ``seed``): gene loadings of the programs, baseline expression, the
    cell-type means and the embedding (a fixed projection of expression, as a PCA would give). Small
    molecules act through a mechanism matrix on random fingerprints; CRISPRi knocks down one gene and
    acts through half that mechanism and half a new one, on features that describe the gene. In both,
    only :data:`RESPONDING_FRACTION` of the cells respond.
    """
    domain = SYNTHETIC_DOMAINS[source]
    biology = torch.Generator().manual_seed(seed)
    loadings = torch.randn(num_genes, GENE_PROGRAMS, generator=biology) / math.sqrt(GENE_PROGRAMS)
    baseline = 1 + 0.5 * torch.randn(num_genes, generator=biology)
    cell_type_means = torch.randn(4, GENE_PROGRAMS, generator=biology)
    projection = torch.linalg.qr(torch.randn(num_genes, embedding_dims, generator=biology)).Q  # [genes, embedding]
    shared_mechanism = torch.randn(GENE_PROGRAMS, perturbation_dims, generator=biology) / math.sqrt(perturbation_dims)
    crispri_mechanism = torch.randn(GENE_PROGRAMS, perturbation_dims, generator=biology) / math.sqrt(perturbation_dims)
    gene_features = torch.randn(GENE_PROGRAMS, perturbation_dims, generator=biology)
    reference = torch.nn.functional.softplus(baseline)

    draws = torch.Generator().manual_seed(seed + 1 + list(SYNTHETIC_DOMAINS).index(source))  # each domain its own cells
    if domain["knockdown"]:
        targets = torch.randperm(num_genes, generator=draws)[:num_perturbations]
        features = loadings[targets] @ gene_features
        features = features / features.norm(dim=1, keepdim=True) * math.sqrt(perturbation_dims)
    else:
        targets = None
        features = torch.randn(num_perturbations, perturbation_dims, generator=draws)
    weight = domain["shared_mechanism"]
    shifts = features @ (weight * shared_mechanism + (1 - weight) * crispri_mechanism).T  # [perturbations, programs]

    def cells(cell_type: int, perturbation: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        state = cell_type_means[cell_type] + 0.5 * torch.randn(cell_set_len, GENE_PROGRAMS, generator=draws)
        if perturbation is not None:
            responds = torch.rand(cell_set_len, 1, generator=draws) < RESPONDING_FRACTION
            state = state + responds * shifts[perturbation]
        expression = torch.nn.functional.softplus(state @ loadings.T + baseline)
        if perturbation is not None and targets is not None:
            expression[:, targets[perturbation]] *= KNOCKDOWN_REMAINING
        expression = expression + 0.1 * torch.randn(expression.shape, generator=draws)
        return (expression - reference) @ projection, expression

    rows = []
    for cell_type in domain["cell_types"]:
        for perturbation in range(num_perturbations):
            for _ in range(sets_per_group):
                perturbed, expression = cells(cell_type, perturbation)
                rows.append((cells(cell_type, None)[0], features[perturbation], perturbed, expression, perturbation))
    return CellSets.stack(rows)


def read_h5ad_cell_sets(
    path: str,
    perturbation_key: str,
    control_label: str,
    cell_type_key: str | None,
    embedding_key: str | None,
    embedding_dims: int,
    cell_set_len: int,
    sets_per_group: int,
    seed: int,
) -> CellSets:
    """Cell sets from an AnnData file: ``obs[perturbation_key]`` names each cell's perturbation,
    ``control_label`` marks controls, ``X`` is the expression as stored (log-normalise counts first).

    The embedding is ``obsm[embedding_key]``, or the top ``embedding_dims`` principal components of X.
    Perturbations are one-hot features. For every (cell type, perturbation) with cells, each of
    ``sets_per_group`` sets draws ``cell_set_len`` perturbed cells and as many controls of that cell
    type, with replacement.
    """
    import anndata  # here, not at the top: it takes a second to import and synthetic studies never need it

    adata = anndata.read_h5ad(path)
    expression = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    expression = torch.from_numpy(expression.astype(np.float32))
    if embedding_key is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # the randomised PCA is then the same in every trial
            _, _, components = torch.pca_lowrank(expression, q=embedding_dims, center=True)
        embedding = (expression - expression.mean(0)) @ components
    else:
        embedding = torch.from_numpy(np.asarray(adata.obsm[embedding_key], dtype=np.float32))
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    cell_types = adata.obs[cell_type_key].astype(str).to_numpy() if cell_type_key else np.full(len(labels), "all")
    perturbations = sorted(set(labels) - {control_label})
    if not perturbations or control_label not in set(labels):
        raise ValueError(f"{path}: obs[{perturbation_key!r}] needs control cells ({control_label!r}) and perturbed cells")
    features = torch.eye(len(perturbations))
    generator = np.random.default_rng(seed)
    rows = []
    for cell_type in sorted(set(cell_types)):
        controls = np.flatnonzero((labels == control_label) & (cell_types == cell_type))
        for index, perturbation in enumerate(perturbations):
            perturbed = np.flatnonzero((labels == perturbation) & (cell_types == cell_type))
            if len(perturbed) == 0:
                continue
            if len(controls) == 0:
                raise ValueError(f"{path}: cell type {cell_type!r} has perturbed cells but no {control_label!r} controls")
            for _ in range(sets_per_group):
                basal, drawn = generator.choice(controls, cell_set_len), generator.choice(perturbed, cell_set_len)
                rows.append((embedding[basal], features[index], embedding[drawn], expression[drawn], index))
    return CellSets.stack(rows)


@functools.lru_cache(maxsize=4)
def _cell_sets(data_json: str, cell_set_len: int) -> CellSets:
    data = json.loads(data_json)
    if data["source"] == "h5ad":
        if data["path"] is None:
            raise ValueError("data.source h5ad needs data.path, the .h5ad file")
        return read_h5ad_cell_sets(
            str(data["path"]),
            data["perturbation_key"],
            data["control_label"],
            data["cell_type_key"],
            data["embedding_key"],
            data["embedding_dims"],
            cell_set_len,
            data["sets_per_group"],
            data["seed"],
        )
    if data["source"] not in SYNTHETIC_DOMAINS:
        raise ValueError(f"unknown data.source {data['source']!r}; use h5ad or one of {', '.join(SYNTHETIC_DOMAINS)}")
    return synthetic_cell_sets(
        data["source"],
        data["num_genes"],
        data["embedding_dims"],
        data["perturbation_dims"],
        data["num_perturbations"],
        cell_set_len,
        data["sets_per_group"],
        data["seed"],
    )


def cell_sets_for(config: Mapping[str, Any]) -> CellSets:
    """The (resolved) config's cell sets, built once per process."""
    return _cell_sets(json.dumps(config["data"], sort_keys=True, default=str), config["model"]["cell_set_len"])


def validation_perturbations(num_perturbations: int, fraction: float, seed: int) -> torch.Tensor:
    """Perturbation ids held out for validation: a seeded ``fraction`` of them, at least one."""
    held_out = max(1, round(fraction * num_perturbations))
    return torch.randperm(num_perturbations, generator=torch.Generator().manual_seed(seed))[:held_out]


class CellSetData(pl.LightningDataModule):
    """Training and validation cell sets; validation perturbations are never seen in training.

    ``config`` is resolved (:meth:`StateTransition.resolve`).
    """

    def __init__(self, config: Mapping[str, Any]):
        super().__init__()
        self.config = config
        self.datasets: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        sets = cell_sets_for(self.config)
        data = self.config["data"]
        held_out = validation_perturbations(int(sets.perturbation_id.max()) + 1, data["validation_fraction"], data["seed"])
        is_validation = torch.isin(sets.perturbation_id, held_out)
        self.datasets = {"train": sets.subset(~is_validation), "validation": sets.subset(is_validation)}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["train"], batch_size=self.config["training"]["batch_size"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["validation"], batch_size=self.config["training"]["batch_size"])


# ---------------------------------------------------------------------------------------------- model


def mlp(inputs: int, outputs: int, hidden: list[int]) -> nn.Sequential:
    """Linear → LayerNorm → GELU per hidden width, then a linear output (STATE's build_mlp)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.LayerNorm(width), nn.GELU()]
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, outputs))


class TransformerBackbone(nn.Module):
    """Pre-norm transformer blocks over the cells of a set (bidirectional, no positions: a set has no order)."""

    def __init__(self, hidden_dim: int, num_hidden_layers: int, num_attention_heads: int, intermediate_size: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                hidden_dim, num_attention_heads, intermediate_size, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(num_hidden_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        return self.final_norm(tokens)


class PerturbationTransformer(nn.Module):
    """Basal cells and a perturbation in, predicted perturbed cells (embedding) and their expression out."""

    def __init__(self, model: Mapping[str, Any], embedding_dims: int, perturbation_dims: int, genes: int):
        super().__init__()
        hidden = model["hidden_dim"]
        self.predict_residual = model["predict_residual"]
        self.basal_encoder = mlp(embedding_dims, hidden, [hidden] * (model["n_encoder_layers"] - 1))
        self.pert_encoder = mlp(perturbation_dims, hidden, [hidden] * (model["n_encoder_layers"] - 1))
        self.transformer_backbone = TransformerBackbone(hidden, **model["transformer_backbone_kwargs"])
        self.project_out = mlp(hidden, embedding_dims, [hidden] * (model["n_decoder_layers"] - 1))
        self.gene_decoder = mlp(embedding_dims, genes, list(model["decoder_hidden_dims"]))

    def forward(self, basal: torch.Tensor, perturbation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.basal_encoder(basal) + self.pert_encoder(perturbation).unsqueeze(1)
        predicted = self.project_out(self.transformer_backbone(tokens))
        if self.predict_residual:
            predicted = predicted + basal
        return predicted, self.gene_decoder(predicted)


def load_pretrained(network: PerturbationTransformer, path: str | Path) -> list[str]:
    """Copy a checkpoint's weights into ``network``; returns the names left at their fresh initialisation.

    ``path`` holds a ``state_dict`` of a :class:`PerturbationTransformer` or a Lightning checkpoint of
    :class:`StateTransitionModel`. Head and tail tensors whose shape differs (another gene panel,
    embedding or perturbation set) are skipped; the transformer backbone must match.
    """
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in saved:  # a Lightning checkpoint: the network's tensors sit under "network."
        saved = {name.removeprefix("network."): tensor for name, tensor in saved["state_dict"].items()}
    own = network.state_dict()
    loaded = {name: tensor for name, tensor in saved.items() if name in own and own[name].shape == tensor.shape}
    missing_backbone = [name for name in own if name.startswith("transformer_backbone.") and name not in loaded]
    if missing_backbone:
        raise ValueError(
            f"checkpoint {path} does not fit this backbone ({len(missing_backbone)} tensors missing or of another "
            f"shape, e.g. {missing_backbone[0]}); model.hidden_dim and transformer_backbone_kwargs must match it"
        )
    network.load_state_dict({**own, **loaded})
    fresh = sorted(set(own) - set(loaded))
    if fresh:
        LOGGER.warning("checkpoint %s: %d tensors keep their fresh initialisation: %s", path, len(fresh), ", ".join(fresh))
    return fresh


def freeze_backbone(network: PerturbationTransformer, unfreeze_top_blocks: int) -> None:
    """Freeze the transformer blocks except the top ``unfreeze_top_blocks`` (the final norm thaws with them)."""
    blocks = network.transformer_backbone.blocks
    if not 0 <= unfreeze_top_blocks <= len(blocks):
        raise ValueError(f"training.unfreeze_top_blocks must be within 0..{len(blocks)} (got {unfreeze_top_blocks})")
    for index, block in enumerate(blocks):
        block.requires_grad_(index >= len(blocks) - unfreeze_top_blocks)
    network.transformer_backbone.final_norm.requires_grad_(unfreeze_top_blocks > 0)


NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._BatchNorm, nn.Embedding)


def no_weight_decay(module: nn.Module, parameter_name: str) -> bool:
    """Norm scales, biases and embeddings are not decayed (LOG "The First Health Check")."""
    return isinstance(module, NO_DECAY_MODULES) or parameter_name.endswith("bias")


def parameter_groups(network: PerturbationTransformer, optimizer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """AdamW parameter groups of the trainable parameters: LLRD tier × decay, each named ``tier/decay``.

    Tiers: ``head`` (encoders, project_out, gene_decoder) at ``lr``; ``top_blocks`` (the top
    ``top_blocks`` transformer blocks and the final norm) at ``lr * top_blocks_lr_factor``;
    ``lower_blocks`` at ``lr * lower_blocks_lr_factor``. Empty groups are left out.
    """
    first_top_block = len(network.transformer_backbone.blocks) - optimizer["top_blocks"]
    rates = {
        "head": optimizer["lr"],
        "top_blocks": optimizer["lr"] * optimizer["top_blocks_lr_factor"],
        "lower_blocks": optimizer["lr"] * optimizer["lower_blocks_lr_factor"],
    }

    def tier(module_name: str) -> str:
        if module_name.startswith("transformer_backbone.blocks."):
            return "top_blocks" if int(module_name.split(".")[2]) >= first_top_block else "lower_blocks"
        return "top_blocks" if module_name.startswith("transformer_backbone.") else "head"

    groups: dict[str, dict[str, Any]] = {}
    for module_name, module in network.named_modules():
        for parameter_name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            decayed = not no_weight_decay(module, parameter_name)
            rate = rates[tier(module_name)]
            name = f"{tier(module_name)}/{'decay' if decayed else 'no_decay'}"
            weight_decay = optimizer["weight_decay"] if decayed else 0.0
            groups.setdefault(name, {"name": name, "params": [], "lr": rate, "weight_decay": weight_decay})["params"].append(parameter)
    return list(groups.values())


def warmup_cosine(step: int, total_steps: int, warmup_ratio: float, min_lr_ratio: float) -> float:
    """Learning-rate multiplier: linear warmup over ``warmup_ratio`` of the steps, then cosine to ``min_lr_ratio``."""
    warmup_steps = math.ceil(warmup_ratio * total_steps)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class StateTransitionModel(pl.LightningModule):
    """Trains :class:`PerturbationTransformer`; logs the losses the module docstring names.

    ``config`` is resolved (:meth:`StateTransition.resolve`).
    """

    def __init__(self, config: Mapping[str, Any], embedding_dims: int, perturbation_dims: int, genes: int):
        super().__init__()
        self.config = config
        model = self.config["model"]
        self.network = PerturbationTransformer(model, embedding_dims, perturbation_dims, genes)
        checkpoint = model["checkpoint"]
        if checkpoint == SOURCE_CHECKPOINT:
            checkpoint = source_checkpoint(self.config)
        if checkpoint is not None:
            load_pretrained(self.network, checkpoint)
        if model["freeze_pert_backbone"]:
            freeze_backbone(self.network, self.config["training"]["unfreeze_top_blocks"])
        self.loss = set_loss(model["loss"], model["blur"])

    def _losses(self, batch: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """The losses by their logged names (without the train_/val_ prefix), and the predictions."""
        basal, perturbation, perturbed, perturbed_expression = batch
        predicted, predicted_expression = self.network(basal, perturbation)
        embedding_loss = self.loss(predicted, perturbed)
        decoder_loss = self.loss(predicted_expression, perturbed_expression)
        total = embedding_loss + self.config["model"]["decoder_weight"] * decoder_loss
        return {"loss": embedding_loss, "decoder_loss": decoder_loss, "total_loss": total}, (predicted, predicted_expression)

    def _log_losses(self, prefix: str, losses: dict[str, torch.Tensor], batch_size: int) -> None:
        for name, value in losses.items():
            self.log(f"{prefix}_{name}", value, on_step=False, on_epoch=True, batch_size=batch_size)

    def training_step(self, batch: list[torch.Tensor], batch_index: int) -> torch.Tensor:
        losses, _ = self._losses(batch)
        self._log_losses("train", losses, batch[0].shape[0])
        return losses["total_loss"]

    def validation_step(self, batch: list[torch.Tensor], batch_index: int) -> None:
        losses, (predicted, predicted_expression) = self._losses(batch)
        # One yardstick whatever model.loss trains with: losses of different kinds have different scales.
        losses["energy_distance"] = energy_distance(predicted, batch[2]).mean()
        losses["decoder_energy_distance"] = energy_distance(predicted_expression, batch[3]).mean()
        self._log_losses("val", losses, batch[0].shape[0])

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(parameter_groups(self.network, self.config["optimizer"]))
        training = self.config["training"]
        total_steps = int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total_steps, training["warmup_ratio"], training["min_lr_ratio"])
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class StateTransition(TrainerFamily):
    """STATE-style set-to-set perturbation model, pretrained or fine-tuned."""

    DEFAULTS = DEFAULT_CONFIG

    def build_model(self, config: Mapping[str, Any]) -> StateTransitionModel:
        sets = cell_sets_for(config)
        return StateTransitionModel(
            config, sets.basal.shape[-1], sets.perturbation.shape[-1], sets.perturbed_expression.shape[-1]
        )

    def build_data(self, config: Mapping[str, Any]) -> CellSetData:
        return CellSetData(config)

    def trainer_options(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"gradient_clip_val": config["training"]["gradient_clip_val"] or None}


# ---------------------------------------------------------------------------------------------- pretraining


def source_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved pretraining config for resolved ``config``: its architecture and biology, the rest
    :data:`SOURCE_PRETRAINING`'s."""
    inherited = {
        "model": {key: config["model"][key] for key in ARCHITECTURE_KEYS},
        "data": {key: config["data"][key] for key in BIOLOGY_KEYS},
    }
    return resolve_config(SOURCE_PRETRAINING, StateTransition().resolve(inherited))


def pretrain_on_source(config: Mapping[str, Any], path: str | Path, max_epochs: int = SOURCE_PRETRAINING_EPOCHS) -> Path:
    """Pretrain resolved ``config``'s architecture on the synthetic small-molecule domain; save its checkpoint at ``path``.

    The stand-in for ST-Tahoe's pretraining, for fine-tuning studies (Phases A-E) to start from.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")

    def keep_latest(metrics: dict[str, float], checkpoint_dir: str) -> None:
        shutil.copyfile(os.path.join(checkpoint_dir, CHECKPOINT_FILE), partial)

    try:
        fit(StateTransition(), source_config(config), max_epochs=max_epochs, report=keep_latest)
        os.replace(partial, path)  # atomic: a concurrent trial sees no checkpoint or a whole one
    finally:
        partial.unlink(missing_ok=True)
    return path


def source_cache() -> Path:
    """``$XDG_CACHE_HOME/tune/state_source`` (default ``~/.cache``): the user's own folder, not a shared temp folder
    where another user could leave a checkpoint for this one to load."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tune" / "state_source"


def source_checkpoint(config: Mapping[str, Any]) -> Path:
    """The source-pretrained checkpoint for resolved ``config``'s architecture, pretrained on first use.

    Kept in the user's own cache folder (:func:`source_cache`) by a hash of the source config, so that the
    trials of a study (one process each) pretrain once; the caller's random state is left as it was.
    """
    described = json.dumps({"config": source_config(config), "epochs": SOURCE_PRETRAINING_EPOCHS}, sort_keys=True)
    path = source_cache() / f"{hashlib.sha256(described.encode()).hexdigest()[:16]}.ckpt"
    if not path.exists():
        with torch.random.fork_rng():
            pretrain_on_source(config, path)
    return path
