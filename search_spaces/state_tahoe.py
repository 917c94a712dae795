"""Fine-tuning ST-Tahoe (a STATE transition model) from small-molecule to CRISPRi perturbations.

Log: shared/seeds/001_7bf7081cee559d14.txt ("the log"). The researcher fine-tuned in phases: the
backbone frozen with the gene-decoder weight at 0.5 (A) and 1.0 (B), then progressive unfreezing
with layer-wise learning rates (C-E), and reconsidered gradient clipping, weight decay and the loss.
Knob names follow the config the log quotes (``model.loss``, ``model.decoder_weight``,
``gradient_clip_val``, ``weight_decay``, ``warmup_ratio``, ``min_lr_ratio``); the learning rates sit
under ``optimizer`` as the log's LLRD list orders them: heads, top blocks, lower blocks.

Every trial starts from the same pretrained model: ``model.checkpoint: synthetic_source`` pretrains
the architecture once on the synthetic small-molecule domain (the stand-in for ST-Tahoe) and
fine-tunes on the synthetic CRISPRi domain, on held-out perturbations. For real data, set
``model.checkpoint`` to the pretrained weights and ``data`` to the .h5ad (see trainers/state_transition.py).

``PHASES`` holds each phase's own settings and ``WARM_START`` the config path of the weights a
phase starts from. ``tune phases search_spaces/state_tahoe.py`` runs the log's phases A-E as one
study each (``state_tahoe-phase-A`` ... ``-E``): a phase holds its settings fixed and searches the
other knobs; its first trial is the previous phase's best config under its settings ("best of
phase A"), and every trial starts from the weights that best trial ended with. Phase A starts from
the source-pretrained model. Running the command again skips the phases already done.
"""

from studies.space import Budget, Categorical, Float, Int, Objective, Resources
from trainers.state_transition import SOURCE_CHECKPOINT, StateTransition

TRAINER = StateTransition

FROZEN = {"model.freeze_pert_backbone": True}
SINKHORN = {"model.loss": "sinkhorn"}

CONFIG = {
    "model": {
        "checkpoint": SOURCE_CHECKPOINT,  # "fine-tune the pre-trained ST-Tahoe model"
        "freeze_pert_backbone": Categorical([True, False]),  # frozen in Phases A-B ("Stage 1: Frozen Backbone Tuning")
        "loss": Categorical(["energy", "sinkhorn", "mse"]),  # "The Core Confusion": model.loss, energy in the run
        "blur": Float(0.01, 0.5, log=True, when=SINKHORN),  # SamplesLoss(blur=...), STATE's default 0.05
        "decoder_weight": Float(0.1, 1.0),  # the paper 0.1, Phase A 0.5, Phase B 1.0 ("Theory vs. Practice")
        "hidden_dim": 32,  # ST-Tahoe's 696, scaled to a CPU
        "cell_set_len": 32,  # ST-Tahoe's 512
        "n_encoder_layers": 2,
        "n_decoder_layers": 2,
        "predict_residual": True,
        "transformer_backbone_kwargs": {"num_hidden_layers": 8, "num_attention_heads": 4, "intermediate_size": 64},
        "decoder_hidden_dims": [64],
    },
    "training": {
        "batch_size": 8,
        "gradient_clip_val": Float(0.5, 10.0, log=True),  # "The First Health Check": 10 "was too high", 1.0 recommended
        "warmup_ratio": Float(0.0, 0.1),  # "A Guide to Hyperparameter Selection", Phase B: 0.05
        "min_lr_ratio": Float(0.0, 0.5),  # same, Phase B: 0.1 (cosine to 10% of the target rate)
        # of 8 blocks ("The specific strategy for staged unfreezing"): 0 in A-B, "the top 2-3" in C, the middle in D
        "unfreeze_top_blocks": Int(0, 7, when=FROZEN),
    },
    "optimizer": {
        "lr": Float(1e-5, 1e-3, log=True),  # heads ("A Guide to ..."): Phase A 3e-4, Phase B 5e-5; LLRD "2e-4 to 3e-4"
        "weight_decay": Float(1e-4, 1e-2, log=True),  # "The First Health Check": 5e-4 too low, "1e-3 ~ 5e-3"
        "top_blocks": 3,  # the blocks LLRD calls "top": Phase C's "top 2-3"
        # "Layer-wise Learning Rate Decay" ("Phase 1"): top blocks 1e-4 under heads at 3e-4; Phase E's backbone 3e-5
        "top_blocks_lr_factor": Float(0.03, 1.0, log=True),
        "lower_blocks_lr_factor": Float(0.01, 1.0, log=True),  # same list: lower/middle 3e-5; Phase E's 1e-5
    },
    "data": {
        "source": "synthetic_crispri",  # or "h5ad" with path, perturbation_key, control_label, cell_type_key, embedding_key
        "path": None,
        "perturbation_key": "gene",
        "control_label": "non-targeting",
        "cell_type_key": None,
        "embedding_key": None,
        "embedding_dims": 16,
        "num_genes": 64,
        "perturbation_dims": 16,
        "num_perturbations": 16,
        "sets_per_group": 2,
        "validation_fraction": 0.25,
        "seed": 0,
    },
}

