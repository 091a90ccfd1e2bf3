"""JSON Lines files: reading lines with a bound, and the results log a batch appends to and resumes from.

One reader and one writer serve ``check --batch`` and ``connect --batch``:

- Lines are read with a bound: a line longer than the bound is skipped in bounded reads, never held
  whole, so memory stays flat whatever a file holds.
- The log is held under an exclusive ``flock`` for the whole run: a second run on the same log
  refuses at once instead of checking and creating the same accounts a second time.
- A record is appended as one complete line; a failed write stops the run, so a torn line can only
  ever be the last one, and the next resume cuts it off. A check line is not fsynced on its own (one
  lost to a power cut is only checked again); a create line is, before the next create is sent, and
  so is a send test's line, before its message is; the log is fsynced when the run ends.
- A damaged line in the middle is reported (by its line number) and skipped; the lines before and
  after it are kept as they are.
- A rewrite (``--retry-errors``) goes through a temporary file beside the log, with the log's mode
  and owner, fsynced, then renamed over it; the temporary file is locked before the rename, so the
  lock never lapses. A log that is a symbolic link is rewritten through it: the link stays, its
  target is replaced. The temporary file is named ``.<log>.inboxcheck-XXXX.tmp``: one left by a run
  killed mid-rewrite is removed by the next run on that log.
- The log is a regular file or a new path: a FIFO, a device or a directory is refused before it is
  opened (a FIFO would block the open forever), and so is the batch file itself, standard input
  included (``--batch -`` fed from the log would read its own appends without end).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Self, TypeVar

from inboxcheck._errors import ResultsLogError

__all__ = ["Line", "ResultLog", "read_lines"]

# A log line holds one account's whole report: a few kilobytes, tens with many findings.
MAX_LOG_LINE_BYTES: Final = 16_000_000
_COPY_CHUNK: Final = 1 << 20

Record = TypeVar("Record")


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a file: its bytes (None when longer than the bound), where it is, whether it ended."""

    number: int
    data: bytes | None
    offset: int
    size: int
    complete: bool


