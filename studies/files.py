"""Writing a user's output file: checked first, written atomically, so a failure leaves nothing half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from studies.errors import UserInputError


class OutputError(UserInputError):
    """An output path that cannot be written; the message says why."""


def checked_output(output: str | Path) -> Path:
    """``output`` as a Path, once its folder exists and it can be written there."""
    path = Path(output)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"cannot write {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {output}: permission denied; choose another -o path")
    return path


def write_atomically(path: Path, text: str) -> None:
    """Write beside ``path`` and rename over it, so readers see the old file or the new one, never a part."""
    handle, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)
