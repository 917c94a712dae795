"""Storage at scale: what a trial's record costs the driver, and what reading a large study costs a person.

A study of the Vesuvius space (22 knobs, two objectives, seven baselines) is made as `tune run` makes
it (``studies.driver.run.open_study``) in a SQLite file and in an Optuna journal file. Its trials are written
by tune's own ``OptunaBridge`` as a Ray run drives it: ask and suggest with the default search method (and, on
SQLite, with TPE for comparison), the training config,
one intermediate value and a checkpoint path per epoch, every final metric, tell. Epochs follow ASHA's
rungs of the space (2 of 3 trials stop at epoch 2, 2 of 9 at 6, 1 of 9 trains all 18).

Ask+tell latency is timed over a window of trials written when the study reaches each size; between
windows the study is filled with copies of the trials already written (the journal's through
``Study.add_trials``, SQLite's as SQL rows: see :func:`copy_rows_in_sqlite`), the same records
without paying the sampler for each. On the largest study, the reading
commands run as a user runs them, each a fresh ``python -m studies`` process, and the dashboard is
timed from its start to its first answers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
from tqdm import tqdm

from objectives.segmentation import COMPONENTS, METRICS
from studies.driver.bridge import OptunaBridge
from studies.driver.run import RunOptions, open_study
from studies.records import ATTR_BASELINE, RESULT_DEVICE, RESULT_EPOCH, RESULT_EPOCH_SECONDS
from studies.samplers import DEFAULT_SAMPLER, SAMPLERS, make_sampler
from studies.space import AshaSettings, load_space

TITLE = "Storage at scale"
REPO = Path(__file__).resolve().parent.parent
SPACE = REPO / "search_spaces" / "vesuvius.py"
SIZES = (100, 1_000, 10_000)
WINDOW = 40  # trials timed at each size; their p95 is the third-slowest
SMOKE_SIZES = (24, 40)
SMOKE_WINDOW = 4
STORAGES = {"sqlite": ("sqlite:///", "studies.db"), "journal": ("journal:", "studies.log")}  # URL prefix, file
CLI_COMMANDS = {
    "tune ls": ["ls"],
    "tune show": ["show", "{study}", "--top", "20"],
    "tune best": ["best", "{study}", "--by", "class_balance_error", "--where", "dice=0..1"],
    "tune export": ["export", "{study}", "--by", "class_balance_error", "-o", "{folder}/best.yaml"],
}
DASHBOARD_LIST = "dashboard: first /api/studies"
DASHBOARD_DETAIL = "dashboard: study with all trials"
METRIC_NAMES = ("train_loss", "val_loss", "val_weighted_loss", *(f"val_{name}" for name in COMPONENTS), *METRICS)


def trial_epochs(index: int, asha: AshaSettings) -> int:
    """Epochs trial ``index`` trains: every trial reaches ASHA's first rung, one in reduction_factor goes on to the next."""
    stops = sorted({*asha.rungs, asha.max_epochs})
    reached = 0
    while reached + 1 < len(stops) and index % asha.reduction_factor == 0:
        index //= asha.reduction_factor
        reached += 1
    return stops[reached]


def epoch_result(epoch: int, rng) -> dict:
    """One validation epoch's result as the trainable reports it: every metric the segmentation trainer logs."""
    result = {name: float(rng.uniform(0.05, 1.0) / epoch**0.3) for name in METRIC_NAMES}
    return {**result, RESULT_EPOCH: epoch, RESULT_EPOCH_SECONDS: float(rng.uniform(1.0, 1.3)), RESULT_DEVICE: "cpu"}


