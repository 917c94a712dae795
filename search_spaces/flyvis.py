"""Flyvis latent evolution model: predicting fly visual system voltages one 20 ms step ahead.

Log: shared/seeds/003_47ed67130df93812.txt ("the log"), a series of LSF grid sweeps of
``src/LatentEvolution/latent.py`` on one A100 each. Knob names are its command-line flags as config
paths (``--training.batch-size`` is ``training.batch_size``); every knob's ``grid`` holds the values
the log swept, so ``--sampler grid`` crosses the log's sweeps (the batch × learning-rate grids of
"Sweep batch size and learning rate with batch norm turned off" and "Add the stimulus" among them).
The data are the trainer's simulated recording (six cell types in 32 columns, 20 ms frames, a moving
visual stimulus); set ``data.path`` to an .npz of voltages and stimulus for a real one.

Objectives are those of the log's tables: the validation MSE, the improvement over the constant
model (``1 - val_loss / constant_baseline_loss``), and the test MSE.
"""

from studies.space import Budget, Categorical, Float, Int, Objective, Resources
from trainers.flyvis import LatentEvolution

TRAINER = LatentEvolution

L1_WEIGHTS = [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1]  # "Add regularization loss": the swept l1 values

CONFIG = {
    # "sweep latent dimensions": 64, 128, 256, 512; "Make latent dim 1": 1
    "latent_dims": Int(1, 512, log=True, grid=[1, 64, 128, 256, 512]),
    "use_stimulus": Categorical([False, True]),  # off until "Add the stimulus" ("Without this it would be impossible to actually predict")
    "encoder_params": {
        "num_hidden_layers": 3,  # the log's latent_default.yaml
        "num_hidden_units": 64,  # the log's 256 for 13741 neurons; 64 for the simulated 192
        "l1_reg_loss": Categorical(L1_WEIGHTS),  # --encoder_params.l1_reg_loss
    },
    "decoder_params": {
        "num_hidden_layers": 3,
        "num_hidden_units": 64,
        "l1_reg_loss": Categorical(L1_WEIGHTS),  # --decoder_params.l1_reg_loss (swept together with the encoder's)
    },
    "evolver_params": {
        "num_hidden_layers": Int(0, 3, grid=[0, 3]),  # 3 by default; "Make latent dim 1" uses 0
        "num_hidden_units": 64,
    },
    "stimulus_encoder_params": {  # "Add the stimulus": "64 hidden units, 3 hidden layers, 64 output dims"
        "num_hidden_layers": 3,
        "num_hidden_units": 64,
        "num_output_dims": 64,
    },
    "training": {
        # "sweep batch size" and "... with batch norm turned off": 32, 128, 512, 2048; "Add the stimulus": 256, 512, 1024
        "batch_size": Int(32, 2048, log=True, grid=[32, 128, 256, 512, 1024, 2048]),
        # "sweep learning rate" and both batch × lr sweeps: 1e-3 (the old default) down to 1e-6
        "learning_rate": Float(1e-6, 1e-3, log=True, grid=[1e-3, 1e-4, 1e-5, 1e-6]),
        "optimizer": "Adam",
        "use_batch_norm": Categorical([True, False]),  # "Assess impact of normalization": on (unintentionally) until then
        # "Performance benchmark experiments": compiled train_step vs train_step_nocompile (compiles on CUDA only)
        "train_step": Categorical(["train_step", "train_step_nocompile"]),
        "compile_mode": "reduce-overhead",  # "sweep learning rate": max-autotune made jobs fail, reduce-overhead worked
        "use_tf32_matmul": Categorical([True, False]),  # "Performance benchmark experiments"; only CUDA has TF32
        "seed": 42,  # the log's default; "Assess variance in training" repeats 1, 12, 123, 1234, 12345
        "data_split": {  # frames; like the log's split, train skips the burn-in and gaps separate the splits
            "train_start": 100,
            "train_end": 3100,
            "validation_start": 3200,
            "validation_end": 3700,
            "test_start": 3800,
            "test_end": 4300,
        },
    },
    "data": {
        "standardize": True,  # z-score each neuron by its training frames
        "path": None,  # None simulates; an .npz with "voltage" [frames, neurons] and "stimulus" [frames, columns] reads a recording
        "num_columns": 32,
        "frames": 4300,
        "noise_std": 0.02,
        "seed": 0,
    },
}

