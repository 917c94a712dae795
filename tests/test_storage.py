"""Opening a storage from a URL, and a storage failing mid-run: every way it goes wrong is one line."""

import errno
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from conftest import refusal
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial
from sqlalchemy import event

from studies.errors import UserInputError
from studies.records import STUDY_OBJECTIVES
from studies.store.catalog import SelectionError
from studies.store.storage import StorageError, default_url, failures_of, holding_writes, open_storage, study_names


def one_line(raised) -> str:
    message = str(raised.value)
    assert message and "\n" not in message, message
    return message


@pytest.mark.parametrize("url", ["not-a-url", "tune.db", "runs/tune.db", "sqlite:/tune.db"])
def test_a_string_that_is_no_url_is_refused(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError) as raised:
        open_storage(url, create=True)
    assert one_line(raised) == (
        f"storage {url!r} is not a URL; use sqlite:///FILE.db, postgresql://USER@HOST/DB, mysql://... or journal:FILE.log"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scheme", ["sqlite:///", "journal:", ""])
def test_a_reader_never_creates_a_missing_storage(tmp_path, scheme):
    path = tmp_path / ("absent.db" if scheme == "sqlite:///" else "absent.log")
    with pytest.raises(StorageError) as raised:
        open_storage(f"{scheme}{path}", create=False)
    assert one_line(raised) == f"no study storage at {path}; run `tune run SPACE.py` first or pass --storage"
    assert not path.exists()


@pytest.mark.parametrize("scheme", ["sqlite:///", "journal:"])
def test_a_missing_folder_is_refused_not_made(tmp_path, scheme):
    url = f"{scheme}{tmp_path / 'no' / 'such' / 'studies.db'}"
    with pytest.raises(StorageError) as raised:
        open_storage(url, create=True)
    assert one_line(raised) == f"folder {tmp_path / 'no' / 'such'} for storage {url} does not exist; create it or pass another --storage"
    assert not (tmp_path / "no").exists()


def test_the_default_storage_is_made_in_tune_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNE_STORAGE", raising=False)
    assert default_url() == "sqlite:///tune_runs/tune.db"
    optuna.create_study(study_name="here", storage=open_storage(None, create=True))
    assert (tmp_path / "tune_runs" / "tune.db").is_file()
    assert study_names(open_storage(f"sqlite:///{tmp_path / 'tune_runs' / 'tune.db'}", create=False)) == ["here"]


def test_tune_storage_in_the_environment_is_the_default(tmp_path, monkeypatch):
    url = f"journal:{tmp_path / 'shared.log'}"
    monkeypatch.setenv("TUNE_STORAGE", url)
    monkeypatch.chdir(tmp_path)
    assert default_url() == url
    storage = open_storage(None, create=True)
    assert isinstance(storage, optuna.storages.JournalStorage)
    optuna.create_study(study_name="from_env", storage=storage)
    assert study_names(open_storage(url, create=False)) == ["from_env"]
    assert not (tmp_path / "tune_runs").exists()
    monkeypatch.setenv("TUNE_STORAGE", "")  # set but empty: the default file
    assert default_url() == "sqlite:///tune_runs/tune.db"


def test_a_journal_file_by_prefix_or_by_suffix_is_the_same_storage(tmp_path):
    for suffix in ("log", "journal"):
        path = tmp_path / f"studies.{suffix}"
        writer = open_storage(f"journal:{path}", create=True)
        assert isinstance(writer, optuna.storages.JournalStorage)
        optuna.create_study(study_name=f"j_{suffix}", storage=writer)
        for url in (f"journal:{path}", str(path)):
            assert study_names(open_storage(url, create=False)) == [f"j_{suffix}"]


def test_a_sqlite_storage_a_driver_makes_is_in_write_ahead_log_mode(tmp_path):
    path = tmp_path / "studies.db"
    optuna.create_study(study_name="wal", storage=open_storage(f"sqlite:///{path}", create=True))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader = open_storage(f"sqlite:///{path}", create=False)
    assert study_names(reader) == ["wal"]


def test_drivers_opening_a_new_database_at_one_moment_all_open_it(tmp_path):
    """Each opener creates the tables if they are missing; those that lose the race find them made and open the storage."""
    from concurrent.futures import ThreadPoolExecutor

    openers = 4
    for attempt in range(5):
        url = f"sqlite:///{tmp_path / f'new{attempt}.db'}"
        start = threading.Barrier(openers)

        def open_at_once():
            start.wait()
            return study_names(open_storage(url, create=True))

        with ThreadPoolExecutor(openers) as pool:
            assert list(pool.map(lambda _: open_at_once(), range(openers))) == [[]] * openers


def test_a_reader_does_not_create_tables_in_an_empty_file(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(StorageError) as raised:
        open_storage(f"sqlite:///{path}", create=False)
    assert one_line(raised).startswith(f"cannot open storage sqlite:///{path}: ")
    assert path.stat().st_size == 0


def test_a_folder_is_not_a_database(tmp_path):
    with pytest.raises(StorageError) as raised:
        open_storage(f"sqlite:///{tmp_path}", create=True)
    assert one_line(raised).startswith(f"cannot open storage sqlite:///{tmp_path}: ")


def closed_study_file(folder: Path, scheme: str = "sqlite:///", file: str = "tune.db") -> Path:
    """``folder``/``file`` holding study ``done`` (one COMPLETE trial tune could export), closed as a finished run leaves it."""
    path = folder / file
    storage = open_storage(f"{scheme}{path}", create=True)
    study = optuna.create_study(study_name="done", storage=storage)
    study.set_user_attr(STUDY_OBJECTIVES, [["val_loss", "minimize"]])
    study.add_trial(create_trial(
        value=0.5, params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-3, 1.0)},
        user_attrs={"metric.val_loss": 0.5, "training_config": json.dumps({"lr": 0.01})},
    ))  # fmt: skip
    if hasattr(storage, "engine"):
        storage.engine.dispose()  # the last connection closed: SQLite folds its write-ahead log into the file and removes it
    assert [p.name for p in folder.iterdir()] == [path.name]
    return path


