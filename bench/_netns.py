"""Running a benchmark inside a network namespace of its own, so its servers and packets share a
loopback with no one else. Linux, as root, with iproute2."""

from __future__ import annotations

import os
import subprocess
import sys


def in_namespace(prefix: str, script: str, argv: list[str]) -> int:
    """Re-run ``script`` with ``--inside`` and ``argv`` in a fresh namespace; delete it afterwards."""
    name = f"{prefix}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        cmd = ["ip", "netns", "exec", name, sys.executable, script, "--inside", *argv]
        return subprocess.run(cmd, check=False).returncode
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
