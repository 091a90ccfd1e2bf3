"""What the lab needs of the machine it runs on: the servers installed, root, the system users
(:func:`preflight`), and a work dir every server's unprivileged user can reach (:func:`make_workdir`,
:func:`check_workdir`).
"""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from pathlib import Path

from lab.procs import INSTALL_HINT, find_binary
from lab.types import LabError

_BINARIES = ("postfix", "dovecot", "nsd", "nsd-checkzone", "opendkim", "nginx")
# Dovecot's protocol binaries and plugins come in separate packages; dovecot runs without them.
_DOVECOT_PARTS = {
    "dovecot-imapd": "/usr/lib/dovecot/imap",
    "dovecot-lmtpd": "/usr/lib/dovecot/lmtp",
    "dovecot-sieve": "/usr/lib/dovecot/modules/lib90_sieve_plugin.so",
}
# Dovecot's deepest socket is base_dir + "/token-login/tokenlogin"; UNIX paths max out at 108.
_MAX_BASE_DIR = 70


def preflight() -> None:
    """Fail early and clearly when the lab cannot run on this machine."""
    for binary in _BINARIES:
        find_binary(binary)
    missing = [package for package, path in _DOVECOT_PARTS.items() if not Path(path).exists()]
    if missing:
        raise LabError(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (private Postfix and Dovecot instances need it)")
    for account in ("mail", "postfix", "dovecot", "dovenull"):
        try:
            pwd.getpwnam(account)
        except KeyError:
            raise LabError(f"system user {account!r} is missing: {INSTALL_HINT}") from None


def make_workdir(requested: Path | None) -> tuple[Path, bool]:
    """The work dir, and whether the lab made it: ``requested`` (made if missing, refused unless
    empty), else a short new path under /tmp (Dovecot's UNIX sockets live below it)."""
    if requested is not None:
        workdir = requested.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        if any(workdir.iterdir()):
            raise LabError(f"work dir {workdir} is not empty")
        return workdir, False
    return Path(tempfile.mkdtemp(prefix="ibl-", dir="/tmp")), True


def check_workdir(workdir: Path) -> None:
    """Refuse a work dir the servers could not use; open it to their unprivileged users."""
    if len(str(workdir)) + len("/d-selfsigned/run") > _MAX_BASE_DIR:
        raise LabError(f"work dir path {workdir} is too long for Dovecot's UNIX sockets")
    # Dovecot's mail, login and auth processes and Postfix's daemons run unprivileged and
    # must traverse the work dir and every folder above it.
    workdir.chmod(0o711)
    for folder in workdir.parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            raise LabError(
                f"{folder} is not searchable by others (chmod o+x): the servers' "
                f"unprivileged users could not reach the work dir {workdir}"
            )