@pytest.mark.parametrize(("damage", "reason"), [("text", "file is not a database"), ("cut", "database disk image is malformed")])
def test_a_damaged_database_is_named_by_the_databases_own_reason(tmp_path, capsys, damage, reason):
    damaged = tmp_path / "damaged.db"
    if damage == "text":
        damaged.write_text("notes, not a database\n")
    else:
        damaged.write_bytes(closed_study_file(tmp_path).read_bytes()[:5000])
    before = damaged.read_bytes()
    url = f"sqlite:///{damaged}"
    assert refusal(capsys, "ls", "--storage", url) == f"tune: error: cannot open storage {url}: {reason}"
    assert damaged.read_bytes() == before


def unprivileged() -> list[str]:
    """A command prefix under which file modes bind as they bind a user: root drops the capabilities that override them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("file modes do not bind root, and setpriv (util-linux), which drops that power, is not installed")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


# The readers as `tune` runs them, one interpreter for the four: exit 0 only if every one read the study.
READERS = "import json, sys\nfrom studies.cli import main\nsys.exit(max(main(argv) for argv in json.loads(sys.argv[1])))"


@pytest.mark.parametrize(("scheme", "file"), [("sqlite:///", "tune.db"), ("journal:", "tune.log")], ids=["sqlite", "journal"])
def test_a_read_only_storage_is_read_by_ls_show_best_export_and_left_as_it_was(tmp_path, scheme, file):
    folder = tmp_path / "shared"
    folder.mkdir()
    path = closed_study_file(folder, scheme, file)
    closed = path.read_bytes()
    path.chmod(0o444)
    folder.chmod(0o555)  # a finished study shared to be read, not written
    storage = ["--storage", f"{scheme}{path}"]
    commands = [["ls"], ["show", "done"], ["best", "done"], ["export", "done", "-o", "x.yaml"]]
    reader = [*unprivileged(), sys.executable, "-c", READERS, json.dumps([[*command, *storage] for command in commands])]
    try:
        read = subprocess.run(reader, cwd=tmp_path, capture_output=True, text=True)
        assert [p.name for p in folder.iterdir()] == [file] and path.read_bytes() == closed
    finally:
        folder.chmod(0o755)
    assert read.returncode == 0, read.stderr
    assert all(shown in read.stdout for shown in ("done", "COMPLETE", "trial 0", "wrote trial 0 of done"))


@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None, reason="a MySQL driver is installed")
def test_a_missing_database_driver_is_named():
    with pytest.raises(StorageError) as raised:
        open_storage("mysql://tune@127.0.0.1/tune", create=False)
    assert one_line(raised).startswith("storage mysql://tune@127.0.0.1/tune needs a database driver that is not installed: ")


def test_an_unreachable_server_says_why():
    url = "postgresql://tune@127.0.0.1:1/tune"  # nothing listens on port 1: refused at once
    with pytest.raises(StorageError) as raised:
        open_storage(url, create=False)
    assert one_line(raised).startswith(f"cannot open storage {url}: ") and "refused" in str(raised.value)


def test_a_full_disk_mid_run_is_one_line_and_keeps_what_was_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'full.db'}"
    storage = open_storage(url, create=True)
    study = optuna.create_study(study_name="full", storage=storage)
    with storage.engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()

    @event.listens_for(storage.engine, "connect")
    def no_room_to_grow(connection, _record):  # SQLite's own "disk full", at the file's present size
        connection.cursor().execute(f"PRAGMA max_page_count = {pages + 2}")

    storage.engine.dispose()
    stored = 0
    with pytest.raises(StorageError) as raised:
        with failures_of(url):
            for _ in range(100):
                study.enqueue_trial({"x": 1.0}, user_attrs={"padding": "x" * 2000})
                stored += 1
    assert one_line(raised) == (
        f"the disk holding storage {url} is full (database or disk is full); free space there and run the command again: "
        "stored trials are kept"
    )
    assert isinstance(raised.value.__cause__, optuna.exceptions.StorageInternalError)  # Optuna's wrapper, looked through
    assert stored >= 1
    assert len(optuna.load_study(study_name="full", storage=open_storage(url, create=False)).trials) == stored


def test_a_storage_gone_mid_run_is_lost_storage(tmp_path):
    folder = tmp_path / "mounted"
    folder.mkdir()
    url = f"sqlite:///{folder / 'studies.db'}"
    storage = open_storage(url, create=True)
    study = optuna.create_study(study_name="gone", storage=storage)
    shutil.rmtree(folder)  # the volume holding the database went away
    storage.engine.dispose()
    with pytest.raises(StorageError) as raised:
        with failures_of(url):
            study.enqueue_trial({"x": 1.0})
    assert one_line(raised) == (
        f"lost storage {url} mid-run (unable to open database file); once it is back, run the command again: stored trials are kept"
    )


def operational(message: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("INSERT INTO trials ...", {}, sqlite3.OperationalError(message))


def test_failures_are_found_under_the_errors_ray_wraps_them_in():
    url = "postgresql://tune@db/tune"
    with pytest.raises(StorageError) as raised:
        with failures_of(url):
            try:
                raise operational("could not extend file \"base/16384/16385\": No space left on device\nHINT: check free disk space.")
            except sqlalchemy.exc.OperationalError as exc:
                raise RuntimeError("Searcher.on_trial_complete failed") from exc
    assert one_line(raised).startswith(f"the disk holding storage {url} is full (could not extend file ")
    with pytest.raises(StorageError) as raised:
        with failures_of(url):
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise KeyError("raised while handling it")  # chained implicitly, as __context__
    assert "is full ([Errno 28] No space left on device)" in one_line(raised)
    with pytest.raises(StorageError) as raised:
        with failures_of(url):
            raise RuntimeError("wrapped") from operational("server closed the connection unexpectedly")
    assert one_line(raised) == (
        f"lost storage {url} mid-run (server closed the connection unexpectedly); once it is back, run the command again: "
        "stored trials are kept"
    )


def test_failures_of_names_the_default_storage_when_given_none(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_STORAGE", f"sqlite:///{tmp_path / 'env.db'}")
    with pytest.raises(StorageError) as raised:
        with failures_of(None):
            raise operational("database is locked")
    assert one_line(raised).startswith(f"lost storage sqlite:///{tmp_path / 'env.db'} mid-run (database is locked)")


@pytest.mark.parametrize(
    "error",
    [
        ValueError("a bug in the trainer"),
        OSError(errno.EACCES, "Permission denied"),
        SelectionError("no study 'x' in the storage (studies: none yet)"),
        StorageError("already one line"),
        KeyboardInterrupt(),
    ],
    ids=["value", "other-oserror", "selection", "storage", "interrupt"],
)
def test_errors_that_are_no_storage_failure_pass_unchanged(error):
    with pytest.raises(type(error)) as raised:
        with failures_of("sqlite:///x.db"):
            raise error
    assert raised.value is error


def test_user_input_errors_pass_even_when_a_storage_error_caused_them():
    error = UserInputError("cannot use that")
    with pytest.raises(UserInputError) as raised:
        with failures_of("sqlite:///x.db"):
            raise error from operational("database or disk is full")
    assert raised.value is error


def test_a_cycle_of_chained_errors_ends_the_search():
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    with pytest.raises(ValueError) as raised:
        with failures_of("sqlite:///x.db"):
            raise first
    assert raised.value is first


def test_nothing_raised_nothing_changed(tmp_path):
    with failures_of(f"sqlite:///{tmp_path / 'x.db'}"):
        pass
    assert not Path(tmp_path / "x.db").exists()


@pytest.fixture
def drawing(tmp_path):
    """A driver's study on SQLite that has drawn each param once (so this process knows its distribution), and a reader."""
    url = f"sqlite:///{tmp_path / 'draw.db'}"
    storage = open_storage(url, create=True)
    driver = optuna.create_study(study_name="draw", storage=storage)
    first = driver.ask()
    first.suggest_float("lr", 1e-4, 1e-1, log=True)
    first.suggest_int("depth", 1, 4)
    reader = optuna.load_study(study_name="draw", storage=open_storage(url, create=False))
    return storage, driver, reader