class TimedSampler(optuna.samplers.BaseSampler):
    """A search method with a stopwatch: the seconds it spends choosing (the rest of an ask is the storage's)."""

    def __init__(self, inner: optuna.samplers.BaseSampler):
        self.inner = inner
        self.seconds = 0.0

    def _timed(self, method, *args):
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def infer_relative_search_space(self, study, trial):
        return self._timed(self.inner.infer_relative_search_space, study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._timed(self.inner.sample_relative, study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._timed(self.inner.sample_independent, study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._timed(self.inner.before_trial, study, trial)

    def after_trial(self, study, trial, state, values):
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self):
        self.inner.reseed_rng()


def write_trial(bridge: OptunaBridge, asha: AshaSettings, index: int, rng) -> tuple[float, float, float]:
    """One trial through the bridge as Ray drives it; returns (ask seconds, tell seconds, choice seconds).

    Ask: the sampler's choice, its params and the training config stored. Tell: every epoch's value
    and checkpoint path, then the final metrics and state. Choice: the part of the ask the search method spent.
    """
    trial_id = f"bench_{index:05d}"
    timer = bridge.study.sampler
    chosen_before = timer.seconds
    started = time.perf_counter()
    bridge.suggest(trial_id)
    asked = time.perf_counter()
    epochs = trial_epochs(index, asha)
    for epoch in range(1, epochs + 1):
        result = epoch_result(epoch, rng)
        bridge.on_trial_result(trial_id, result)
        bridge.record_checkpoint(trial_id, f"tune_runs/ray/vesuvius-20250101-000000/{trial_id}/checkpoint_{epoch:06d}", epoch)
    bridge.on_trial_complete(trial_id, result)
    return asked - started, time.perf_counter() - asked, timer.seconds - chosen_before


def copies_of(study: optuna.Study, count: int) -> list[optuna.trial.FrozenTrial]:
    """``count`` copies of the finished trials written so far, baselines left out (a study holds each once)."""
    templates = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and ATTR_BASELINE not in t.user_attrs]
    return [templates[i % len(templates)] for i in range(count)]


# Every table of Optuna's RDB schema that holds rows of a trial, with its columns besides its own key and trial_id.
TRIAL_ROWS = {
    "trial_params": ("param_name", "param_value", "distribution_json"),
    "trial_values": ("objective", "value", "value_type"),
    "trial_user_attributes": ('"key"', "value_json"),
    "trial_system_attributes": ('"key"', "value_json"),
    "trial_intermediate_values": ("step", "intermediate_value", "intermediate_value_type"),
}


def copy_rows_in_sqlite(path: Path, size: int) -> None:
    """Copies of the finished, non-baseline trials until the SQLite study holds ``size`` trials, copied as SQL rows.

    By hand because Optuna stores a copied trial (``add_trials``) in ~110 statements, about 0.1 s of CPU a trial:
    a quarter of an hour for 10 000 trials. The storage reads the new rows like any other driver's trials.
    """
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as db, db:
        db.execute("CREATE TEMP TABLE copies (old INTEGER, new INTEGER, number INTEGER)")
        while (count := db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]) < size:
            top = db.execute("SELECT MAX(trial_id) FROM trials").fetchone()[0]
            templates = db.execute(
                "SELECT trial_id FROM trials WHERE state IN ('COMPLETE', 'PRUNED', 'FAIL') AND trial_id NOT IN "
                '(SELECT trial_id FROM trial_user_attributes WHERE "key" = ?) ORDER BY trial_id LIMIT ?',
                (ATTR_BASELINE, size - count),
            ).fetchall()
            if not templates:
                raise RuntimeError(f"{path} holds no finished trial besides the baselines to copy")
            db.execute("DELETE FROM copies")
            db.executemany(
                "INSERT INTO copies VALUES (?, ?, ?)", [(old, top + 1 + i, count + i) for i, (old,) in enumerate(templates)]
            )
            db.execute(
                "INSERT INTO trials (trial_id, number, study_id, state, datetime_start, datetime_complete) "
                "SELECT c.new, c.number, t.study_id, t.state, t.datetime_start, t.datetime_complete FROM trials t JOIN copies c ON t.trial_id = c.old"
            )
            for table, columns in TRIAL_ROWS.items():
                listed = ", ".join(columns)
                copied = ", ".join(f"x.{column}" for column in columns)
                db.execute(
                    f"INSERT INTO {table} (trial_id, {listed}) SELECT c.new, {copied} FROM {table} x JOIN copies c ON x.trial_id = c.old"
                )


