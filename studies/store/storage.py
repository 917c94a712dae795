"""Opening an Optuna storage from a URL, with one-line errors for every way that goes wrong."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session

from studies.errors import UserInputError

DEFAULT_FOLDER = "tune_runs"
DEFAULT_FILE = "tune.db"
JOURNAL_PREFIX = "journal:"
# How SQLite, PostgreSQL, MySQL and the OS say a write found the disk full.
DISK_FULL_SIGNS = ("database or disk is full", "no space left on device", "could not extend file", "disk full")


class StorageError(UserInputError):
    """A storage that cannot be opened; the message says what to pass instead."""


# The password of any URL in a text (``postgresql://USER:PASSWORD@HOST/DB``): up to the authority's last "@".
URL_PASSWORD = re.compile(r"(?P<user>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*):[^\s/'\"]*@")


def redacted(text: str) -> str:
    """``text`` (a command line, a URL, a message) with every URL's password shown as ``***``: never stored, never shown."""
    return URL_PASSWORD.sub(r"\g<user>:***@", text)


def default_url() -> str:
    """``TUNE_STORAGE`` if set, else a SQLite file in ``tune_runs/`` of the working directory."""
    return os.environ.get("TUNE_STORAGE") or f"sqlite:///{Path(DEFAULT_FOLDER) / DEFAULT_FILE}"


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///") :])


def _journal_path(url: str) -> Path | None:
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX) :])
    if "://" not in url and url.endswith((".log", ".journal")):
        return Path(url)
    return None


ARTIFACTS_FOLDER = "artifacts"


def artifacts_folder(url: str | None = None) -> Path:
    """Where a storage's Optuna artifacts (each COMPLETE trial's best weights) are kept: ``$TUNE_ARTIFACTS``, else beside
    a SQLite or journal file, else (a database server) in ``tune_runs/`` of the working directory."""
    chosen = os.environ.get("TUNE_ARTIFACTS")
    if chosen:
        return Path(chosen)
    url = url or default_url()
    local_file = _journal_path(url) or _sqlite_path(url)
    return (local_file.parent if local_file is not None else Path(DEFAULT_FOLDER)) / ARTIFACTS_FOLDER


def artifact_store(url: str | None = None, *, create: bool) -> optuna.artifacts.FileSystemArtifactStore:
    """Optuna's artifact store of the storage at ``url`` (see :func:`artifacts_folder`); ``create`` makes its folder."""
    folder = artifacts_folder(url)
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(folder)


def check_url(url: str | None) -> str:
    """``url`` (None: ``$TUNE_STORAGE`` or the default) if it has a storage URL's form (it may still be unreachable),
    else a :class:`StorageError` saying where it came from and the forms."""
    where = "storage"
    if url is None:
        url, where = default_url(), "$TUNE_STORAGE" if os.environ.get("TUNE_STORAGE") else "storage"
    if _journal_path(url) is None and "://" not in url:
        raise StorageError(
            f"{where} {url!r} is not a URL; use sqlite:///FILE.db, postgresql://USER@HOST/DB, mysql://... or journal:FILE.log"
        )
    return url


def open_storage(url: str | None = None, *, create: bool) -> optuna.storages.BaseStorage:
    """The storage behind ``url``: sqlite:///, postgresql://, mysql://, or journal:FILE (or FILE.log).

    ``create=False`` (reading commands) refuses to make a new, empty storage where none exists.
    """
    url = check_url(url or None)
    journal = _journal_path(url)
    sqlite = _sqlite_path(url)
    local_file = journal or sqlite
    if local_file is not None:
        if not create and not local_file.exists():
            raise StorageError(f"no study storage at {local_file}; run `tune run SPACE.py` first or pass --storage")
        if create:
            if local_file.parent == Path(DEFAULT_FOLDER):
                local_file.parent.mkdir(exist_ok=True)
            if not local_file.parent.is_dir():
                raise StorageError(f"folder {local_file.parent} for storage {url} does not exist; create it or pass another --storage")
    try:
        if journal is not None:
            backend = optuna.storages.journal.JournalFileBackend(str(journal))
            return optuna.storages.JournalStorage(backend)
        storage = _rdb_storage(url if create else _reader_url(url, sqlite), create)
        if sqlite is not None:
            _write_ahead_log(storage.engine, switch=create)
        return storage
    except ImportError as exc:
        raise StorageError(f"storage {redacted(url)} needs a database driver that is not installed: {exc}") from exc
    except Exception as exc:  # SQLAlchemy and drivers raise many kinds: all mean "cannot open"
        import sqlalchemy.exc

        # Optuna wraps the database's own reason (connection refused, no such table, file is not a database) in its commit error.
        database_error = _cause(exc, lambda error: isinstance(error, sqlalchemy.exc.DBAPIError))
        reason = _first_line(getattr(database_error, "orig", None) or exc)
        raise StorageError(f"cannot open storage {redacted(url)}: {redacted(reason)}") from exc