def test_a_trials_draw_is_one_commit_that_readers_see_whole(drawing):
    storage, driver, reader = drawing
    trial = driver.ask()
    events = []  # the driver's writes and commits, in order (every session commits, a read's too)

    def writes(connection, cursor, statement, *rest):
        if statement.startswith(("INSERT", "UPDATE")):
            events.append("write")

    event.listen(storage.engine, "before_cursor_execute", writes)
    event.listen(storage.engine, "commit", lambda connection: events.append("commit"))
    with holding_writes(driver, trial._trial_id):
        trial.set_user_attr("driver", "me")
        lr, depth = trial.suggest_float("lr", 1e-4, 1e-1, log=True), trial.suggest_int("depth", 1, 4)
        assert driver._storage.get_trial(trial._trial_id).params == {"lr": lr, "depth": depth}  # the driver reads its draw
        unseen = reader.get_trials()[1]
        assert (unseen.params, unseen.user_attrs, "write" in events) == ({}, {}, False)
    drawn = reader.get_trials()[1]
    assert (drawn.params, drawn.user_attrs) == ({"lr": lr, "depth": depth}, {"driver": "me"})
    written = events[events.index("write") :]
    assert written.count("commit") == 1 and written[-1] == "commit" and len(written) >= 3  # params and attribute, one commit


def test_a_draw_that_raises_keeps_what_it_drew(drawing):
    _, driver, reader = drawing
    trial = driver.ask()
    with pytest.raises(ValueError), holding_writes(driver, trial._trial_id):
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("depth", 1, 4, step=0)  # Optuna refuses a zero step
    assert reader.get_trials()[1].params == {"lr": lr}


def test_a_held_param_whose_distribution_differs_from_the_studys_is_refused_as_optuna_refuses_it(drawing):
    _, driver, reader = drawing
    trial = driver.ask()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"), holding_writes(driver, trial._trial_id):
        trial.suggest_float("depth", 1, 4)  # an int in the study's trials
    assert reader.get_trials()[1].params == {}


def test_a_holding_within_another_of_the_same_trial_commits_with_the_outer_one(drawing):
    _, driver, reader = drawing
    trial = driver.ask()
    with holding_writes(driver, trial._trial_id):
        with holding_writes(driver, trial._trial_id):
            trial.set_user_attr("inner", 1)
        assert reader.get_trials()[1].user_attrs == {}  # not committed when the inner one ends
        trial.set_user_attr("outer", 2)
    assert reader.get_trials()[1].user_attrs == {"inner": 1, "outer": 2}
