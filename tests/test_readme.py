"""The README documents every finding code inboxcheck can produce, and the commands it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from inboxcheck.checks.login.tls import TlsFailureKind
from inboxcheck.discovery.gather import AUTOCONFIG_PROBLEMS
from inboxcheck.platform.outcomes import ApiOutcome

ROOT = Path(__file__).resolve().parent.parent
_PREFIXES = "account|dns|smtp|imap|login|run|internal|diagnose|discover|send|input|create"
CODE = re.compile(rf"\"((?:{_PREFIXES})\.[a-z0-9_]+(?:\.[a-z0-9_]+)*)\"")
# Check names, not finding codes (they share the dotted form).
CHECK_NAMES = {
    "smtp.login",
    "imap.login",
    "login.same_mailbox",
    "dns.mx",
    "dns.spf",
    "dns.dkim",
    "dns.dmarc",
    "dns.receivers",
    "dns.fcrdns",
    "dns.blocklists",
    "send.permission",
    "send.message",
    "send.find",
    "send.verify",
    "send.cleanup",
    # Keys under which one check hands a fact to another (ctx.facts), not codes either.
    "send.landing",
    "send.sent",
    "send.test_message",
}


def _produced_codes() -> set[str]:
    codes: set[str] = set()
    for path in [*(ROOT / "inboxcheck").rglob("*.py"), *(ROOT / "inboxcheck" / "knowledge").glob("*.toml")]:
        codes |= set(CODE.findall(path.read_text(encoding="utf-8")))
    for protocol in ("smtp", "imap"):
        codes |= {f"{protocol}.tls.{kind.value}" for kind in TlsFailureKind}
        codes |= {f"{protocol}.tls.cert_expiring", f"{protocol}.tls.weak_version"}
        codes |= {
            f"{protocol}.connect.{suffix}" for suffix in ("refused", "timeout", "failed", "unresolvable")
        }
    codes |= {f"api.{o.value}" for o in ApiOutcome if o is not ApiOutcome.CREATED}
    codes |= {f"discover.autoconfig.{kind}" for kind in AUTOCONFIG_PROBLEMS}
    return codes - CHECK_NAMES


def test_every_finding_code_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z]+\.[a-z0-9_.]+)`", readme))
    account_checks = {
        "account.usernames",
        "account.provider",
        "account.tls",
        "account.auth_policy",
        "account.app_password",
        "account.display_name",
        "account.daily_limit",
    }

    def is_documented(code: str) -> bool:
        # The README documents the SMTP/IMAP twins once, under smtp. ("the same codes under imap.").
        return code in documented or (code.startswith("imap.") and "smtp." + code[5:] in documented)

    missing = sorted(code for code in _produced_codes() - account_checks if not is_documented(code))
    assert missing == []


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scripts/demo.sh" in readme and "scripts/test.sh" in readme
    assert (ROOT / "scripts" / "demo.sh").stat().st_mode & 0o111
    assert (ROOT / "scripts" / "test.sh").stat().st_mode & 0o111
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