def _reader_url(url: str, sqlite: Path | None) -> str:
    """``url`` as a reader opens it: a SQLite file in a folder this user cannot write, that no one has open, as it stands.

    SQLite reads a database in WAL mode through a shared-memory file (``-shm``) beside it, which it cannot make in a
    read-only folder; where there is none, no writer has the file open, and it can be read without one (immutable).
    """
    if sqlite is None or os.access(sqlite.parent, os.W_OK) or Path(f"{sqlite}-shm").exists():
        return url
    return f"sqlite:///file:{urllib.parse.quote(str(sqlite.resolve()))}?mode=ro&immutable=1&uri=true"


# Two openers of a new database race: Optuna stamps its schema version on every open, readers' included, and a driver
# creates the tables a second driver, started at the same moment, is creating too. The loser's stamp fails on the unique
# key, or its table creation on a table that now exists; opening again, once the winner has committed, finds both made.
NEW_DATABASE_TRIES = 10
NEW_DATABASE_WAIT_S = 0.05  # times the attempt: a few openers at once settle within a second


def _rdb_storage(url: str, create: bool) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage for ``url``; readers never create tables: a reader racing a new driver's table creation would break it."""
    import sqlalchemy.exc

    def made_meanwhile(exc: Exception) -> bool:  # Optuna raises the database's error, or its own StorageInternalError made from it
        database_error = _cause(exc, lambda error: isinstance(error, sqlalchemy.exc.DBAPIError))
        return isinstance(database_error, sqlalchemy.exc.IntegrityError) or (
            database_error is not None and "already exists" in str(database_error.orig)
        )

    return _racing_a_new_database(
        lambda: OneCommitDrawStorage(
            url, heartbeat_interval=None, engine_kwargs=_engine_kwargs(url), skip_table_creation=not create
        ),
        lost_the_race=made_meanwhile,
    )


@dataclass
class _HeldWrites:
    """A trial's writes kept for one commit: params in Optuna's internal form, attributes by (table, key)."""

    params: dict[str, tuple[float, optuna.distributions.BaseDistribution]] = field(default_factory=dict)
    attrs: dict[tuple[type, str], Any] = field(default_factory=dict)


class OneCommitDrawStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage that writes a trial's params and attributes drawn within ``holding(trial_id)`` in one commit.

    Optuna commits each param and attribute on its own: drawing a Vesuvius config (19 params, 4 attributes) took 23
    commits, a third of a suggestion's time on a 10 000-trial SQLite study. Optuna writes several fields of a trial in one
    transaction only when it creates the trial from a template, which needs the params before the trial exists.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held: dict[int, _HeldWrites] = {}

    @contextlib.contextmanager
    def holding(self, trial_id: int) -> Iterator[None]:
        """Within: the trial's writes are kept, and reads of the trial see them; on leaving, even by an error, one commit.

        Within an outer ``holding`` of the same trial, the outer one's commit takes these writes too."""
        if trial_id in self._held:
            yield
            return
        self._held[trial_id] = _HeldWrites()
        try:
            yield
        finally:
            held = self._held.pop(trial_id)
            with _create_scoped_session(self.scoped_session) as session:  # not ignoring a duplicate: it would drop the lot
                trial = rdb_models.TrialModel.find_or_raise_by_id(trial_id, session)
                self.check_trial_is_updatable(trial_id, trial.state)
                session.add_all(
                    rdb_models.TrialParamModel(
                        trial_id=trial_id,
                        param_name=name,
                        param_value=value,
                        distribution_json=optuna.distributions.distribution_to_json(distribution),
                    )
                    for name, (value, distribution) in held.params.items()
                )
                for (model, key), value in held.attrs.items():
                    self._set_trial_attr_without_commit(session, model, trial_id, key, value)

    def _set_trial_param(self, trial_id, param_name, param_value_internal, distribution, previous_distribution) -> None:
        # A param this process has not drawn before is written at once: Optuna checks it against the study's stored one.
        if trial_id not in self._held or previous_distribution is None:
            return super()._set_trial_param(trial_id, param_name, param_value_internal, distribution, previous_distribution)
        optuna.distributions.check_distribution_compatibility(previous_distribution, distribution)
        self._held[trial_id].params[param_name] = (param_value_internal, distribution)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id not in self._held:
            return super().set_trial_user_attr(trial_id, key, value)
        self._held[trial_id].attrs[rdb_models.TrialUserAttributeModel, key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id not in self._held:
            return super().set_trial_system_attr(trial_id, key, value)
        self._held[trial_id].attrs[rdb_models.TrialSystemAttributeModel, key] = value

    def get_trial(self, trial_id: int) -> optuna.trial.FrozenTrial:
        trial = super().get_trial(trial_id)
        held = self._held.get(trial_id)
        if held is not None:
            for name, (value, distribution) in held.params.items():
                trial.params[name] = distribution.to_external_repr(value)
                trial.distributions[name] = distribution
            for (model, key), value in held.attrs.items():
                attrs = trial.user_attrs if model is rdb_models.TrialUserAttributeModel else trial.system_attrs
                attrs[key] = value
        return trial


def holding_writes(study: optuna.Study, trial_id: int) -> contextlib.AbstractContextManager:
    """Within: the trial's params and attributes are written in one commit where the study's storage can (a SQL database)."""
    backend = getattr(study._storage, "_backend", None)  # Optuna wraps an RDBStorage in its (private) _CachedStorage
    return backend.holding(trial_id) if isinstance(backend, OneCommitDrawStorage) else contextlib.nullcontext()


def _racing_a_new_database(action: Callable, lost_the_race: Callable[[Exception], bool]):
    """``action``'s result; tried again, after a short and growing wait, while it fails as the loser of a new database's race."""
    for attempt in range(NEW_DATABASE_TRIES):
        try:
            return action()
        except Exception as exc:
            if not lost_the_race(exc) or attempt == NEW_DATABASE_TRIES - 1:
                raise
            time.sleep(NEW_DATABASE_WAIT_S * (attempt + 1))


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """The studies a storage holds, read without their trials (Optuna's study summaries load every trial)."""
    return [study.study_name for study in storage.get_all_studies()]


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Readers (dashboard, `tune ls`) wait for the driver's short write transactions instead of failing.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def _write_ahead_log(engine, *, switch: bool) -> None:
    """SQLite in WAL mode: readers never block the driver, and a commit needs no fsync (``synchronous=NORMAL``).

    A killed process loses nothing committed; a power cut may lose the last commits, never the file. The mode
    is stored in the file, so only a driver (``switch``) sets it: readers never wait for the lock that takes.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(connection, _record) -> None:
        cursor = connection.cursor()
        if switch:
            _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    engine.dispose()  # the connection Optuna opened to check the schema predates the listener


def _switch_to_wal(cursor) -> None:
    """WAL mode, unless the file is in it already; SQLite refuses the switch at once (its busy timeout does not apply)
    while another opener of a new file holds the lock, so a refused switch is tried again once that opener is done."""
    import sqlite3

    def switch() -> None:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")

    _racing_a_new_database(switch, lost_the_race=lambda exc: isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _storage_failure(exc: BaseException) -> BaseException | None:
    """The database or file-system error behind ``exc`` (Ray wraps what a searcher or callback raised), if any."""
    import sqlalchemy.exc

    def failure(error: BaseException) -> bool:
        return isinstance(error, sqlalchemy.exc.OperationalError) or (isinstance(error, OSError) and error.errno == errno.ENOSPC)

    return _cause(exc, failure)


def _cause(exc: BaseException | None, wanted: Callable[[BaseException], bool]) -> BaseException | None:
    """The first error in ``exc``'s chain of causes and contexts that is ``wanted``, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if wanted(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def failures_of(url: str | None) -> Iterator[None]:
    """A storage that fails while a study runs (disk full, server gone) becomes one line saying what to do.

    Optuna writes each trial's record in one transaction, so what was stored before the failure is kept whole.
    """
    try:
        yield
    except UserInputError:
        raise
    except Exception as exc:
        failure = _storage_failure(exc)
        if failure is None:
            raise
        url = redacted(url or default_url())
        reason = _first_line(getattr(failure, "orig", None) or failure)
        if any(sign in reason.lower() for sign in DISK_FULL_SIGNS):
            raise StorageError(
                f"the disk holding storage {url} is full ({reason}); free space there and run the command again: stored trials are kept"
            ) from exc
        raise StorageError(f"lost storage {url} mid-run ({reason}); once it is back, run the command again: stored trials are kept") from exc
