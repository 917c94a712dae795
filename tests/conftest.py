"""Shared fixtures: a real local Ray, real SQLite storages, the tiny test spaces, and the CLI as a subprocess or in this process."""

import contextlib
import functools
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SPACES = Path(__file__).parent / "spaces"
REPO = Path(__file__).parent.parent


# The longest modules, longest first (seconds of one of 2 workers on 2 cores, from a whole run's JUnit report): pytest-xdist
# hands out modules in this order, so the long ones start early and short ones fill in at the end. Its own order, by
# number of tests, started these few-test modules last, and one worker then ran alone at the end. The smoke benchmark
# is one test: it goes first, as no other module can share its length out.
LONGEST_FIRST = (
    "test_benchmarks",  # 341 s, nearly all the smoke run
    "test_resume",  # 355 s
    "test_worker_faults",  # 323 s
    "test_resources",  # 230 s
    "test_postgres",  # 197 s
    "test_cli",  # 149 s
    "test_driver_faults",  # 133 s
    "test_study_run",  # 124 s
    "test_pareto",  # 82 s
    "test_cluster",  # 63 s
    "test_browser",  # 54 s
    "test_state_phases",  # 53 s
    "test_rung_tpe",  # 36 s
    "test_report",  # 30 s
)


def pytest_collection_modifyitems(items):
    """The modules of ``LONGEST_FIRST`` first, in its order; the rest after them as collected (pyproject.toml turns xdist's own reordering off)."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


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


def tune_in_this_process(*args, cwd, env=None, check=False) -> subprocess.CompletedProcess:
    """`tune ARGS` run in this process, with the result fields of ``tune_cli``: for the runs a test needs done or reads,
    rather than the CLI's process it checks. Each saves a new interpreter's imports (and a run, Ray's start: about 30
    CPU-seconds). ``env`` holds only while it runs, in this process: the session Ray's trial workers keep the
    environment they started with. A run needs the session's Ray: take it through ``tune_here``."""
    from studies.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.chdir(cwd):
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(arg) for arg in args])
            except SystemExit as exited:  # argparse's refusals exit
                code = exited.code
    result = subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"tune {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tune_here(ray_cluster):
    """``tune_in_this_process`` on the session's Ray (runs and resumes start no Ray of their own)."""
    return tune_in_this_process


def refusal(capsys, *args) -> str:
    """`tune ARGS` run in this process (spaces and torch already imported: no interpreter to start), which must refuse
    as the CLI promises: exit 2 and one line `tune: error: ...` on stderr. Returns that line."""
    from studies.cli import main

    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exited:  # argparse's refusals exit
        code = exited.code
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tune: error: "), f"exit {code}:\n{stderr}"
    return lines[0]


def kill_process_group(driver: subprocess.Popen) -> None:
    """SIGKILL a driver started with ``start_new_session``: the driver and the Ray processes it started."""
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    driver.wait(timeout=30)


def assert_study_whole(trials, requested: int) -> None:
    """Exactly the requested finished trials, none left RUNNING, no config run twice."""
    from optuna.trial import TrialState

    assert len([t for t in trials if t.state.is_finished()]) == requested
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    configs = [tuple(sorted(t.params.items())) for t in trials if t.state.is_finished()]
    assert len(configs) == len(set(configs)), "a config was run twice"


def snapshot(url, study_name="slow"):
    import optuna

    from studies.store.storage import open_storage

    storage = open_storage(url, create=False)  # waits out the driver's write locks
    return optuna.load_study(study_name=study_name, storage=storage).get_trials()


def wait_for_trials(driver, url, ready, what, timeout=240):
    """Poll the running driver's study until ``ready(trials)`` holds; fails if the driver ends or time runs out first."""
    import time

    import sqlalchemy.exc

    deadline = time.monotonic() + timeout
    while True:
        assert driver.poll() is None, f"the study finished before {what}; make slow.py slower"
        assert time.monotonic() < deadline, f"not {what} within {timeout} s"
        try:
            trials = snapshot(url)
        except (KeyError, ValueError, sqlalchemy.exc.OperationalError):  # no storage, tables or study yet
            trials = []
        if ready(trials):
            return
        time.sleep(0.2)


