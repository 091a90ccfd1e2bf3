"""Dovecot instances: the main one (IMAP, LMTP, SASL for Postfix) and one per bad certificate."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.certs import LabCerts
from lab.procs import ForegroundDaemon, find_binary, log_tail
from lab.templates import TEMPLATE_DIR, render_file
from lab.types import LabUser, TlsMode


@dataclass(frozen=True)
class ImapListener:
    """One ``inet_listener`` of ``imap-login``."""

    name: str
    address: str
    port: int
    tls: TlsMode

    def config(self) -> str:
        ssl = "yes" if self.tls == "implicit" else "no"
        return (
            f"  inet_listener {self.name} {{\n"
            f"    address = {self.address}\n"
            f"    port = {self.port}\n"
            f"    ssl = {ssl}\n"
            "  }"
        )


@dataclass(frozen=True)
class MailStore:
    """What every instance shares: the users file and the Maildir root, owned by ``uid``."""

    users_file: Path
    mail_root: Path
    uid: int
    gid: int


def ssha512(password: str) -> str:
    """Dovecot's ``{SSHA512}`` scheme: base64(sha512(password + salt) + salt).

    Keeps clear-text passwords out of the users file without the deprecated ``crypt`` module.
    """
    salt = secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


def write_users_file(path: Path, users: Iterable[LabUser], dovecot_gid: int) -> None:
    """passwd-file readable by Dovecot's auth process, which runs as the ``dovecot`` user."""
    lines = [f"{user.username}:{ssha512(user.password)}\n" for user in users]
    path.touch(mode=0o640)
    path.write_text("".join(lines))
    os.chown(path, 0, dovecot_gid)


class DovecotInstance:
    """One ``dovecot -F -c CONFIG`` process tree, led by a session of its own."""

    def __init__(
        self,
        *,
        name: str,
        root: Path,
        log_dir: Path,
        cert_role: str,
        listeners: list[ImapListener],
        main: bool,
    ) -> None:
        self.name = name
        self.root = root
        self.base_dir = root / "run"
        self.config_file = root / "dovecot.conf"
        self.log_file = log_dir / f"dovecot-{name}.log"
        self.cert_role = cert_role
        self.listeners = listeners
        self.main = main
        self.daemon = ForegroundDaemon(f"dovecot-{name}", log_dir / f"dovecot-{name}.stderr")

    @property
    def auth_socket(self) -> Path:
        """SASL socket for Postfix (main instance only)."""
        return self.base_dir / "auth-postfix"

    @property
    def lmtp_socket(self) -> Path:
        """LMTP delivery socket for Postfix (main instance only)."""
        return self.base_dir / "lmtp"

    def configure(
        self, *, certs: LabCerts, store: MailStore, instance_prefix: str, introspection_url: str
    ) -> None:
        """Write this instance's dovecot.conf, and its oauth2 passdb's file."""
        self.root.mkdir(mode=0o755, exist_ok=True)
        oauth2_conf = self.root / "dovecot-oauth2.conf.ext"
        oauth2_conf.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {introspection_url}\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        pair = certs.by_name(self.cert_role)
        values = {
            "instance": self.name,
            "base_dir": self.base_dir,
            "state_dir": self.root / "state",
            "instance_name": f"{instance_prefix}-{self.name}",
            "protocols": "imap lmtp" if self.main else "imap",
            "log_file": self.log_file,
            "cert": pair.cert,
            "key": pair.key,
            "users_file": store.users_file,
            "oauth2_conf": oauth2_conf,
            "mail_uid": store.uid,
            "mail_gid": store.gid,
            "mail_root": store.mail_root,
            "imap_listeners": "\n".join(listener.config() for listener in self.listeners),
            "extra_services": self._main_services(store) if self.main else "",
        }
        self.config_file.write_text(render_file("dovecot.conf.tmpl", values))

    def _main_services(self, store: MailStore) -> str:
        """SASL and LMTP for Postfix, and the global sieve rule LMTP applies."""
        # LMTP runs as the mail user and compiles the rule next to it on first use.
        sieve_dir = self.root / "sieve"
        sieve_dir.mkdir(mode=0o755)
        os.chown(sieve_dir, store.uid, store.gid)
        script = sieve_dir / "junk.sieve"
        shutil.copyfile(TEMPLATE_DIR / "junk.sieve", script)
        return render_file("dovecot-main-services.conf.tmpl", {"sieve_before": script})

    def start(self) -> None:
        """Launch the master in the foreground (``-F``): the lab owns its pid and session."""
        self.daemon.start([find_binary("dovecot"), "-F", "-c", str(self.config_file)])

    def sockets_ready(self) -> bool:
        """Whether the UNIX sockets Postfix needs exist yet."""
        if not self.main:
            return True
        return self.auth_socket.exists() and self.lmtp_socket.exists()

    def logs(self) -> str:
        """Tails of this instance's log and of its stderr (config errors land there)."""
        return f"{log_tail(self.daemon.output_file, 10)}\n{log_tail(self.log_file)}"
