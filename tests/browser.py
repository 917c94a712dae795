"""What the report and browser tests share: one finished tiny study per session, a small stored study with a
failed trial, a headless Chromium, and the dashboard as a server.

Chromium is Debian's ``chromium`` package (``apt-get install chromium``) at /usr/bin/chromium, or the
executable named by $TUNE_CHROMIUM; tests that need it skip, saying so, when it is absent. Playwright
for Python drives it; its own browser downloads (``playwright install``) are never used.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from conftest import REPO, SPACES
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from studies.report.png import CHROMIUM_VARIABLE, DEFAULT_CHROMIUM

CHROMIUM = os.environ.get(CHROMIUM_VARIABLE) or DEFAULT_CHROMIUM
ARTIFACTS = REPO / "test-artifacts"
# What works headless as root in a container: no sandbox, no GPU, nothing fetched from the network.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (or set {CHROMIUM_VARIABLE} to a Chrome/Chromium executable)",
)


def finished_tiny_study(tmp_path_factory, tune_here) -> Path:
    """The folder of one `tune run` of the tiny space, made once per session for every module that asks."""
    folder = tmp_path_factory.getbasetemp() / "tiny-study"
    finished = folder / "finished"
    if not finished.exists():
        folder.mkdir(exist_ok=True)
        tune_here("run", SPACES / "tiny.py", "--seed", 3, cwd=folder, check=True)
        finished.touch()
    return folder


def stored_small_study(storage: str | None = None) -> optuna.Study:
    """One COMPLETE, one PRUNED and one FAIL trial that recorded improvement_over_constant, no ASHA settings:
    stored through Optuna's API in the bridge's vocabulary, as no real run fails and prunes on cue in seconds."""
    study = optuna.create_study(study_name="small", direction="minimize", storage=storage)
    study.set_user_attr("objectives", [["val_loss", "minimize"], ["improvement_over_constant", "maximize"]])
    study.set_user_attr("created_by", "tune run search_spaces/flyvis.py --trials 3")
    lr = {"training.learning_rate": FloatDistribution(1e-5, 1e-2, log=True)}
    metrics = {"metric.val_loss": 0.2, "metric.improvement_over_constant": 0.6, "metric.train_loss": 0.25}
    study.add_trial(create_trial(
        state=TrialState.COMPLETE, value=0.2, params={"training.learning_rate": 1e-3}, distributions=lr,
        intermediate_values={1: 0.4, 2: 0.3, 3: 0.25, 4: 0.2},
        user_attrs={**metrics, "epochs": 4, "train_seconds": 8.0, "baseline": "baseline experiment"},
    ))  # fmt: skip
    study.add_trial(create_trial(
        state=TrialState.PRUNED, params={"training.learning_rate": 1e-4}, distributions=lr, intermediate_values={1: 0.9},
        user_attrs={"metric.val_loss": 0.9, "metric.improvement_over_constant": 0.1, "epochs": 1, "train_seconds": 3.0},
    ))  # fmt: skip
    study.add_trial(create_trial(
        state=TrialState.FAIL, params={"training.learning_rate": 5e-3}, distributions=lr,
        user_attrs={"epochs": 2, "train_seconds": 4.0, "fail_reason": "RuntimeError: injected failure at epoch 2"},
    ))  # fmt: skip
    return study


def artifact(name: str) -> Path:
    """Where a screenshot is kept for a person to look at after the run (test-artifacts/, gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    """A page in a fresh headless Chromium with its own throwaway profile."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": width, "height": height},
            )  # fmt: skip
            try:
                yield context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def dashboard_server(folder: Path):
    """`tune dashboard` on a free port of 127.0.0.1, serving the study storage in ``folder``; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "studies", "dashboard", "--port", str(port)],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/studies", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, "tune dashboard exited before it served"
                assert time.monotonic() < deadline, "dashboard did not answer within 60 s"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