# Each phase's own settings ("The specific strategy for staged unfreezing", "A Guide to
# Hyperparameter Selection"). A phase continues from the previous phase's best checkpoint.
PHASES = {
    "A": {  # "Phase A (Completed)": frozen backbone, heads at "a relatively high learning rate (e.g., 3e-4)"
        "model.freeze_pert_backbone": True,
        "training.unfreeze_top_blocks": 0,
        "model.decoder_weight": 0.5,
        "optimizer.lr": 3e-4,
    },
    "B": {  # "Phase B": still frozen, decoder weight 1.0, target lr 5e-5 with 5% warmup, cosine to 10%
        "model.freeze_pert_backbone": True,
        "training.unfreeze_top_blocks": 0,
        "model.decoder_weight": 1.0,
        "optimizer.lr": 5e-5,
        "training.warmup_ratio": 0.05,
        "training.min_lr_ratio": 0.1,
    },
    "C": {  # "Phase C": "unfreeze ... the top 2-3 Transformer blocks"; LLRD heads 3e-4, top 1e-4
        "model.freeze_pert_backbone": True,
        "training.unfreeze_top_blocks": 3,
        "model.decoder_weight": 1.0,
        "optimizer.lr": 3e-4,
        "optimizer.top_blocks_lr_factor": 1e-4 / 3e-4,
    },
    "D": {  # "Phase D": "Gradually unfreeze the middle layers"; lower/middle at 3e-5
        "model.freeze_pert_backbone": True,
        "training.unfreeze_top_blocks": 6,
        "model.decoder_weight": 1.0,
        "optimizer.lr": 3e-4,
        "optimizer.top_blocks_lr_factor": 1e-4 / 3e-4,
        "optimizer.lower_blocks_lr_factor": 3e-5 / 3e-4,
    },
    "E": {  # "Phase E": all layers, backbone "further reduced to 1e-5 to 3e-5", heads "2e-4"
        "model.freeze_pert_backbone": False,
        "model.decoder_weight": 1.0,
        "optimizer.lr": 2e-4,
        "optimizer.top_blocks_lr_factor": 3e-5 / 2e-4,
        "optimizer.lower_blocks_lr_factor": 1e-5 / 2e-4,
    },
}

# The config path of a phase's starting weights: the previous phase's best checkpoint (Phase A's, the pretrained model).
WARM_START = "model.checkpoint"

# What the phases share once "The First Health Check" was applied: energy loss, clipping at 1.0,
# weight decay 1e-3 ("the lower end of the recommended range"), Phase B's schedule, and LLRD's ratios.
AFTER_HEALTH_CHECK = {
    "model.loss": "energy",
    "training.gradient_clip_val": 1.0,
    "training.warmup_ratio": 0.05,
    "training.min_lr_ratio": 0.1,
    "optimizer.weight_decay": 1e-3,
    "optimizer.top_blocks_lr_factor": 1e-4 / 3e-4,
    "optimizer.lower_blocks_lr_factor": 3e-5 / 3e-4,
}

BASELINES = {
    # Phase A as it ran, before the health check: "gradient_clip_val: 10", "weight_decay: 5e-4"
    "Phase A": {**AFTER_HEALTH_CHECK, **PHASES["A"], "training.gradient_clip_val": 10.0, "optimizer.weight_decay": 5e-4},
    **{f"Phase {phase}": {**AFTER_HEALTH_CHECK, **PHASES[phase]} for phase in "BCDE"},
}

# The embedding head first, as the log's val_loss, then the gene decoder ("crucial for the final
# evaluation"). Both are scored by energy distance, the log's loss, because model.loss is a knob:
# a trial's val_loss is in its own loss's units (sinkhorn, MSE), which do not rank against each other.
# With model.loss energy, val_energy_distance is val_loss and val_decoder_energy_distance val_decoder_loss.
OBJECTIVES = [
    Objective("val_energy_distance", "minimize"),
    Objective("val_decoder_energy_distance", "minimize"),
    Objective("val_loss", "minimize"),  # the embedding head in the trial's own loss (the log's val_loss)
    Objective("val_decoder_loss", "minimize"),  # the gene decoder in the trial's own loss (the log's val/decoder_loss)
]

# Measured with one thread a trial: an epoch (48 training sets in 6 batches, 16 validation sets) is
# 0.15-0.22 s of CPU with the energy or MSE loss, 0.3-0.35 s with sinkhorn; pretraining the source
# checkpoint once (20 epochs of 144 sets) takes ~10-25 s. The whole default study, 40 trials with
# rungs at 3, 9 and 27, ran in 3 minutes on the shared 2-core machine.
BUDGET = Budget(max_epochs=30, grace_period=3, reduction_factor=3, trials=40)

# One CPU core a trial, two side by side on a 2-core machine. The log's GPU profile is one L4-class
# GPU on a g2-standard-8 (8 vCPUs): Resources(cpus=8, gpus=1).
RESOURCES = Resources(cpus=1, gpus=0)
