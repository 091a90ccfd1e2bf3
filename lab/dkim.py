"""OpenDKIM as a signing milter for the lab's submission ports, with a key made at every start."""

from __future__ import annotations

import base64
import grp
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.procs import ForegroundDaemon, find_binary, log_tail
from lab.templates import render_file

_KEY_SIZE = 2048
# RFC 1035 character-strings hold at most 255 bytes; longer TXT data is several strings.
_TXT_CHUNK = 255


@dataclass(frozen=True)
class DkimKey:
    """A signing key: ``selector._domainkey.domain`` publishes ``record``."""

    domain: str
    selector: str
    private_key_pem: bytes = field(repr=False)
    record: str  # the TXT data, unquoted: "v=DKIM1; k=rsa; p=..."

    @property
    def name(self) -> str:
        """The DNS name of the public key."""
        return f"{self.selector}._domainkey.{self.domain}"

    def zone_strings(self) -> str:
        """The record as quoted strings of at most 255 characters, for a zone file."""
        chunks = [self.record[i : i + _TXT_CHUNK] for i in range(0, len(self.record), _TXT_CHUNK)]
        return " ".join(f'"{chunk}"' for chunk in chunks)


def make_dkim_key(domain: str, selector: str) -> DkimKey:
    """A fresh RSA key; the public half as an RFC 6376 key record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    return DkimKey(domain=domain, selector=selector, private_key_pem=pem, record=record)


class OpenDkim:
    """``opendkim -f -x CONF``: the lab's child in a session of its own.

    OpenDKIM needs several seconds to exit on SIGTERM and keeps no state worth a clean exit, so
    the lab ends it with SIGKILL (see ``Lab.stop``).
    """

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = root
        self.config_file = root / "opendkim.conf"
        self.socket = root / "run" / "milter"
        self.daemon = ForegroundDaemon("opendkim", log_dir / "opendkim.stderr")

    def configure(self, key: DkimKey) -> None:
        """Write the key, the key and signing tables and opendkim.conf."""
        user = pwd.getpwnam("opendkim")
        postfix_gid = grp.getgrnam("postfix").gr_gid
        self.root.mkdir(mode=0o755)
        keys = self.root / "keys"
        keys.mkdir(mode=0o700)
        os.chown(keys, user.pw_uid, user.pw_gid)
        key_file = keys / f"{key.selector}.private"
        key_file.touch(mode=0o600)
        key_file.write_bytes(key.private_key_pem)
        os.chown(key_file, user.pw_uid, user.pw_gid)
        # OpenDKIM creates its socket as the opendkim user; smtpd (group postfix) must reach it.
        run = self.socket.parent
        run.mkdir(mode=0o750)
        os.chown(run, user.pw_uid, postfix_gid)

        key_table = self.root / "key.table"
        key_table.write_text(f"{key.name} {key.domain}:{key.selector}:{key_file}\n")
        signing_table = self.root / "signing.table"
        signing_table.write_text(f"*@{key.domain} {key.name}\n")
        values = {"socket": self.socket, "key_table": key_table, "signing_table": signing_table}
        self.config_file.write_text(render_file("opendkim.conf.tmpl", values))

    def start(self) -> None:
        """Launch OpenDKIM in the foreground (``-f``); ready once its socket exists."""
        self.daemon.start([find_binary("opendkim"), "-f", "-x", str(self.config_file)], cwd=self.root)

    def ready(self) -> bool:
        """Whether the milter socket exists yet."""
        return self.socket.exists()

    def logs(self) -> str:
        """OpenDKIM logs only to syslog (absent here): its stderr is all there is."""
        return log_tail(self.daemon.output_file, 20)
