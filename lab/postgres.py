"""A throwaway PostgreSQL cluster on loopback: Debian's binaries, ``initdb`` in a temporary directory
(as the ``postgres`` user when run as root: initdb refuses root), a free port, the socket in that
directory. Nothing system-wide is started or changed. The fleet's tests and benchmark share it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PG_BIN", "Postgres", "throwaway_postgres"]

PG_BIN = Path(os.environ.get("INBOXCHECK_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass(frozen=True)
class Postgres:
    port: int
    socket_dir: Path
    run_as: list[str]
    # The server's ``-o`` options (port, socket directory, settings): a restart keeps them.
    options: str = ""

    @property
    def data(self) -> Path:
        return self.socket_dir / "data"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def command(self, *args: str) -> list[str]:
        return [*self.run_as, *args]

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: its sessions are ended; ``immediate``: as a crash would)."""
        subprocess.run(
            self.command(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        """Start the server again on the same directory and port (after :meth:`stop`)."""
        subprocess.run(
            self.command(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                self.options,
                "-l",
                str(self.socket_dir / "log"),
                "-w",
                "start",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def throwaway_postgres(*, settings: Sequence[str] = (), prefix: str = "inboxcheck-pg-") -> Iterator[Postgres]:
    """Start a cluster (``settings``: extra ``-c name=value`` server settings), stop and remove it."""
    if not (PG_BIN / "initdb").exists():
        raise FileNotFoundError(
            f"PostgreSQL is not installed ({PG_BIN}/initdb): run scripts/install-system-deps.sh"
        )
    root = Path(tempfile.mkdtemp(prefix=prefix))
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    port = _free_port()
    try:
        subprocess.run(
            [*run_as, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        options = " ".join(
            [
                f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off",
                *(f"-c {s}" for s in settings),
            ]
        )
        server = Postgres(port, root, run_as, options)
        server.start()
        yield server
    finally:
        subprocess.run(
            [*run_as, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(root, ignore_errors=True)
