"""Writing a chosen trial's full training config as the YAML the researcher's own code reads."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial

from studies.files import checked_output, write_atomically
from studies.records import ATTR_BASELINE, ATTR_EPOCHS, ATTR_TRAINING_CONFIG, METRIC_PREFIX, STUDY_SPACE_PATH
from studies.store.catalog import SelectionError


def training_config(trial: FrozenTrial) -> dict:
    stored = trial.user_attrs.get(ATTR_TRAINING_CONFIG)
    if stored is None:
        raise SelectionError(f"trial {trial.number} has no stored training config (it was not run by tune)")
    return json.loads(stored)


def render(study: optuna.Study, trial: FrozenTrial, output: str) -> str:
    """The YAML text: a header saying where it came from and how to train it again, then the config."""
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
        f"Train it again: tune train {space_shown} --config {output}",
    ]
    body = yaml.safe_dump(training_config(trial), sort_keys=False, default_flow_style=False)
    return "".join(f"# {line}\n" for line in header) + body


def write_export(study: optuna.Study, trial: FrozenTrial, output: str) -> Path:
    path = checked_output(output)
    write_atomically(path, render(study, trial, output))
    return path
