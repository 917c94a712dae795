"""Writing a chosen trial's full training config as the YAML the researcher's own code reads, and its best-epoch weights."""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path

import optuna
import yaml
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from studies.files import checked_output, write_atomically
from studies.records import (
    ATTR_BASELINE,
    ATTR_BEST_CHECKPOINT,
    ATTR_EPOCHS,
    ATTR_TRAINING_CONFIG,
    METRIC_PREFIX,
    STUDY_SPACE_PATH,
)
from studies.store.catalog import SelectionError


def training_config(trial: FrozenTrial) -> dict:
    stored = trial.user_attrs.get(ATTR_TRAINING_CONFIG)
    if stored is None:
        raise SelectionError(f"trial {trial.number} has no stored training config (it was not run by tune)")
    return json.loads(stored)


def render(study: optuna.Study, trial: FrozenTrial, output: str, checkpoint: str | None = None) -> str:
    """The YAML text: a header saying where it came from and how to train it again (from ``checkpoint``'s weights too), then the config."""
    metrics = {k[len(METRIC_PREFIX) :]: v for k, v in trial.user_attrs.items() if k.startswith(METRIC_PREFIX)}
    space_path = study.user_attrs.get(STUDY_SPACE_PATH, "SPACE.py")
    relative = os.path.relpath(space_path)
    space_shown = space_path if relative.startswith("..") else relative
    header = [
        f"Exported by tune from study {study.study_name!r}, trial {trial.number} ({trial.state.name}"
        + (f", baseline {trial.user_attrs[ATTR_BASELINE]}" if ATTR_BASELINE in trial.user_attrs else "")
        + f", {trial.user_attrs.get(ATTR_EPOCHS, '?')} epochs)",
        f"on {datetime.datetime.now().isoformat(timespec='seconds')}.",
        "Metrics at its last epoch: " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(metrics.items())),
        *([f"Its best epoch's weights: {checkpoint} (`--init {checkpoint}` starts training from them)"] if checkpoint else []),
        f"Train it again: tune train {space_shown} --config {output}",
    ]
    body = yaml.safe_dump(training_config(trial), sort_keys=False, default_flow_style=False)
    return "".join(f"# {line}\n" for line in header) + body


def write_export(
    study: optuna.Study,
    trial: FrozenTrial,
    output: str,
    checkpoint: str | None = None,
    artifacts: Path | None = None,
) -> Path:
    """Write the YAML to ``output``; with ``checkpoint``, the trial's best-epoch weights from the ``artifacts`` folder there too.

    Both are checked, and the weights read, before either file is written.
    """
    path = checked_output(output)
    if checkpoint is None:
        write_atomically(path, render(study, trial, output))
        return path
    weights = checked_output(checkpoint)
    artifact_id = trial.user_attrs.get(ATTR_BEST_CHECKPOINT)
    if artifact_id is None:
        raise SelectionError(
            f"trial {trial.number} of {study.study_name} kept no best-epoch weights (a COMPLETE trial keeps them); "
            "drop --checkpoint, or pick another trial with --trial"
        )
    with tempfile.TemporaryDirectory(dir=weights.parent, prefix=f".{weights.name}.") as staging:
        staged = os.path.join(staging, weights.name)
        try:
            store = optuna.artifacts.FileSystemArtifactStore(artifacts)
            optuna.artifacts.download_artifact(artifact_store=store, file_path=staged, artifact_id=artifact_id)
        except ArtifactNotFound as exc:
            raise SelectionError(
                f"the best-epoch weights of trial {trial.number} are not in {artifacts}; "
                "pass the study's artifact folder as $TUNE_ARTIFACTS"
            ) from exc
        write_atomically(path, render(study, trial, output, checkpoint))
        os.replace(staged, weights)
    return path
