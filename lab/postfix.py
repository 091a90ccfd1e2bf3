"""One private Postfix instance (``postfix -c CONFIG_DIR``) with a submission port per TLS case."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.certs import LabCerts
from lab.procs import SessionLeader, find_binary, log_tail, session_members
from lab.templates import render_file
from lab.types import LabStartError, TlsMode

_START_TIMEOUT = 20.0


@dataclass(frozen=True)
class SmtpListener:
    """One ``smtpd`` line of master.cf: a port with its TLS mode and certificate."""

    name: str
    port: int
    tls: TlsMode
    cert: str  # role in LabCerts: good, expired, selfsigned, wrongname


def listener_options(listener: SmtpListener, certs: LabCerts) -> dict[str, str]:
    """The ``-o`` overrides that make one smtpd listener behave as its name says."""
    pair = certs.by_name(listener.cert)
    options = {
        "syslog_name": f"postfix/{listener.name}",
        "smtpd_sasl_auth_enable": "yes",
        # Submission ports relay only for logged-in users (also for mail to lab.test).
        "smtpd_relay_restrictions": "permit_sasl_authenticated,reject",
        "smtpd_tls_cert_file": str(pair.cert),
        "smtpd_tls_key_file": str(pair.key),
    }
    if listener.tls == "starttls":
        options |= {"smtpd_tls_security_level": "encrypt", "smtpd_tls_auth_only": "yes"}
    elif listener.tls == "implicit":
        options |= {
            "smtpd_tls_wrappermode": "yes",
            "smtpd_tls_security_level": "encrypt",
            "smtpd_tls_auth_only": "yes",
        }
    else:
        # No STARTTLS at all and AUTH in the clear: the trap for clients that send credentials
        # over plaintext without being told they may.
        options |= {"smtpd_tls_security_level": "none", "smtpd_tls_auth_only": "no"}
    return options


def master_cf_services(listeners: list[SmtpListener], certs: LabCerts) -> str:
    """The smtpd lines of master.cf, one per listener, with their ``-o`` overrides."""
    blocks = []
    for listener in listeners:
        lines = [f"127.0.0.1:{listener.port} inet n - n - - smtpd"]
        lines += [f"  -o {k}={v}" for k, v in listener_options(listener, certs).items()]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _backdate(config_dir: Path) -> None:
    """Give the fresh config files an mtime in the past.

    Postfix treats a config file modified within the last second or so as "hot" (maybe still
    being written) and re-reads it every 300 ms until it cools down: ~2.4 s lost per start.
    """
    past = time.time() - 60
    for path in config_dir.iterdir():
        os.utime(path, (past, past))


def _run_on_terminal(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; return its status and output.

    Postfix commands print their errors ("fatal: parameter inet_interfaces: ...") only when
    stderr is a terminal; otherwise they go to syslog, which this machine does not have. A pipe
    would not do either: the daemonised master inherits it and keeps it open for about two more
    seconds, which reading to end-of-file would sit out. So: a pty, read once the command exits.
    """
    controller, terminal = os.openpty()
    try:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=terminal,
            timeout=timeout,
            check=False,
        )
        os.set_blocking(controller, False)
        chunks = []
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(controller, 65536):
                chunks.append(chunk)
    finally:
        os.close(terminal)
        os.close(controller)
    return result.returncode, b"".join(chunks).decode(errors="replace").strip()


class PostfixInstance:
    """Render, start and stop the lab's Postfix.

    ``postfix -c DIR start`` wants a root-owned config dir that others cannot write, and a
    root-owned queue dir that exists before the first start. The master daemon makes itself a
    session leader, so stopping is "SIGTERM the master, then sweep its session": much faster than
    ``postfix stop``, which polls in whole seconds.
    """

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = root
        self.config_dir = root / "etc"
        self.queue_dir = root / "queue"
        self.data_dir = root / "data"
        self.log_dir = log_dir
        self.log_file = log_dir / "postfix.log"
        self._master_pid: int | None = None

    def configure(
        self,
        *,
        listeners: list[SmtpListener],
        certs: LabCerts,
        auth_socket: Path,
        lmtp_socket: Path,
        milter_socket: Path,
        mailboxes: list[str],
    ) -> None:
        """Write main.cf, master.cf and the mailbox list; create the dirs Postfix insists on."""
        postfix_user = pwd.getpwnam("postfix")
        for directory in (self.root, self.config_dir, self.queue_dir):
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            directory.chmod(0o755)  # umask must not leave group/other write bits
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)

        mailboxes_file = self.config_dir / "virtual_mailboxes"
        mailboxes_file.write_text("".join(f"{address} OK\n" for address in mailboxes))
        values: Mapping[str, object] = {
            "config_dir": self.config_dir,
            "queue_dir": self.queue_dir,
            "data_dir": self.data_dir,
            "log_file": self.log_file,
            "log_dir": self.log_dir,
            "mailboxes_file": mailboxes_file,
            "lmtp_socket": lmtp_socket,
            "milter_socket": milter_socket,
            "mailbox_domains": " ".join(sorted({address.partition("@")[2] for address in mailboxes})),
            "auth_socket": auth_socket,
            "good_cert": certs.good.cert,
            "good_key": certs.good.key,
            "smtpd_services": master_cf_services(listeners, certs),
        }
        (self.config_dir / "main.cf").write_text(render_file("postfix-main.cf.tmpl", values))
        (self.config_dir / "master.cf").write_text(render_file("postfix-master.cf.tmpl", values))
        _backdate(self.config_dir)

    def start(self) -> None:
        """Run ``postfix start``; it returns once the master has bound every listener."""
        try:
            returncode, said = _run_on_terminal(
                [find_binary("postfix"), "-c", str(self.config_dir), "start"], _START_TIMEOUT
            )
        except subprocess.TimeoutExpired as exc:
            self._remember_master()
            raise LabStartError(f"postfix start timed out\n{self.logs()}") from exc
        self._remember_master()
        if returncode != 0:
            raise LabStartError(
                f"postfix start failed (exit {returncode}): {said or '(no output)'}\n{self.logs()}"
            )

    def pids(self) -> list[int]:
        """Live pids of the master and its children."""
        self._remember_master()
        return session_members([self._master_pid] if self._master_pid else [])

    def leader(self) -> SessionLeader | None:
        """The master as a session leader, for the lab's shutdown sweep. Its pid comes from a
        file, so it is trusted only while that pid runs Postfix's ``master``."""
        self._remember_master()
        if self._master_pid is None:
            return None
        return SessionLeader(self._master_pid, executable="master")

    def forget(self) -> None:
        """After the sweep: the master leaves its pid file behind, and a later stop() (or a
        reused pid) must not be mistaken for this instance."""
        (self.queue_dir / "pid" / "master.pid").unlink(missing_ok=True)
        self._master_pid = None

    def logs(self) -> str:
        """Tail of the maillog, for start errors."""
        return log_tail(self.log_file)

    def _remember_master(self) -> None:
        """Read the master's pid once it has written it (also after a half-failed start)."""
        if self._master_pid is not None:
            return
        try:
            text = (self.queue_dir / "pid" / "master.pid").read_text().strip()
        except OSError:
            return
        if text.isdigit():
            self._master_pid = int(text)
