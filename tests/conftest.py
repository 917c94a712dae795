"""Shared fixtures: a real local Ray, real SQLite storages, the tiny test spaces, and the CLI as a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SPACES = Path(__file__).parent / "spaces"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Train on one thread, as a Ray trial with one CPU does: on two shared cores, two threads can run 20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray for the in-process studies of the session (2 CPUs, like this machine)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def storage_url(tmp_path):
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture
def ray_storage(tmp_path, monkeypatch):
    """Ray's experiment folders (checkpoints) under the test's own folder."""
    folder = tmp_path / "ray"
    monkeypatch.setenv("TUNE_RAY_STORAGE", str(folder))
    return folder


def tune_cli(*args, cwd, env=None, timeout=300, check=False):
    """Run `python -m studies ARGS` as a user would run `tune ARGS`."""
    result = subprocess.run(
        [sys.executable, "-m", "studies", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"tune {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result
