"""`tune` as a user runs it, in its own process, on a local Ray started with the resources a test declares.

Ray is told it has GPUs (``ray.init(num_gpus=N)``) where this machine has none: Ray then schedules and hands
out GPU ids (CUDA_VISIBLE_DEVICES) as on a GPU machine, while torch, finding no CUDA, trains on CPU.
The process of its own keeps this Ray apart from the test session's Ray; the Ray processes are its descendants.
"""

import os
import subprocess
import sys

_RUN_TUNE = """
import sys, ray
from studies.cli import main
ray.init(address="local", num_cpus=int(sys.argv[1]), num_gpus=int(sys.argv[2]), include_dashboard=False, log_to_driver=False)
sys.exit(main(sys.argv[3:]))
"""


def start_tune(*args, num_cpus: int, num_gpus: int = 0, env: dict | None = None, cwd) -> subprocess.Popen:
    """Start `tune ARGS` on a fresh local Ray with ``num_cpus`` CPUs and ``num_gpus`` declared GPUs."""
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_TUNE, str(num_cpus), str(num_gpus), *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# Only a hung run is stopped: a 4-trial run of 32 s took 298 s on 2 cores shared with 4 busy processes (its workers start slowly).
RUN_LIMIT_S = 540  # under pytest's 600 s a test


def run_tune(*args, num_cpus: int, num_gpus: int = 0, env: dict | None = None, cwd, timeout: float = RUN_LIMIT_S) -> str:
    """Run `tune ARGS` to its end as :func:`start_tune` starts it; its output, or an AssertionError with it."""
    process = start_tune(*args, num_cpus=num_cpus, num_gpus=num_gpus, env=env, cwd=cwd)
    output, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise AssertionError(f"tune {' '.join(map(str, args))} exited {process.returncode}:\n{output[-4000:]}")
    return output