def read_lines(handle: IO[bytes], *, limit: int) -> Iterator[Line]:
    """Each line of ``handle`` with its number; a line over ``limit`` bytes comes with ``data=None``."""
    number = offset = 0
    while chunk := handle.readline(limit + 1):
        number += 1
        size = len(chunk)
        if chunk.endswith(b"\n") or size <= limit:
            yield Line(number, chunk, offset, size, chunk.endswith(b"\n"))
        else:
            complete = False
            while more := handle.readline(_COPY_CHUNK):
                size += len(more)
                if more.endswith(b"\n"):
                    complete = True
                    break
            yield Line(number, None, offset, size, complete)
        offset += size


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class ResultLog:
    """The results log of one run, locked from :meth:`open` to :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.damaged: list[int] = []
        self._fd: int | None = None

    @classmethod
    def open(cls, path: Path, *, not_same_as: Path | None = None) -> Self:
        """Open (creating it when missing) and lock the log; refuse when it is ``not_same_as``."""
        log = cls(path)
        try:
            log._fd = log._open_locked()
            if not_same_as is not None:
                log._refuse_same_file(not_same_as)
            log._remove_stale_temporaries()
        except BaseException:
            log.close()
            raise
        return log

    @property
    def _target(self) -> Path:
        """The file the log's path names, through any symbolic link."""
        return Path(os.path.realpath(self.path))

    def _remove_stale_temporaries(self) -> None:
        """Remove the temporary files of a rewrite killed midway (no run holds them: this one holds
        the log, and a rewriting run holds both)."""
        target = self._target
        for stale in target.parent.glob(f".{glob.escape(target.name)}.inboxcheck-*.tmp"):
            with contextlib.suppress(OSError):
                if not stale.is_symlink() and stale.is_file():
                    fd = os.open(stale, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        stale.unlink()
                    finally:
                        os.close(fd)

    def _refuse_special(self, mode: int) -> None:
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a directory"
                if stat.S_ISDIR(mode)
                else "not a regular file"
            )
            raise ResultsLogError(
                f"{self.path} is {kind}; the results log must be a regular file (or a new path), "
                "since a run reads it back to resume"
            )

    def _open_locked(self) -> int:
        while True:
            with contextlib.suppress(OSError):
                self._refuse_special(self.path.stat().st_mode)
            try:
                # Non-blocking: a FIFO put there since the check above fails here instead of hanging.
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
                fd = os.open(self.path, flags, 0o600)
            except OSError as exc:
                raise ResultsLogError(f"{self.path}: cannot open the results log: {_reason(exc)}") from None
            try:
                self._refuse_special(os.fstat(fd).st_mode)
                os.set_blocking(fd, True)
            except BaseException:
                os.close(fd)
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ResultsLogError(
                    f"{self.path} is the results log of another inboxcheck run that is still going; "
                    "wait for it to finish, or give another --output"
                ) from None
            except OSError as exc:
                os.close(fd)
                raise ResultsLogError(f"{self.path}: cannot lock the results log: {_reason(exc)}") from None
            # A run rewriting the log may have renamed a new file over the one opened here: hold
            # the lock on the file the path names now, or the two runs would not see each other.
            with contextlib.suppress(OSError):
                here, there = os.fstat(fd), self.path.stat()
                if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
                    return fd
            os.close(fd)

    def _refuse_same_file(self, other: Path) -> None:
        assert self._fd is not None
        try:
            theirs = os.fstat(0) if other == Path("-") else other.stat()
        except OSError:
            return
        ours = os.fstat(self._fd)
        if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino) and other == Path("-"):
            raise ResultsLogError(
                f"standard input is {self.path} itself: the run would read its own results back "
                "without end; give the batch file by its name, or another --output"
            )
        if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino):
            raise ResultsLogError(
                f"{self.path} is the batch file itself (the same file, a hard link or a symbolic "
                "link to it); the results need a file of their own, e.g. results.jsonl"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ResultsLogError(f"{self.path}: the results log is closed")
        return self._fd

    def is_empty(self) -> bool:
        return os.fstat(self.fd).st_size == 0

    def append(self, data: bytes, *, durable: bool = False) -> None:
        """Append one complete line; ``durable`` also waits until it is on disk.

        A write that fails stops the run with the OS's reason: nothing is appended after a line that
        may be torn, so a torn line is always the last one, which the next resume cuts off.
        """
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
            if durable:
                os.fsync(self.fd)
        except OSError as exc:
            self.close()
            raise ResultsLogError(f"{self.path}: cannot write the results log: {_reason(exc)}") from None

    def records(self, parse: Callable[[bytes], Record]) -> Iterator[Record]:
        """Every readable record, in order. ``parse`` raises ValueError for a line it cannot read.

        A damaged line is skipped and its number kept in :attr:`damaged`; a torn last line (a run
        killed mid-write) is cut off the file.
        """
        for _line, record in self.entries(parse):
            if record is not None:
                yield record

    def entries(self, parse: Callable[[bytes], Record]) -> Iterator[tuple[Line, Record | None]]:
        """Every line in order with its record, or None for a damaged one (see :meth:`records`)."""
        self.damaged.clear()
        for line, record in self._scan(parse):
            if record is None:
                self.damaged.append(line.number)
            yield line, record

    def _scan(self, parse: Callable[[bytes], Record]) -> Iterator[tuple[Line, Record | None]]:
        mode = os.fstat(self.fd).st_mode
        if not stat.S_ISREG(mode):
            raise ResultsLogError(f"{self.path}: --resume needs a regular file as the results log")
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise ResultsLogError(f"{self.path}: cannot read the results log: {_reason(exc)}") from None
        with handle:
            for line in read_lines(handle, limit=MAX_LOG_LINE_BYTES):
                if not line.complete:
                    self._cut(line.offset)
                    return
                if line.data is None or not line.data.strip():
                    if line.data is None:
                        yield line, None
                    continue
                try:
                    yield line, parse(line.data)
                except ValueError:
                    yield line, None

    def _cut(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise ResultsLogError(f"{self.path}: cannot cut the torn last line: {_reason(exc)}") from None

    def rewrite(self, parse: Callable[[bytes], Record], keep: Callable[[Record], bool]) -> None:
        """Drop the records ``keep`` refuses (it sees every readable one). Damaged lines stay as they are.

        The new file takes the log's mode and owner, is fsynced and locked, then renamed over the log.
        """
        before = os.fstat(self.fd)
        target = self._target
        try:
            fd, name = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.inboxcheck-", suffix=".tmp"
            )
        except OSError as exc:
            raise ResultsLogError(f"{self.path}: cannot rewrite the results log: {_reason(exc)}") from None
        temporary = Path(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(fd, stat.S_IMODE(before.st_mode))
            with contextlib.suppress(PermissionError):
                os.fchown(fd, before.st_uid, before.st_gid)
            self.damaged.clear()
            with self.path.open("rb") as source:
                for line, record in self._scan(parse):
                    if record is None:
                        self.damaged.append(line.number)
                    elif not keep(record):
                        continue
                    _copy(source, fd, line)
            os.fsync(fd)
            temporary.replace(target)
        except BaseException as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                temporary.unlink()
            if isinstance(exc, OSError):
                reason = _reason(exc)
                raise ResultsLogError(f"{self.path}: cannot rewrite the results log: {reason}") from None
            raise
        _fsync_directory(target.parent)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.fsync(fd)
            os.close(fd)


def _copy(source: IO[bytes], fd: int, line: Line) -> None:
    if line.data is not None:
        data = memoryview(line.data)
        while data:
            data = data[os.write(fd, data) :]
        return
    source.seek(line.offset)
    left = line.size
    while left:
        chunk = memoryview(source.read(min(left, _COPY_CHUNK)))
        left -= len(chunk)
        while chunk:
            chunk = chunk[os.write(fd, chunk) :]


def _fsync_directory(path: Path) -> None:
    # The rename is durable only once the directory entry is: without this a crash can bring the
    # old log back.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
