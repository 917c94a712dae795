"""`tune run --address` on a real Ray cluster of two nodes (a head and a worker, both on this machine, started with the
`ray` CLI as the README shows): the driver joins it, its trials run on both nodes, their checkpoints lie in the shared
storage folder."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from conftest import SPACES, tune_cli
from optuna.trial import TrialState

from studies.records import ATTR_CHECKPOINT
from trainers.base import CHECKPOINT_FILE

RAY = Path(sys.executable).parent / "ray"
STARTUP_LIMIT_S = 180  # a guard against a cluster that never comes up, not a measure: two busy cores start Ray slowly
STOP_LIMIT_S = 30  # then SIGKILL: a worker node still waiting for its head ignores SIGTERM
# Ray's view of the cluster, from a driver in a subprocess: the test process keeps no connection (nor token) of this cluster.
PROBE = """
import json, sys, ray
from ray._private.state import actors  # Ray's actor table (its public state API needs the dashboard of ray[default])
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
trials = [actor["Address"]["NodeID"] for actor in actors().values() if actor["ActorClassName"] == "ImplicitFunc"]
print(json.dumps({"nodes": nodes, "trial_actor_nodes": trials}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _probe(address: str, env: dict) -> dict:
    """The cluster's alive node ids and the node id of every trial actor (Tune's ``ImplicitFunc``), alive or ended."""
    answer = subprocess.run([sys.executable, "-c", PROBE, address], env=env, capture_output=True, text=True, timeout=120)
    return json.loads(answer.stdout) if answer.returncode == 0 else {"nodes": [], "error": answer.stderr[-2000:]}


def _start_node(args: list[str], log: Path, env: dict, temp_dir: str) -> subprocess.Popen:
    """One node of the cluster, in its own process group; the ports of its agents are free ones, not Ray's defaults
    (another Ray on this machine may hold those)."""
    agents = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    command = [str(RAY), "start", "--block", *args, "--num-cpus", "1", "--object-store-memory", str(100 * 2**20)]
    command += ["--disable-usage-stats", "--temp-dir", temp_dir, *(str(x) for agent in agents for x in (agent, _free_port()))]
    # A throwaway cluster: nothing to drain on SIGTERM (Ray waits 30 s for that by default).
    env = {**env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop_nodes(nodes: list[subprocess.Popen]) -> None:
    """SIGTERM to each node's process group, then SIGKILL to what outlives the drain. Never `ray stop`: it ends every Ray here."""
    for node in nodes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=STOP_LIMIT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.wait()


def _logs(*logs: Path) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())


def test_tune_run_address_runs_trials_on_every_node_of_a_cluster(tmp_path):
    # One token for all: Ray 2.60's `ray start --head` turns token auth on where ~/.ray/auth_token exists, its clients do not.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head_log, worker_log = tmp_path / "head.log", tmp_path / "worker.log"
    # Ray's sockets live under its temp dir, whose path must stay short (a UNIX socket path holds 107 bytes): not tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="ray-")
    nodes = [_start_node(["--head", "--port", str(port), "--include-dashboard=false"], head_log, env, temp_dir)]
    try:
        nodes.append(_start_node(["--address", address], worker_log, env, temp_dir))
        deadline = time.monotonic() + STARTUP_LIMIT_S
        cluster = {"nodes": []}
        while len(cluster["nodes"]) < 2 and time.monotonic() < deadline and all(node.poll() is None for node in nodes):
            cluster = _probe(address, env)
            time.sleep(1)
        assert len(cluster["nodes"]) == 2, f"{cluster}\n{_logs(head_log, worker_log)}"

        shared = tmp_path / "shared"
        storage = f"sqlite:///{tmp_path / 'studies.db'}"
        args = ["run", SPACES / "one_cpu.py", "--address", address, "--storage", storage, "--ray-storage", shared, "--trials", 4, "--checkpoint-every", 0]
        run = tune_cli(*args, cwd=tmp_path, env=env)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{_logs(head_log, worker_log)}"

        trials = optuna.load_study(study_name="one_cpu", storage=storage).trials
        assert len(trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), trials
        for trial in trials:
            checkpoint = Path(trial.user_attrs[ATTR_CHECKPOINT])
            assert checkpoint.is_relative_to(shared.resolve()) and (checkpoint / CHECKPOINT_FILE).is_file(), checkpoint

        # Ray's own record of the trial actors: the driver joined this cluster, and its trials ran on both nodes.
        after = _probe(address, env)
        assert set(after.get("trial_actor_nodes", [])) == set(cluster["nodes"]) == set(after["nodes"]), after
    finally:
        _stop_nodes(nodes)
        shutil.rmtree(temp_dir, ignore_errors=True)