def fill(study: optuna.Study, storage: str, path: Path, size: int) -> None:
    """Copies of the trials written so far until the study holds ``size`` trials."""
    if storage == "sqlite":
        copy_rows_in_sqlite(path, size)
    else:
        study.add_trials(copies_of(study, size - len(study.get_trials(deepcopy=False))))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def grow_and_time(storage: str, path: Path, sizes: tuple[int, ...], window: int, sampler: str) -> tuple[list[dict], str]:
    """Latency rows at each size for one storage and search method; returns them and the study's name."""
    import numpy as np

    space = load_space(SPACE)
    url = STORAGES[storage][0] + str(path)
    options = RunOptions(storage=url, study=f"{space.name}-{sampler}", seed=0, command=f"tune run search_spaces/{SPACE.name} --storage {url}")
    timer = TimedSampler(make_sampler(sampler, space, options.sampler_settings()))
    study = open_study(space, options, timer)
    asha = space.asha(brackets=SAMPLERS[sampler].brackets, gated=SAMPLERS[sampler].gated)
    bridge = OptunaBridge(
        study, space, max_epochs=asha.max_epochs, target=sizes[-1], first_rungs=asha.first_rungs, gate_rung=asha.gate_rung
    )
    choice = bridge.first_rung_choice
    if choice:  # choosing a new trial's bracket, and whether the gate applies to it, is the search method's time too
        choice.for_new_trial = functools.partial(timer._timed, choice.for_new_trial)
        choice.misleads = functools.partial(timer._timed, choice.misleads)
    rng = np.random.default_rng(0)
    rows = []
    # Written whole before any copy: the baselines, then one bracket of ASHA (for 18 epochs, rungs 2 and 6: 6, 2 and 1 trials).
    seed = len(space.baselines) + asha.reduction_factor ** (len(asha.rungs) - 1)
    with tqdm(total=sizes[-1], desc=f"{storage} study", unit="trial", leave=False) as bar:
        for index in range(seed):
            write_trial(bridge, asha, index, rng)
            bar.update(1)
        for size in sizes:
            fill(study, storage, path, size - window)
            bar.update(size - window - bar.n)
            timings = [write_trial(bridge, asha, size - window + i, rng) for i in range(window)]
            bar.update(window)
            asks, tells, choices = zip(*timings)
            for part, seconds in (("choice", choices), ("ask", asks), ("tell", tells), ("ask+tell", [a + t for a, t in zip(asks, tells)])):
                rows.append(
                    {
                        "kind": "latency",
                        "storage": storage,
                        "sampler": sampler,
                        "trials": size,
                        "part": part,
                        "window": window,
                        "median_ms": round(1000 * statistics.median(seconds), 2),
                        "p95_ms": round(1000 * percentile(seconds, 0.95), 2),
                    }
                )
    return rows, study.study_name


def run_command(args: list[str]) -> float:
    """Seconds one `tune` command takes as a fresh process; raises with its error if it fails."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "studies", *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"tune {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_dashboard(url: str) -> dict[str, float]:
    """Seconds from starting `tune dashboard` to its first study list, and to the study's detail with every trial."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "studies", "dashboard", "--storage", url, "--port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=600) as answer:
                    studies = json.load(answer)["study_summaries"]
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"tune dashboard exited before it answered: {server.stderr.read().strip()[-500:]}")
                time.sleep(0.05)
        listed = time.perf_counter() - started
        with urllib.request.urlopen(f"{base}/api/studies/{studies[0]['study_id']}", timeout=600) as answer:
            detail = json.load(answer)
        if not detail["trials"]:
            raise RuntimeError("the dashboard answered with no trials")
        return {DASHBOARD_LIST: listed, DASHBOARD_DETAIL: time.perf_counter() - started}
    finally:
        server.terminate()
        server.wait(timeout=30)


def time_readers(storage: str, url: str, study: str, folder: Path, trials: int) -> list[dict]:
    timings = {
        name: run_command([part.format(study=study, folder=folder) for part in args] + ["--storage", url])
        for name, args in CLI_COMMANDS.items()
    }
    timings.update(time_dashboard(url))
    return [
        {"kind": "reader", "storage": storage, "trials": trials, "command": name, "seconds": round(s, 3)}
        for name, s in timings.items()
    ]


