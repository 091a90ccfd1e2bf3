"""Stops a lab whose owner died without calling ``stop()``.

``Lab.start`` spawns this as ``python -m lab.watchdog WORKDIR remove|keep`` in a session of its
own, with its stdin a pipe the owner keeps open. A clean ``stop()`` writes ``dismiss`` and closes
the pipe. End-of-file without it means the owner is gone (a SIGKILL, a test run killed by a
timeout, a crash): the watchdog then ends every lab process and removes the work dir, so no
orphaned Postfix, Dovecot or NSD keeps ports and CPU on a shared machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Literal

from lab.layout import REPO_ROOT
from lab.procs import executable_name, lab_processes, signal_pid, sweep_lab_processes

DISMISS = b"dismiss"


def start_watchdog(workdir: Path, mode: Literal["remove", "keep"]) -> subprocess.Popen[bytes]:
    """The owner's side: a process that cleans up if this one dies without ``stop()``."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    with (workdir / "watchdog.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "lab.watchdog", str(workdir), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONPATH": pythonpath},
            cwd="/",
            start_new_session=True,
        )


def dismiss_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    """Tell the watchdog the lab stopped cleanly, and reap it."""
    if watchdog is None or watchdog.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError):
        watchdog.stdin.write(DISMISS)
    with contextlib.suppress(BrokenPipeError):
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def main(argv: list[str]) -> int:
    """Wait for the owner to dismiss this watchdog or to die; in the second case, clean up."""
    workdir, mode = Path(argv[0]), argv[1]
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only the pipe decides
    if sys.stdin.buffer.read() == DISMISS:
        os._exit(0)  # nothing to flush or finalise: skip the interpreter's shutdown

    for pid in lab_processes(workdir):
        # OpenDKIM needs seconds to exit on SIGTERM and has nothing to save (as in Lab.stop).
        if executable_name(pid) == "opendkim":
            signal_pid(pid, signal.SIGKILL)
    survivors = sweep_lab_processes(workdir, grace=3.0)
    if mode == "remove" and not survivors:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
