"""Trainer epoch time and memory: every model family at the config its study trains first.

Each search space's first baseline (the log's earliest documented config: Vesuvius v1, CABBI 016,
AbAg v1, the flyvis "baseline experiment", STATE Phase A) trains in a fresh process with one torch
thread, as a Ray trial with one CPU does. Epoch time is the median over the epochs after the first
(the first pays for lazy set-up); it includes the validation pass, as the trainer reports it.
Peak memory is the process's peak resident set (``ru_maxrss``): the interpreter, torch and
Lightning (about 0.3 GB before any model) plus the model, its data and training.

On a machine with a CUDA GPU the families also train at the log's sizes on the GPU (peak
``torch.cuda.max_memory_allocated``), and the flyvis model is packed: as many trials at once as the
GPU's memory holds (one CPU core each), timed against one trial alone.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import statistics
from pathlib import Path
from typing import Any

TITLE = "Trainer epoch time and memory"
SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
FAMILIES = {  # search space: its trainer family
    "vesuvius": "segmentation",
    "cabbi": "regression",
    "abag": "regression",
    "flyvis": "flyvis",
    "state_tahoe": "state_transition",
}
EPOCHS = 5
SMOKE_EPOCHS = 2
SMOKE_SIZES = {  # tiny data, so that a smoke run trains each family in seconds
    "vesuvius": {"data.num_volumes": 5, "patch_size": [16, 16, 16]},
    "cabbi": {"data.n_samples": 640},
    "abag": {"data.n_samples": 640},
    "flyvis": {"data.num_columns": 8},
    "state_tahoe": {"model.checkpoint": None},  # from scratch: no source pretraining
}
LOG_SIZES = {  # the logs' own sizes, as each space's docstring documents them; CABBI and AbAg train at theirs already
    # The log's 128^3 patches and 22.6M-parameter U-Net; 10 synthetic volumes (8 train, 2 validation) keep data generation short.
    "vesuvius": {"patch_size": [128, 128, 128], "model.base_channels": 32, "model.depth": 5, "data.num_volumes": 10},
    "cabbi": {},
    "abag": {},
    # The log's 256 hidden units; 721 columns, flyvis' own count (4 326 neurons; the log's recording has 13 741).
    "flyvis": {"encoder_params.num_hidden_units": 256, "decoder_params.num_hidden_units": 256, "data.num_columns": 721},
    # ST-Tahoe's width, set length, embedding and genes; from scratch, as pretraining is once per study, not per epoch.
    "state_tahoe": {
        "model.hidden_dim": 696,
        "model.cell_set_len": 512,
        "data.embedding_dims": 2058,
        "data.num_genes": 18080,
        "model.checkpoint": None,
    },
}
PACKED = "flyvis"
MB = 2**20


def train_once(space_name: str, overrides: dict[str, Any], epochs: int, accelerator: str) -> dict[str, Any]:
    """Train the space's first baseline for ``epochs`` in this (fresh) process; its epoch times and peak memory."""
    import resource

    import torch

    from studies.space import load_space
    from trainers.base import fit

    torch.set_num_threads(1)  # a Ray trial with one CPU trains on one thread
    space = load_space(SPACES / f"{space_name}.py")
    baseline, params = next(iter(space.baselines.items()))
    config = space.training_config({**params, **overrides})
    ready_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    epoch_seconds: list[float] = []
    fit(
        space.trainer(), config, max_epochs=epochs, accelerator=accelerator, devices=1,
        report=lambda metrics, checkpoint_dir: epoch_seconds.append(metrics["epoch_seconds"]),
    )  # fmt: skip
    measured = {
        "baseline": baseline,
        "epoch_seconds": [round(s, 4) for s in epoch_seconds],
        "ready_rss_mb": round(ready_kb / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if accelerator == "gpu":
        free, total = torch.cuda.mem_get_info()
        measured["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / MB, 1)
        measured["gpu_used_mb"] = round((total - free) / MB, 1)  # the CUDA context and allocator's cache included
        measured["gpu_total_mb"] = round(total / MB, 1)
    return measured


def fresh_processes(jobs: list[tuple], context: multiprocessing.context.BaseContext) -> list[dict[str, Any]]:
    """``train_once`` for each job, all at once, each in a process of its own."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=len(jobs), mp_context=context, max_tasks_per_child=1) as pool:
        return [future.result() for future in [pool.submit(train_once, *job) for job in jobs]]


def median_after_first(epoch_seconds: list[float]) -> float:
    return statistics.median(epoch_seconds[1:])


def family_row(space_name: str, size: str, accelerator: str, measured: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "epoch",
        "space": space_name,
        "family": FAMILIES[space_name],
        "size": size,
        "device": accelerator,
        "epoch_seconds_median": round(median_after_first(measured["epoch_seconds"]), 4),
        **measured,
    }


def packing_row(context, epochs: int, alone: dict[str, Any], max_epochs: int) -> dict[str, Any]:
    """As many flyvis trials at once as GPU memory holds (one CPU core each), against one trial alone."""
    fits = int(alone["gpu_total_mb"] // alone["gpu_used_mb"])
    at_once = max(1, min(fits, os.cpu_count() or 1))
    packed = fresh_processes([(PACKED, LOG_SIZES[PACKED], epochs, "gpu")] * at_once, context)
    alone_seconds = median_after_first(alone["epoch_seconds"])
    packed_seconds = statistics.mean(median_after_first(m["epoch_seconds"]) for m in packed)
    return {
        "kind": "packing",
        "space": PACKED,
        "gpu_total_mb": alone["gpu_total_mb"],
        "gpu_used_per_trial_mb": alone["gpu_used_mb"],
        "fit_by_memory": fits,
        "trials_at_once": at_once,
        "epoch_seconds_alone": round(alone_seconds, 4),
        "epoch_seconds_packed": round(packed_seconds, 4),
        "max_epochs": max_epochs,
        "trials_per_hour_alone": round(3600 / (max_epochs * alone_seconds), 1),
        "trials_per_hour_packed": round(at_once * 3600 / (max_epochs * packed_seconds), 1),
    }


def measure(smoke: bool = False) -> list[dict]:
    import torch

    from studies.space import load_space

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "pytorch_lightning"])  # each fresh process starts with them imported
    epochs = SMOKE_EPOCHS if smoke else EPOCHS
    size = "smoke" if smoke else "default"
    rows = []
    for space_name in FAMILIES:
        overrides = SMOKE_SIZES[space_name] if smoke else {}
        [measured] = fresh_processes([(space_name, overrides, epochs, "cpu")], context)
        rows.append(family_row(space_name, size, "cpu", measured))
    if not torch.cuda.is_available():
        return [*rows, {"kind": "no_gpu"}]
    gpu_rows = []
    for space_name in FAMILIES:
        [measured] = fresh_processes([(space_name, LOG_SIZES[space_name], epochs, "gpu")], context)
        gpu_rows.append(family_row(space_name, "log", "gpu", measured))
    [alone] = [r for r in gpu_rows if r["space"] == PACKED]
    max_epochs = load_space(SPACES / f"{PACKED}.py").budget.max_epochs
    return [*rows, *gpu_rows, packing_row(context, epochs, alone, max_epochs)]


def table(rows: list[dict]) -> str:
    lines = [
        "| space | family | baseline | size | device | epochs | median epoch s | peak RSS MB | RSS before training MB | peak GPU MB |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in (r for r in rows if r["kind"] == "epoch"):
        gpu = f"{r['peak_gpu_mb']:,.0f}" if "peak_gpu_mb" in r else "-"
        lines.append(
            f"| {r['space']} | {r['family']} | {r['baseline']} | {r['size']} | {r['device']} | {len(r['epoch_seconds'])} "
            f"| {r['epoch_seconds_median']:.3f} | {r['peak_rss_mb']:,.0f} | {r['ready_rss_mb']:,.0f} | {gpu} |"
        )
    lines.append("")
    if any(r["kind"] == "no_gpu" for r in rows):
        lines.append(
            "No GPU was available for this run: the log-size GPU epochs, GPU memory and flyvis packing were not measured."
        )
    for r in (r for r in rows if r["kind"] == "packing"):
        lines += [
            f"flyvis packing: each trial holds {r['gpu_used_per_trial_mb']:,.0f} MB of the GPU's {r['gpu_total_mb']:,.0f} MB "
            f"(CUDA context included), so {r['fit_by_memory']} fit by memory; {r['trials_at_once']} ran at once (one CPU core each).",
            "",
            "| trials on one GPU | median epoch s | trials per hour (of max_epochs each) |",
            "|---:|---:|---:|",
            f"| 1 | {r['epoch_seconds_alone']:.3f} | {r['trials_per_hour_alone']:,.1f} |",
            f"| {r['trials_at_once']} | {r['epoch_seconds_packed']:.3f} | {r['trials_per_hour_packed']:,.1f} |",
        ]
    return "\n".join(lines)


def plots(rows: list[dict]) -> dict:
    from plotly.subplots import make_subplots

    epochs = [r for r in rows if r["kind"] == "epoch"]
    labels = [f"{r['space']} ({r['device']}, {r['size']})" for r in epochs]
    figure = make_subplots(rows=1, cols=2, subplot_titles=("median epoch (s)", "peak RSS (MB)"))
    figure.add_bar(x=labels, y=[r["epoch_seconds_median"] for r in epochs], row=1, col=1, showlegend=False)
    figure.add_bar(x=labels, y=[r["peak_rss_mb"] for r in epochs], row=1, col=2, showlegend=False)
    figure.update_layout(title="Each trainer at its first baseline, one torch thread", template="plotly_white")
    return {"epoch_time_memory": figure}


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    main(["--only", "trainers", *sys.argv[1:]])