def measure(smoke: bool = False) -> list[dict]:
    sizes, window = (SMOKE_SIZES, SMOKE_WINDOW) if smoke else (SIZES, WINDOW)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="storage_scale_") as tmp:
        for storage, (prefix, file_name) in STORAGES.items():
            folder = Path(tmp) / storage
            folder.mkdir()
            if storage == "sqlite" and DEFAULT_SAMPLER != "tpe":  # the earlier default, for comparison
                rows += grow_and_time(storage, folder / f"tpe-{file_name}", sizes, window, "tpe")[0]
            latency, study = grow_and_time(storage, folder / file_name, sizes, window, DEFAULT_SAMPLER)
            rows += latency
            rows += time_readers(storage, prefix + str(folder / file_name), study, folder, sizes[-1])
    return rows


def table(rows: list[dict]) -> str:
    latency = [r for r in rows if r["kind"] == "latency"]
    readers = [r for r in rows if r["kind"] == "reader"]
    lines = [
        "Per trial, as tune's driver writes it (choice: the search method's own time; ask: that and the stored params and "
        "config; tell: every epoch's value "
        f"and checkpoint, final metrics, state), timed over the last {latency[0]['window']} trials written at each size.",
        "",
        "| storage | search method | trials | choice median ms | choice p95 ms | ask median ms | ask p95 ms | tell median ms "
        "| tell p95 ms | ask+tell median ms | ask+tell p95 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["storage"], method_of(r), r["trials"], r["part"]): r for r in latency}
    for storage, sampler, trials in dict.fromkeys((r["storage"], method_of(r), r["trials"]) for r in latency):
        cells = [
            f"{by_key[(storage, sampler, trials, part)][stat]:.1f}" if (storage, sampler, trials, part) in by_key else "-"
            for part in ("choice", "ask", "tell", "ask+tell")
            for stat in ("median_ms", "p95_ms")
        ]
        lines.append(f"| {storage} | {sampler} | {trials:,} | " + " | ".join(cells) + " |")
    storages = list(dict.fromkeys(r["storage"] for r in readers))
    seconds = {(r["storage"], r["command"]): r["seconds"] for r in readers}
    lines += [
        "",
        f"Reading the {readers[0]['trials']:,}-trial study: seconds of wall time, each command a fresh process "
        "(interpreter and imports included), the dashboard from its start.",
        "",
        "| command | " + " | ".join(f"{s} s" for s in storages) + " |",
        "|---|" + "---:|" * len(storages),
    ]
    for command in dict.fromkeys(r["command"] for r in readers):
        lines.append(f"| {command} | " + " | ".join(f"{seconds[(s, command)]:.2f}" for s in storages) + " |")
    return "\n".join(lines)


def method_of(row: dict) -> str:
    """The search method a latency row was measured with (rows from before methods were recorded used TPE)."""
    return row.get("sampler", "tpe")


def plots(rows: list[dict]) -> dict:
    import plotly.graph_objects as go

    figure = go.Figure()
    latency = [r for r in rows if r["kind"] == "latency" and r["part"] == "ask+tell"]
    for storage, sampler in dict.fromkeys((r["storage"], method_of(r)) for r in latency):
        dash = "solid" if storage == "sqlite" else "dash"
        points = sorted(
            (r["trials"], r["median_ms"], r["p95_ms"]) for r in latency if r["storage"] == storage and method_of(r) == sampler
        )
        trials, medians, p95s = zip(*points)
        figure.add_scatter(
            x=trials, y=medians, name=f"{storage}, {sampler}: median", mode="lines+markers", line={"dash": dash},
            error_y={"type": "data", "symmetric": False, "array": [p - m for p, m in zip(p95s, medians)], "arrayminus": [0] * len(trials)},
        )  # fmt: skip
    figure.update_layout(
        title="Ask+tell per trial as the study grows (bar to p95)", xaxis={"title": "trials in the study", "type": "log"},
        yaxis={"title": "ms per trial"}, template="plotly_white",
    )  # fmt: skip
    return {"latency": figure}


if __name__ == "__main__":
    import sys

    from benchmarks.__main__ import main

    main(["--only", "storage_scale", *sys.argv[1:]])
