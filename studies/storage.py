"""Opening an Optuna storage from a URL, with one-line errors for every way that goes wrong."""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from studies.errors import UserInputError

DEFAULT_FOLDER = "tune_runs"
DEFAULT_FILE = "tune.db"
JOURNAL_PREFIX = "journal:"


class StorageError(UserInputError):
    """A storage that cannot be opened; the message says what to pass instead."""


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


def open_storage(url: str | None = None, *, create: bool) -> optuna.storages.BaseStorage:
    """The storage behind ``url``: sqlite:///, postgresql://, mysql://, or journal:FILE (or FILE.log).

    ``create=False`` (reading commands) refuses to make a new, empty storage where none exists.
    """
    url = url or default_url()
    journal = _journal_path(url)
    sqlite = _sqlite_path(url)
    if journal is None and "://" not in url:
        raise StorageError(
            f"storage {url!r} is not a URL; use sqlite:///FILE.db, postgresql://USER@HOST/DB, mysql://... or journal:FILE.log"
        )
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
        # Readers never create tables: a reader racing a new driver's table creation would break it.
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=None, engine_kwargs=_engine_kwargs(url), skip_table_creation=not create
        )
    except ImportError as exc:
        raise StorageError(f"storage {url} needs a database driver that is not installed: {exc}") from exc
    except Exception as exc:  # SQLAlchemy and drivers raise many kinds: all mean "cannot open"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {url}: {reason}") from exc


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        # Readers (dashboard, `tune ls`) wait for the driver's short write transactions instead of failing.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}
