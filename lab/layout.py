"""The lab's fixed layout: its domains and host names, and which listener each server opens.

The ports are free ones picked at every start (:meth:`lab.Lab.start`); these tables name the
listeners and say what each one is (TLS mode, certificate, address).
"""

from __future__ import annotations

from pathlib import Path

from lab.types import TlsMode

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE_ZONES = REPO_ROOT / "fixtures" / "zones"
DOMAIN = "lab.test"
MAIL_HOST = "mail.lab.test"
SECOND_HOST = "imap2.lab.test"  # A 127.0.0.2 in the lab zone
#: A second local mail domain whose mail OpenDKIM does not sign.
UNSIGNED_DOMAIN = "unsigned.test"
#: OpenDKIM signs lab.test mail as ``DKIM_SELECTOR._domainkey.lab.test``.
DKIM_SELECTOR = "labsign"

# name -> (TLS mode, certificate role). All on 127.0.0.1, served by the one Postfix instance.
SMTP_LISTENERS: dict[str, tuple[TlsMode, str]] = {
    "submission": ("starttls", "good"),
    "submissions": ("implicit", "good"),
    "expired": ("starttls", "expired"),
    "selfsigned": ("starttls", "selfsigned"),
    "wrongname": ("starttls", "wrongname"),
    "nostarttls": ("none", "good"),
}
# name -> (Dovecot instance, TLS mode, address).
IMAP_LISTENERS: dict[str, tuple[str, TlsMode, str]] = {
    "imaps": ("main", "implicit", "127.0.0.1"),
    "imap_starttls": ("main", "starttls", "127.0.0.1"),
    "logindisabled": ("main", "starttls", "127.0.0.2"),
    "expired": ("expired", "implicit", "127.0.0.1"),
    "expired_starttls": ("expired", "starttls", "127.0.0.1"),
    "selfsigned": ("selfsigned", "implicit", "127.0.0.1"),
    "selfsigned_starttls": ("selfsigned", "starttls", "127.0.0.1"),
    "wrongname": ("wrongname", "implicit", "127.0.0.1"),
    "wrongname_starttls": ("wrongname", "starttls", "127.0.0.1"),
}
# Dovecot instance -> its certificate role.
DOVECOT_CERTS = {"main": "good", "expired": "expired", "selfsigned": "selfsigned", "wrongname": "wrongname"}
