"""``python -m lab up`` and ``python -m lab exec -- CMD``: the lab from a shell.

Both stop every server on the way out, whether the run ends normally, by an error, by Ctrl-C or
by SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from lab.core import Lab
from lab.types import LabError

ENV_VAR = "INBOXCHECK_LAB_JSON"
#: Exit status when the lab itself fails (as ``env`` and ``timeout`` do for their own errors).
EXIT_LAB_FAILED = 125


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lab``."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "up":
            return _up(json_path=args.json, keep=args.keep)
        return _exec(list(args.cmd), keep=args.keep)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return EXIT_LAB_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab", description="Real Postfix, Dovecot and NSD on loopback."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the lab and run until SIGINT/SIGTERM")
    up.add_argument(
        "--json",
        type=Path,
        help="also write the lab info, with the user "
        "passwords, to this file (mode 0600; removed when the lab stops)",
    )
    up.add_argument("--keep", action="store_true", help="keep the work dir (logs) after stop")
    run = sub.add_parser(
        "exec",
        help="start the lab, run CMD, stop the lab, exit with CMD's "
        f"status; CMD finds the lab info in ${ENV_VAR}",
    )
    run.add_argument("--keep", action="store_true", help="keep the work dir (logs) after stop")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    return parser


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` readable by its owner only (it holds passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the file may have existed with wider permissions
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def _up(*, json_path: Path | None, keep: bool) -> int:
    lab = Lab(keep_workdir=keep)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM behaves as Ctrl-C
    try:
        lab.start()
        if json_path is not None:
            write_private_json(json_path, lab.info(with_passwords=True))
        print(json.dumps(lab.info(), indent=2), flush=True)
        print("lab: up; stop it with Ctrl-C or SIGTERM", file=sys.stderr, flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        _ignore_signals()
        lab.stop()
        if json_path is not None:
            json_path.unlink(missing_ok=True)  # its passwords die with the lab


def _exec(cmd: list[str], *, keep: bool) -> int:
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("lab: error: exec needs a command: python -m lab exec -- CMD ARGS...", file=sys.stderr)
        return 2
    lab = Lab(keep_workdir=keep)
    child: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        lab.start()
        info_file = lab.workdir / "lab.json"
        write_private_json(info_file, lab.info(with_passwords=True))
        child = subprocess.Popen(cmd, env={**os.environ, ENV_VAR: str(info_file)})
        _forward_signals_to(child)
        return _exit_status(child.wait())
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except FileNotFoundError as exc:
        print(f"lab: error: cannot run {cmd[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    finally:
        _ignore_signals()
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait()
        lab.stop()


def _forward_signals_to(child: subprocess.Popen[bytes]) -> None:
    """While CMD runs, pass SIGTERM on to it; a terminal's Ctrl-C reaches it by itself, so the
    lab just waits for CMD to react. (Python handlers, not SIG_IGN: the child must not inherit
    an ignored signal.)"""

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    def note(signum: int, frame: FrameType | None) -> None:
        return None

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, note)


def _ignore_signals() -> None:
    """A second Ctrl-C must not interrupt the shutdown and leave servers behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _exit_status(returncode: int) -> int:
    """A shell's convention: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode
