"""Writing a user's output file: checked first, written atomically, so a failure leaves nothing half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from studies.errors import UserInputError


class OutputError(UserInputError):
    """An output path that cannot be written; the message says why."""


class NameRefused(UserInputError):
    """A study name that is not a plain name: folders and files are named after a study."""


def checked_name(name: str, what: str = "study name", fix: str = "pass --study NAME") -> str:
    """``name`` once it is a plain name, one path component that stays where it is put (Ray's folder, the report)."""
    if name in ("", ".", "..") or name.startswith("..") or any(sign in name for sign in ("/", "\\", "\0")):
        raise NameRefused(
            f"{what} {name!r} is not a plain name: no '/', '\\' or NUL, not empty, '.' or '..', not starting with '..'; {fix}"
        )
    return name


def checked_output(output: str | Path) -> Path:
    """``output`` as a Path, once its folder exists and a file can be written there (checked by making one that vanishes)."""
    path = Path(output)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write {output}: folder {folder} does not exist")
    if path.exists() and not path.is_file():  # replacing a folder fails; replacing a device (as root) would break it
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise OutputError(f"cannot write {output}: it is {kind}; pass a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write {output}: permission denied; choose another -o path")
    # The one sure test: modes do not bind root, and /proc or a read-only mount refuse a file whatever they say.
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise OutputError(f"cannot write {output}: {reason} in {folder}; choose another -o path") from exc
    return path


def write_atomically(path: Path, text: str) -> None:
    """Write beside ``path`` and rename over it, so readers see the old file or the new one, never a part."""
    handle, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp makes the file 0600; an export or a report gets the permissions any new file gets (0644 under umask 022).
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)  # a full disk or a folder made read-only leaves no stray part behind
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
