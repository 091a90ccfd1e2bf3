"""Process bookkeeping without psutil: find, signal and reap the lab's daemons through /proc.

Every daemon the lab starts leads its own session (Postfix's master calls ``setsid`` itself;
Dovecot and NSD are started with ``start_new_session``), so "every process of this server" is
"every process whose session id is the daemon's pid". That survives the daemon re-parenting its
children and lets ``stop`` kill stragglers without ever touching processes it did not start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.types import LabError

_PROC = Path("/proc")
_POLL_INTERVAL = 0.01
INSTALL_HINT = "run scripts/install-system-deps.sh (as root) to install the lab's servers"


def find_binary(name: str) -> str:
    """Absolute path of a server binary; /usr/sbin is searched even when it is not on PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise LabError(f"{name} is not installed: {INSTALL_HINT}")
    return found


def session_members(session_ids: Iterable[int]) -> list[int]:
    """Pids of live (non-zombie) processes belonging to any of ``session_ids``."""
    wanted = set(session_ids)
    if not wanted:
        return []
    members: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(entry / "stat")
        if stat is not None and stat[1] != "Z" and stat[2] in wanted:
            members.append(int(entry.name))
    return members


def lab_processes(workdir: Path, *, exclude: Collection[int] = ()) -> list[int]:
    """Live processes of the lab in ``workdir``, found without any bookkeeping: their command
    line or working directory mentions the work dir. That holds for every lab server process
    (Postfix daemons run in the queue dir, Dovecot's in its base_dir, NSD is started with its
    config path), and not for the process that owns the lab or for a ``lab exec`` command."""
    marker = str(workdir)
    skip = {os.getpid(), *exclude}
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        stat = _read_stat(entry / "stat")
        if stat is None or stat[1] == "Z":
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            cwd = str((entry / "cwd").readlink())
            if marker in cmdline or cwd == marker or cwd.startswith(marker + "/"):
                found.append(int(entry.name))
    return found


def sweep_lab_processes(workdir: Path, *, grace: float, exclude: Collection[int] = ()) -> list[int]:
    """Terminate the sessions of every process :func:`lab_processes` finds; return survivors."""
    pids = lab_processes(workdir, exclude=exclude)
    sessions = {stat[2] for pid in pids if (stat := _read_stat(_PROC / str(pid) / "stat"))}
    leaders = [SessionLeader(sid, executable=executable_name(sid) or None) for sid in sessions]
    return terminate_sessions(leaders, grace=grace)