# The defaults of the log's first sweeps, before any of its findings.
BASELINE_EXPERIMENT = {
    "latent_dims": 256,  # latent_default.yaml
    "use_stimulus": False,  # "Note that we are not adding in the stimulus"
    "encoder_params.l1_reg_loss": 0.0,
    "decoder_params.l1_reg_loss": 0.0,
    "evolver_params.num_hidden_layers": 3,
    "training.batch_size": 128,  # the batch size and learning rate both first sweeps share (their rows match)
    "training.learning_rate": 1e-3,  # "LR 0.001 (default)"
    "training.use_batch_norm": True,  # "I had (unintentionally) used batch normalization"
    "training.train_step": "train_step",
    "training.use_tf32_matmul": True,  # "tf32 didn't make a difference, let's turn it off for now"
}
REPRODUCIBILITY_512 = {  # "Assess variance in training", batch size 512: 5 of 5 seeds reproduce
    **BASELINE_EXPERIMENT,
    "training.batch_size": 512,
    "training.learning_rate": 1e-4,  # "Recommendation: Use learning rate 0.0001"
    "training.use_tf32_matmul": False,
}
USE_BATCH_NORM_FALSE = {  # "Assess impact of normalization": test loss 0.0199, the best so far
    **REPRODUCIBILITY_512,
    "training.learning_rate": 1e-5,  # its losses are those of batch_and_lr_wo_bn's 512 / 1e-5 run
    "training.use_batch_norm": False,
}
BATCH_AND_LR_WO_BN = {  # "Sweep batch size and learning rate with batch norm turned off": "RECOMMENDED CONFIGURATION"
    **USE_BATCH_NORM_FALSE,
    "training.batch_size": 128,
    "training.learning_rate": 1e-4,
}
LATENT1D = {  # "Make latent dim 1": "This completely fails and is worse than the constant model"
    **USE_BATCH_NORM_FALSE,
    "latent_dims": 1,
    "evolver_params.num_hidden_layers": 0,
}
ADD_STIMULUS_LR = {  # "Add the stimulus": "STRONGLY RECOMMEND: Batch size 256 + LR 0.00001", 50.8% over constant
    **USE_BATCH_NORM_FALSE,
    "use_stimulus": True,
    "training.batch_size": 256,
    "training.learning_rate": 1e-5,
}

BASELINES = {
    "baseline experiment": BASELINE_EXPERIMENT,
    "reproducibility_512": REPRODUCIBILITY_512,
    "use_batch_norm false": USE_BATCH_NORM_FALSE,
    "batch_and_lr_wo_bn 128 / 1e-4": BATCH_AND_LR_WO_BN,
    "latent1d": LATENT1D,
    "add_stimulus_lr 256 / 1e-5": ADD_STIMULUS_LR,
}

OBJECTIVES = [
    Objective("val_loss", "minimize"),  # the tables' "Val Loss", by which the log sorts its runs
    Objective("improvement_over_constant", "maximize"),  # the tables' "Improvement vs Constant"
    Objective("test_loss", "minimize"),  # the tables' "Test Loss"
]
# The seed tables' "Test vs Constant" ("Assess variance in training") and "Train Loss" columns, beside the objectives.
HEADLINES = ["test_improvement_over_constant", "train_loss"]

# Measured with one thread a trial: an epoch is 0.14-0.44 s of CPU (0.17 s at batch 512, 0.8 s at
# batch 32, 3000 training frames), 0.5-1 s of wall time on the shared 2-core machine. The simulated
# recording takes 0.5 s per trial process. The best config there, the log's "baseline experiment",
# beats the constant model from epoch 5 and by 33% at epoch 30. The default study (40 trials, rungs
# at 3, 9 and 27, ASHA keeping a third) ran in 5 min 46 s there; with 40 epochs, in 7 min 47 s.
BUDGET = Budget(max_epochs=30, grace_period=3, reduction_factor=3, trials=40)

# One CPU core a trial, two side by side on a 2-core machine. The log's GPU profile is one A100 and
# 12 CPU slots a run: Resources(cpus=12, gpus=1); its ~8-11 GB runs would also pack as gpus=0.25.
RESOURCES = Resources(cpus=1, gpus=0)
