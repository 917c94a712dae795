"""The names under which a study and its trials are stored: the one vocabulary that the bridge
writes and every reader (`tune ls/show/best/export`, the report, the dashboard) reads."""

# Trial user attributes (the dashboard shows them as columns).
ATTR_BASELINE = "baseline"
ATTR_REASON = "fail_reason"
REASON_DIVERGED = "diverged"  # a FAIL whose objective became non-finite: the config's doing, not a crash's
ATTR_PRUNED_BY = "pruned_by"  # why a PRUNED trial was stopped: "RULE: what it showed", one of the rules below
PRUNED_BY_ASHA = "ASHA"  # outside ASHA's top 1/reduction_factor at a rung
PRUNED_BY_REPEAT = "repeat"  # bohb-gated: its first epochs are an earlier trial's exactly
PRUNED_BY_GATE = "gate"  # bohb-gated: at the last rung too far behind the best trial that trained every epoch to pass it
ATTR_TRACEBACK = "traceback"
ATTR_EPOCHS = "epochs"
ATTR_TRAIN_SECONDS = "train_seconds"
ATTR_DEVICE = "device"
ATTR_GPU_IDS = "gpu_ids"  # the GPU ids Ray handed the trial's processes (CUDA_VISIBLE_DEVICES), rank by rank
ATTR_WORLD_SIZE = "world_size"  # training processes of the trial: more than 1 is a DDP trial
ATTR_SPACE_SHA = "space_sha256"
ATTR_CHECKPOINT = "checkpoint"
ATTR_CHECKPOINT_EPOCH = "checkpoint_epoch"
ATTR_FIRST_RUNG = "first_rung"  # where ASHA first judged the trial, when a run chose among brackets
ATTR_CONTINUED_AT_EPOCH = "continued_at_epoch"  # first epoch a continued trial trained after its driver was lost
ATTR_DRIVER = "driver"
ATTR_REPEAT_OF = "repeat_of"  # in a repeat study: the original trial this one re-trains with a new seed
ATTR_BEST_EPOCH = "best_epoch"
ATTR_BEST_EPOCH_METRICS = "best_epoch_metrics"
ATTR_BEST_CHECKPOINT = "best_checkpoint"  # a COMPLETE trial's best-epoch weights: the id of its Optuna artifact
ATTR_TRAINING_CONFIG = "training_config"  # the full nested config as JSON: what `tune export` writes
METRIC_PREFIX = "metric."  # final value of each reported metric: metric.val_loss, metric.dice, ...
# Trial system attributes (hidden from the dashboard's columns).
# + an epoch -> every objective's value there, in OBJECTIVES order: a Pareto study's curves (Optuna's trial.report takes one)
EPOCH_VALUES_PREFIX = "epoch_values:"
RESULT_ERROR = "trial_error"
RESULT_TRACEBACK = "trial_traceback"
RESULT_DEVICE = "device"
RESULT_GPU_IDS = "gpu_ids"
RESULT_WORLD_SIZE = "world_size"
RESULT_EPOCH = "epoch"
RESULT_EPOCH_SECONDS = "epoch_seconds"
# Study user attributes.
STUDY_SPACE_PATH = "space_path"
STUDY_FINGERPRINT = "space_fingerprint"
STUDY_SPACE_SHA = "space_sha256"  # the space file's hash when a run last loaded it: resume and repeat refuse a changed file
STUDY_OBJECTIVES = "objectives"
STUDY_HEADLINES = "headlines"  # the metrics besides the objectives that the space's log judged by: the report shows them
STUDY_BASELINES_QUEUED = "baselines_enqueued"
STUDY_CREATED_BY = "created_by"
STUDY_TRIALS_REQUESTED = "trials_requested"  # the last --trials asked for: what `tune resume` completes
STUDY_SEARCH_METHOD = "search_method"  # {"sampler", "grid_knobs", "grid_base"} of the last run: what `tune resume` uses
STUDY_ASHA = "asha"  # {"max_epochs", "grace_period", "reduction_factor", "brackets"} of the last run: where the rungs are
# {metric: [low, high]} (null for an open side) the search keeps within; each trial's violations are Optuna's `constraints`
STUDY_CONSTRAINTS = "constraints"
STUDY_SETTINGS_STORED = "settings_stored"  # written last when a study is made: one without it was left half-made
STUDY_PHASE = "phase"  # {"prefix", "phase"} of a `tune phases` study: `tune resume` runs that phase again
# Study system attributes.
STUDY_HEARTBEAT_PREFIX = "heartbeat:"  # + a driver's host:pid -> [unix time of its last beat, its beat interval in seconds]