def process_name(pid: int) -> str:
    """The kernel's short command name of ``pid`` ("" if it is gone)."""
    try:
        return (_PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def executable_name(pid: int) -> str:
    """Base name of the program ``pid`` runs ("" if it is gone or a zombie).

    Used instead of the command name because daemons retitle themselves ("nsd: xfrd").
    """
    try:
        target = (_PROC / str(pid) / "exe").readlink()
    except OSError:
        return ""
    return target.name.removesuffix(" (deleted)")


def _read_stat(path: Path) -> tuple[str, str, int] | None:
    """(comm, state, session id) from /proc/PID/stat, or None if the process vanished."""
    try:
        raw = path.read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields: state ppid pgrp session ...
    return comm, fields[0], int(fields[3])


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid`` if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@dataclass(frozen=True)
class SessionLeader:
    """A daemon that leads its own session, and how to tell that its pid is still the lab's.

    ``own_child``: an unreaped child of this process, so its pid cannot belong to anyone else.
    ``executable``: otherwise (pid read from a pid file), signal the pid only while it runs this
    program. Neither: the leader is known dead and reaped; only orphaned members may be left.
    """

    pid: int
    own_child: bool = False
    executable: str | None = None

    def is_ours(self) -> bool:
        """Whether signalling ``pid`` reaches the lab's daemon and not a stranger."""
        if self.own_child:
            return True
        return self.executable is not None and executable_name(self.pid) == self.executable


def terminate_sessions(leaders: Iterable[SessionLeader], *, grace: float) -> list[int]:
    """SIGTERM each session, wait up to ``grace`` s, then SIGKILL every member left.

    The SIGTERM is repeated every quarter second: a daemon caught mid-start (Dovecot re-executes
    itself through doveconf) can lose the first one. Members whose leader is gone are signalled
    themselves. A session whose leader pid now belongs to a stranger is left alone; with no
    process at that pid, remaining members are the lab's orphans (the kernel never reuses a
    pid while it is still some process's session id).
    Returns the pids still alive after the SIGKILL round (should be empty).
    """
    ours = [leader for leader in leaders if leader.is_ours() or not _pid_exists(leader.pid)]
    sessions = {leader.pid for leader in ours}
    deadline = time.monotonic() + grace
    while session_members(sessions) and time.monotonic() < deadline:
        _sigterm_round(ours)
        wait_until(lambda: not session_members(sessions), timeout=_RESIGNAL_INTERVAL)
    for pid in session_members(sessions):
        signal_pid(pid, signal.SIGKILL)
    wait_until(lambda: not session_members(sessions), timeout=2.0)
    return session_members(sessions)


_RESIGNAL_INTERVAL = 0.25


def _sigterm_round(leaders: Iterable[SessionLeader]) -> None:
    for leader in leaders:
        if leader.is_ours():
            signal_pid(leader.pid, signal.SIGTERM)
        else:  # leader gone: its orphans get the signal directly
            for pid in session_members([leader.pid]):
                signal_pid(pid, signal.SIGTERM)


def _pid_exists(pid: int) -> bool:
    return (_PROC / str(pid)).exists()


class ForegroundDaemon:
    """A server run in the foreground as a child of this process, in a session of its own.

    The lab owns the pid (no pid file to trust), sees an early exit at once (a config error),
    and reaps the process after the shutdown sweep, so no zombie and no ResourceWarning from
    ``Popen`` is left behind.
    """

    def __init__(self, name: str, output_file: Path) -> None:
        self.name = name
        self.output_file = output_file
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, argv: list[str], *, cwd: Path | None = None) -> None:
        """Launch ``argv`` with stdout and stderr going to :attr:`output_file`."""
        with self.output_file.open("wb") as output:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                cwd=cwd,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        """The exit status if the daemon has already died, else None."""
        return self._process.poll() if self._process is not None else None

    def leader(self) -> SessionLeader | None:
        """The daemon as a session leader, for the lab's shutdown sweep."""
        if self._process is None:
            return None
        return SessionLeader(self._process.pid, own_child=self._process.returncode is None)

    def pids(self) -> list[int]:
        """Live pids of the daemon and its children."""
        return session_members([self._process.pid] if self._process is not None else [])

    def reap(self) -> None:
        """Collect the exit status after the sweep."""
        if self._process is None:
            return
        try:
            self._process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def wait_until(predicate: Callable[[], bool], *, timeout: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` s pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)


def tcp_listening(address: str, port: int) -> bool:
    """True if a socket is in LISTEN state on ``address:port`` (read from /proc/net/tcp).

    Checking the kernel's table instead of connecting means readiness probes spawn no
    imap-login or smtpd for a connection nobody uses; such a process would still be winding
    down when a quick ``stop()`` follows ``start()`` and delay Dovecot's shutdown.
    """
    wanted = f"{_hex_ipv4(address)}:{port:04X}"
    try:
        lines = (_PROC / "net" / "tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if fields[1] == wanted and fields[3] == _TCP_LISTEN:
            return True
    return False


_TCP_LISTEN = "0A"


def _hex_ipv4(address: str) -> str:
    """/proc/net/tcp's form of an IPv4 address: the 4 bytes in host (little-endian) order."""
    return "".join(f"{int(part):02X}" for part in reversed(address.split(".")))


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, labelled, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"--- {path}: (no log)"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- {path} (last {lines} lines):\n{tail or '(empty)'}"
