"""Writing a discovered payload to a file: never over an existing file unless asked, mode 0600 from
the first byte, and atomically (a reader sees the old file or the whole new one, never a part)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import JsonValue

from inboxcheck._errors import OptionsError

__all__ = ["refuse_existing", "write_payload"]


def refuse_existing(path: Path) -> None:
    """Raise before any work is done when ``path`` exists (``--force`` replaces it)."""
    if path.exists() or path.is_symlink():
        raise OptionsError(
            f"--write {path}: the file exists; choose another name or add --force to replace it"
        )


def write_payload(path: Path, payload: Mapping[str, JsonValue], *, replace: bool = False) -> None:
    """Write ``payload`` as JSON to ``path`` with mode 0600.

    The data goes to a temporary file in the same folder (created 0600 and exclusive), is flushed to
    disk, then renamed over ``path``; without ``replace`` the final step is a hard link, which fails
    rather than overwrite a file that appeared meanwhile.
    """
    if not replace:
        refuse_existing(path)
    text = json.dumps(dict(payload), indent=2, ensure_ascii=False) + "\n"
    folder = path.parent if str(path.parent) else Path()
    temp = folder / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            temp.replace(path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                raise OptionsError(
                    f"--write {path}: the file appeared meanwhile; nothing was replaced"
                ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