@functools.cache
def _slow_asha():
    """slow.py's ASHA rungs, loaded once: the kill tests ask for them at every poll."""
    from studies.space import load_space

    return load_space(SPACES / "slow.py").asha()


def mid_training(trial) -> bool:
    """Whether slow.py's ``trial`` is RUNNING from a stored checkpoint with a whole epoch (about a second) to train
    before ASHA's next rung or its last epoch could end it: a SIGKILL sent just after the poll still finds it mid-training."""
    from optuna.trial import TrialState

    from studies.records import ATTR_CHECKPOINT_EPOCH

    asha = _slow_asha()
    epoch = trial.user_attrs.get(ATTR_CHECKPOINT_EPOCH)
    return trial.state == TrialState.RUNNING and epoch is not None and epoch not in asha.rungs and epoch < asha.max_epochs


POSTGRES_ENV = "TUNE_TEST_POSTGRES"  # a PostgreSQL URL for the tests (.ci/run starts Debian's server and sets it)


def _postgres_bin(program: str) -> str | None:
    import shutil

    found = shutil.which(program) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{program}"), reverse=True)), None)
    return str(found) if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster of this test session (initdb, loopback, a free port), for tests that restart it."""

    def __init__(self):
        import socket
        import tempfile

        if not (_postgres_bin("initdb") and _postgres_bin("pg_ctl")):
            pytest.skip("no PostgreSQL binaries (initdb, pg_ctl): install Debian's postgresql package")
        self.folder = Path(tempfile.mkdtemp(prefix="tune-postgres-"))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql://tune@127.0.0.1:{self.port}/tune"
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: its own user owns the cluster
            import shutil

            shutil.chown(self.folder, "postgres")
        self._as_owner(_postgres_bin("initdb"), "-D", self.folder / "data", "-U", "tune", "--auth=trust")
        self.start()
        self._as_owner(_postgres_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "tune", "tune")

    def _as_owner(self, *command):
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *map(str, command)], check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, *args):
        self._as_owner(_postgres_bin("pg_ctl"), "-D", self.folder / "data", "-w", *args)

    def start(self):
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        self._pg_ctl("-l", self.folder / "server.log", "-o", options, "start")

    def stop(self):
        self._pg_ctl("-m", "fast", "stop")

    def remove(self):
        import shutil

        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL database: ``$TUNE_TEST_POSTGRES`` if set, else a server this session starts itself."""
    if os.environ.get(POSTGRES_ENV):
        yield os.environ[POSTGRES_ENV]
        return
    server = PostgresServer()
    yield server.url
    server.remove()


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of the test's own, which it may stop and start without disturbing other tests."""
    server = PostgresServer()
    yield server
    server.remove()


def assert_readers_match_optuna(url: str, study_name: str) -> None:
    """ls, show, best and export read only what they show (SQL counts, one state at a time); Optuna's full read is the reference."""
    from optuna.trial import TrialState

    from studies.store import catalog

    study = catalog.load_study(study_name, url)
    every = study.get_trials()
    states = [t.state for t in every]
    assert TrialState.COMPLETE in states and TrialState.PRUNED in states, "the study needs COMPLETE and PRUNED trials"
    (row,) = [r for r in catalog.list_studies(url).to_dict("records") if r["study"] == study_name]
    counted = [states.count(s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)]
    assert [row["complete"], row["pruned"], row["failed"], row["running"]] == counted
    assert (row["best"], row["best_trial"]) == (study.best_value, study.best_trial.number)
    whole = catalog.trials_table(study)
    assert len(whole) == sum(s.is_finished() for s in states)
    for top in (1, states.count(TrialState.COMPLETE) + 1):  # within the COMPLETE trials, and reaching into the next state
        # A column only unshown trials have (fail_reason) is left out, rather than shown empty.
        shown = catalog.trials_table(study, top=top).dropna(axis="columns", how="all")
        assert shown.equals(whole.head(top).dropna(axis="columns", how="all"))
    assert catalog.select_trial(study, trial_number=every[-1].number) == every[-1]
    assert catalog.select_trial(study).number == study.best_trial.number
