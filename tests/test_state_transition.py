"""The STATE-style trainer: set losses, model, freezing and LLRD, data, checkpoints, and the ST-Tahoe space."""

import itertools
import math
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import torch
from geomloss import SamplesLoss
from torch import nn

from objectives.distributional import energy_distance, set_loss, sinkhorn_divergence
from studies.space import load_space
from trainers.base import fit
from trainers.state_transition import (
    CellSetData,
    PerturbationTransformer,
    StateTransition,
    freeze_backbone,
    load_pretrained,
    no_weight_decay,
    parameter_groups,
    pretrain_on_source,
    read_h5ad_cell_sets,
    source_config,
    synthetic_cell_sets,
    warmup_cosine,
)

SPACE_FILE = Path(__file__).resolve().parents[1] / "search_spaces" / "state_tahoe.py"
MODEL = StateTransition().resolve({})["model"]
BLOCKS = MODEL["transformer_backbone_kwargs"]["num_hidden_layers"]



@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A (briefly) source-pretrained Lightning checkpoint of the default architecture."""
    return pretrain_on_source(StateTransition().resolve({}), tmp_path_factory.mktemp("source") / "source.ckpt", max_epochs=1)


def network(genes: int = 64) -> PerturbationTransformer:
    return PerturbationTransformer(MODEL, embedding_dims=16, perturbation_dims=16, genes=genes)


# ---------------------------------------------------------------------------------------------- losses


def test_energy_distance_by_hand_and_as_geomloss_computes_it():
    # x = {0, 1}, y = {2}: E|x-y| = 1.5, E|x-x'| = 0.5, E|y-y'| = 0  ->  1.5 - 0.25 - 0 = 1.25
    x, y = torch.tensor([[[0.0], [1.0]]]), torch.tensor([[[2.0]]])
    assert energy_distance(x, y).item() == pytest.approx(1.25)
    assert energy_distance(x, x.clone()).item() == pytest.approx(0.0, abs=1e-7)
    a, b = torch.randn(3, 10, 4, requires_grad=True), torch.randn(3, 12, 4)
    torch.testing.assert_close(energy_distance(a, b), SamplesLoss("energy")(a, b), rtol=1e-4, atol=1e-5)
    energy_distance(a, b).sum().backward()
    assert torch.isfinite(a.grad).all()  # zero self-distances do not poison the gradient


def test_sinkhorn_is_zero_for_identical_sets_and_grows_with_a_shift():
    cells = torch.randn(2, 20, 5)
    assert sinkhorn_divergence(cells, cells.clone(), blur=0.05).abs().max() < 1e-4
    shifted = sinkhorn_divergence(cells, cells + 1.0, blur=0.05)
    assert (shifted > 0.4).all()  # 0.5 |shift|^2 for a translation, p=2


def test_set_loss_names():
    x, y = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    assert set_loss("mse")(x, y).item() == pytest.approx(nn.functional.mse_loss(x, y).item())
    assert set_loss("energy")(x, y).item() == pytest.approx(energy_distance(x, y).mean().item())
    with pytest.raises(ValueError, match="energy, sinkhorn, mse"):
        set_loss("se")


# ---------------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("loss", ["energy", "sinkhorn", "mse"])
def test_every_loss_trains_both_heads(loss):
    family = StateTransition()
    config = family.resolve({"model": {"loss": loss, "decoder_weight": 0.5}})
    model = family.build_model(config)
    data = family.build_data(config)
    data.setup()
    basal, perturbation, perturbed, expression = next(iter(data.train_dataloader()))
    predicted, predicted_expression = model.network(basal, perturbation)
    (model.loss(predicted, perturbed) + 0.5 * model.loss(predicted_expression, expression)).backward()
    for head in (model.network.basal_encoder, model.network.gene_decoder, model.network.transformer_backbone):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def test_network_predicts_sets_in_embedding_and_gene_space():
    predicted, expression = network(genes=40)(torch.randn(4, 32, 16), torch.randn(4, 16))
    assert predicted.shape == (4, 32, 16) and expression.shape == (4, 32, 40)


def test_freezing_thaws_only_the_top_blocks():
    model = network()
    blocks = model.transformer_backbone.blocks

    def trainable(module: nn.Module) -> bool:
        flags = {p.requires_grad for p in module.parameters()}
        assert len(flags) == 1
        return flags.pop()

    freeze_backbone(model, 0)  # Phases A-B
    assert not any(trainable(block) for block in blocks) and not trainable(model.transformer_backbone.final_norm)
    assert all(trainable(head) for head in (model.basal_encoder, model.pert_encoder, model.project_out, model.gene_decoder))
    freeze_backbone(model, 3)  # Phase C
    assert [trainable(block) for block in blocks] == [False] * (BLOCKS - 3) + [True] * 3
    assert trainable(model.transformer_backbone.final_norm)
    with pytest.raises(ValueError, match="unfreeze_top_blocks"):
        freeze_backbone(model, BLOCKS + 1)


def test_no_weight_decay_on_norms_biases_and_embeddings():
    assert no_weight_decay(nn.LayerNorm(4), "weight") and no_weight_decay(nn.LayerNorm(4), "bias")
    assert no_weight_decay(nn.Embedding(10, 4), "weight")
    assert no_weight_decay(nn.Linear(4, 4), "bias") and not no_weight_decay(nn.Linear(4, 4), "weight")
    assert no_weight_decay(nn.MultiheadAttention(4, 2), "in_proj_bias")
    assert not no_weight_decay(nn.MultiheadAttention(4, 2), "in_proj_weight")


def test_llrd_groups_give_each_tier_its_rate_and_decay():
    optimizer = {"lr": 3e-4, "weight_decay": 2e-3, "top_blocks": 3, "top_blocks_lr_factor": 1 / 3, "lower_blocks_lr_factor": 0.1}
    model = network()
    freeze_backbone(model, 6)  # Phase D: the top 3 blocks are "top", the next 3 "lower", 2 stay frozen
    groups = {group["name"]: group for group in parameter_groups(model, optimizer)}
    expected_rates = {"head": 3e-4, "top_blocks": 1e-4, "lower_blocks": 3e-5}
    assert set(groups) == {f"{tier}/{decay}" for tier in expected_rates for decay in ("decay", "no_decay")}
    for name, group in groups.items():
        tier, decay = name.split("/")
        assert group["lr"] == pytest.approx(expected_rates[tier])
        assert group["weight_decay"] == (2e-3 if decay == "decay" else 0.0)
    ids = {name: {id(p) for p in group["params"]} for name, group in groups.items()}
    blocks = model.transformer_backbone.blocks
    assert {id(p) for p in blocks[7].parameters()} <= ids["top_blocks/decay"] | ids["top_blocks/no_decay"]
    assert {id(p) for p in blocks[2].parameters()} <= ids["lower_blocks/decay"] | ids["lower_blocks/no_decay"]
    assert not {id(p) for p in blocks[1].parameters()} & set().union(*ids.values())  # frozen: in no group
    assert id(blocks[7].norm1.weight) in ids["top_blocks/no_decay"] and id(blocks[7].linear1.weight) in ids["top_blocks/decay"]
    assert id(model.transformer_backbone.final_norm.weight) in ids["top_blocks/no_decay"]
    assert id(model.gene_decoder[0].bias) in ids["head/no_decay"] and id(model.gene_decoder[0].weight) in ids["head/decay"]
    # Without freezing, every block trains: the top 3 as "top", the other 5 as "lower".
    unfrozen = network()
    all_groups = {group["name"]: group for group in parameter_groups(unfrozen, optimizer)}
    lower = {id(p) for name in ("lower_blocks/decay", "lower_blocks/no_decay") for p in all_groups[name]["params"]}
    assert lower == {id(p) for block in unfrozen.transformer_backbone.blocks[: BLOCKS - 3] for p in block.parameters()}


def test_warmup_then_cosine_to_the_floor():
    schedule = [warmup_cosine(step, 100, warmup_ratio=0.05, min_lr_ratio=0.1) for step in range(101)]
    assert schedule[0] == pytest.approx(0.2) and schedule[4] == pytest.approx(1.0)
    assert schedule[5] == pytest.approx(1.0) and schedule[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(schedule[5:]))
    assert warmup_cosine(0, 10, warmup_ratio=0.0, min_lr_ratio=0.0) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- data


def test_synthetic_domains_share_a_cell_line_and_validation_holds_out_perturbations():
    common = {"num_genes": 64, "embedding_dims": 16, "perturbation_dims": 16, "num_perturbations": 8}
    common.update(cell_set_len=32, sets_per_group=2, seed=0)
    source = synthetic_cell_sets("synthetic_small_molecule", **common)
    target = synthetic_cell_sets("synthetic_crispri", **common)
    assert source.basal.shape == (3 * 8 * 2, 32, 16) and target.basal.shape == (2 * 8 * 2, 32, 16)
    assert target.perturbed_expression.shape == (32, 32, 64) and target.perturbation.shape == (32, 16)
    # Both domains share cell type 0 (a cancer line): its control cells look alike in both.
    torch.testing.assert_close(source.basal[0].mean(0), target.basal[0].mean(0), atol=0.6, rtol=0)
    # Validation holds out whole perturbations.
    data = CellSetData(StateTransition().resolve({"data": {"num_perturbations": 8}}))
    data.setup()
    train_features = data.datasets["train"].tensors[1]
    for features in data.datasets["validation"].tensors[1]:
        assert not (train_features == features).all(dim=1).any()


def test_h5ad_cells_become_sets_of_the_same_cell_type(tmp_path):
    rng = np.random.default_rng(0)
    labels = ["non-targeting"] * 20 + ["KRAS"] * 10 + ["TP53"] * 10
    cell_types = ["K562", "H1"] * 20
    expression = rng.normal(size=(40, 12)).astype(np.float32)
    embedding = np.arange(40, dtype=np.float32)[:, None].repeat(3, axis=1)  # row i embeds as (i, i, i)
    adata = anndata.AnnData(X=expression, obs=pd.DataFrame({"gene": labels, "cell_line": cell_types}, index=[f"c{i}" for i in range(40)]))
    adata.obsm["X_state"] = embedding
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)

    sets = read_h5ad_cell_sets(str(path), "gene", "non-targeting", "cell_line", "X_state", 3, cell_set_len=5, sets_per_group=2, seed=0)
    assert sets.basal.shape == (2 * 2 * 2, 5, 3) and sets.perturbed_expression.shape == (8, 5, 12)
    assert sets.perturbation.tolist().count([1.0, 0.0]) == 4 and sets.perturbation_id.tolist().count(1) == 4
    for basal, perturbed in zip(sets.basal, sets.perturbed):
        basal_rows, perturbed_rows = basal[:, 0].long(), perturbed[:, 0].long()  # the embedding names the row
        assert all(labels[i] == "non-targeting" for i in basal_rows)
        assert len({cell_types[i] for i in torch.cat([basal_rows, perturbed_rows])}) == 1
    pca = read_h5ad_cell_sets(str(path), "gene", "non-targeting", None, None, 4, cell_set_len=5, sets_per_group=1, seed=0)
    assert pca.basal.shape == (2, 5, 4)


# ---------------------------------------------------------------------------------------------- checkpoints


def test_one_source_checkpoint_serves_every_fine_tuning_trial():
    resolve = StateTransition().resolve
    trial = {"model": {"loss": "sinkhorn", "blur": 0.2, "freeze_pert_backbone": True}, "optimizer": {"lr": 1e-5}}
    assert source_config(resolve(trial)) == source_config(resolve({}))
    assert source_config(resolve({}))["data"]["source"] == "synthetic_small_molecule"
    # Another architecture, another pretraining.
    assert source_config(resolve({"model": {"hidden_dim": 16}})) != source_config(resolve({}))


def test_fine_tuning_starts_from_the_pretrained_weights(pretrained, tmp_path):
    saved = torch.load(pretrained, weights_only=True)["state_dict"]
    family = StateTransition()
    model = family.build_model(family.resolve({"model": {"checkpoint": str(pretrained), "freeze_pert_backbone": True}}))
    for name, tensor in model.network.state_dict().items():
        assert torch.equal(tensor, saved[f"network.{name}"]), name
    # A plain state_dict loads too; a head sized for other genes keeps its fresh weights, the backbone loads.
    plain = tmp_path / "weights.pt"
    torch.save(model.network.state_dict(), plain)
    other_genes = network(genes=40)
    fresh = load_pretrained(other_genes, plain)
    assert fresh == ["gene_decoder.3.bias", "gene_decoder.3.weight"]
    assert torch.equal(other_genes.transformer_backbone.blocks[0].linear1.weight, saved["network.transformer_backbone.blocks.0.linear1.weight"])


def test_space_declares_the_phases():
    space = load_space(SPACE_FILE)
    assert space.trainer is StateTransition
    names = ["val_energy_distance", "val_decoder_energy_distance", "val_loss", "val_decoder_loss"]
    assert [o.name for o in space.objectives] == names
    assert list(space.baselines) == ["Phase A", "Phase B", "Phase C", "Phase D", "Phase E"]
    phases = space.module.PHASES
    assert (phases["A"]["model.decoder_weight"], phases["B"]["model.decoder_weight"]) == (0.5, 1.0)
    assert phases["A"]["model.freeze_pert_backbone"] and phases["B"]["model.freeze_pert_backbone"]
    assert phases["C"]["training.unfreeze_top_blocks"] == 3 and not phases["E"]["model.freeze_pert_backbone"]
    phase_a = space.baselines["Phase A"]
    assert (phase_a["optimizer.lr"], phase_a["training.gradient_clip_val"], phase_a["optimizer.weight_decay"]) == (3e-4, 10.0, 5e-4)
    assert space.baselines["Phase B"]["training.gradient_clip_val"] == 1.0
    # Every baseline sets exactly the knobs that are active for it.
    for values in space.baselines.values():
        assert set(values) == {name for name in space.knobs if space.active(name, values)}


def test_phase_a_trains_and_reports_both_heads_every_epoch(pretrained):
    space = load_space(SPACE_FILE)
    config = space.training_config(space.baselines["Phase A"])
    config["model"]["checkpoint"] = str(pretrained)  # the test's brief pretraining instead of the study's cached one
    reports = []
    fit(space.trainer(), config, max_epochs=2, report=lambda metrics, folder: reports.append(metrics))
    assert [r["epoch"] for r in reports] == [1.0, 2.0]
    for metrics in reports:
        assert math.isfinite(metrics["val_loss"]) and math.isfinite(metrics["val_decoder_loss"])
        # val_total_loss is the embedding loss plus decoder_weight (0.5 in Phase A) times the decoder loss.
        assert metrics["val_total_loss"] == pytest.approx(metrics["val_loss"] + 0.5 * metrics["val_decoder_loss"], rel=1e-5)
        # Phase A trains with the energy loss, so the loss-independent yardsticks are the same numbers.
        assert metrics["val_energy_distance"] == pytest.approx(metrics["val_loss"], rel=1e-5)
        assert metrics["val_decoder_energy_distance"] == pytest.approx(metrics["val_decoder_loss"], rel=1e-5)
    assert math.isfinite(reports[1]["train_decoder_loss"])
