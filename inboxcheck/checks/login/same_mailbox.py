"""Whether the SMTP and the IMAP login reach the same mailbox.

What can really be known: a successful SMTP AUTH or IMAP LOGIN proves only that *this username and
password* are accepted by *that server*. Neither protocol names the mailbox behind a login (SMTP AUTH
returns a bare 235; IMAP LOGIN an OK, with no identity in it), so inboxcheck cannot prove that both
logins open the same mailbox. It compares what it does know:

- the usernames each server accepted (case-insensitive; a bare local part on one side and the full
  address on the other is the documented iCloud convention, and accepted when the local part and the
  account's domain agree);
- the service the two servers belong to: the same provider preset, a shared certificate name or
  address, or the same organisational domain of the host names (found by the DMARC DNS Tree Walk,
  RFC 9989 4.10, so ``smtp.acme.co.uk`` and ``imap.other.co.uk`` are two organisations).

The platform's API says the IMAP account "must be the same account as SMTP to ensure reply tracking
works correctly". Different usernames are therefore a failure (the gate blocks the create), unless
they name one mailbox by the provider's rules (:func:`mailbox_key`: case, a ``+tag``, Gmail's dots and
googlemail.com, iCloud's bare local part and its me.com/mac.com aliases), or the send test proves it
(the message the SMTP login sent to the address was found by the IMAP login). Servers of unrelated
services with the same username are a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, CheckSpec, Outcome
from inboxcheck._endpoint import Endpoint
from inboxcheck._models import Severity, Status
from inboxcheck._options import Family
from inboxcheck.checks.dns.lookups import Lookups
from inboxcheck.checks.dns.treewalk import organisational_domain, same_organisation
from inboxcheck.checks.login.net import _ip_literal

__all__ = ["CHECKS", "LoginFact", "check_same_mailbox", "fact_key", "mailbox_key"]


@dataclass(frozen=True)
class LoginFact:
    """What one successful login established, shared through ``ctx.facts``."""

    endpoint: Endpoint
    username: str
    address: str | None
    preset_id: str | None = None
    cert_names: tuple[str, ...] = field(default=())

    def evidence(self) -> dict[str, JsonValue]:
        return {
            "username": self.username,
            "host": self.endpoint.host,
            "port": self.endpoint.port,
            "address": self.address,
            "cert_names": list(self.cert_names),
        }


def fact_key(protocol: str) -> str:
    """The key under which a check leaves its :class:`LoginFact` in ``ctx.facts``."""
    return f"{protocol}.login"


_GMAIL: Final = frozenset({"gmail.com", "googlemail.com"})
_ICLOUD: Final = frozenset({"icloud.com", "me.com", "mac.com"})


def mailbox_key(username: str, domain: str) -> str:
    """The mailbox a username names, by the providers' rules: case-insensitive; a ``+tag`` is the same
    mailbox (sub-addressing, RFC 5233); Gmail ignores dots and googlemail.com is gmail.com; iCloud's
    me.com and mac.com are icloud.com aliases; a bare local part is that local part at ``domain``."""
    text = username.strip().lower()
    local, at, dom = text.rpartition("@")
    if not at:
        local, dom = text, domain.lower().rstrip(".")
    local = local.split("+", 1)[0] or local
    if dom in _GMAIL:
        local, dom = local.replace(".", ""), "gmail.com"
    elif dom in _ICLOUD:
        dom = "icloud.com"
    return f"{local}@{dom}"


def _same_user(smtp: str, imap: str, domain: str) -> bool:
    return mailbox_key(smtp, domain) == mailbox_key(imap, domain)


async def _proved_by_send_test(ctx: CheckContext) -> bool:
    """Whether the send test found, through the IMAP login, the message the SMTP login sent to the
    account's own address (not to --to, which proves nothing about this mailbox)."""
    options = ctx.options
    if not options.send_test or options.send_to is not None or options.send_to_account is not None:
        return False
    found = await ctx.result_of("send.find")
    if found is None or found.status not in (Status.PASS, Status.WARN):
        return False
    return all(f.code == "send.find.junk" for f in found.findings)


def _same_service(smtp: LoginFact, imap: LoginFact) -> tuple[bool, str]:
    if smtp.endpoint.key[1] == imap.endpoint.key[1]:
        return True, "both logins went to the same host"
    if smtp.preset_id and smtp.preset_id == imap.preset_id and smtp.preset_id != "custom":
        return True, f"both hosts belong to the {smtp.preset_id} preset"
    if smtp.address and smtp.address == imap.address:
        return True, f"both hosts resolve to {smtp.address}"
    shared = set(smtp.cert_names) & set(imap.cert_names)
    if shared:
        return True, f"both servers present a certificate for {sorted(shared)[0]}"
    return False, "the two hosts share no domain, address, certificate name or provider"


async def _same_organisation(ctx: CheckContext, smtp: LoginFact, imap: LoginFact) -> tuple[bool, str]:
    """The last rule, the one that needs lookups: the hosts' organisational domains."""
    if _ip_literal(smtp.endpoint.host) is not None or _ip_literal(imap.endpoint.host) is not None:
        return False, "the two hosts share no domain, address, certificate name or provider"
    lookups = Lookups(ctx)
    orgs = [await organisational_domain(lookups, host) for host in (smtp.endpoint.host, imap.endpoint.host)]
    if same_organisation(orgs[0], orgs[1]):
        return True, f"both hosts belong to {orgs[0]}"
    if None in orgs:
        return False, (
            "the two hosts share no address, certificate name or provider, and their organisational "
            "domains could not be looked up"
        )
    return False, "the two hosts share no domain, address, certificate name or provider"


async def check_same_mailbox(ctx: CheckContext) -> Outcome:
    smtp_result = await ctx.result_of("smtp.login")
    imap_result = await ctx.result_of("imap.login")
    smtp = ctx.facts.get(fact_key("smtp"))
    imap = ctx.facts.get(fact_key("imap"))
    ran = [r for r in (smtp_result, imap_result) if r is not None and r.status is not Status.SKIPPED]
    if not isinstance(smtp, LoginFact) or not isinstance(imap, LoginFact) or len(ran) < 2:
        return Outcome.skip("needs both the SMTP and the IMAP login to succeed")
    same_user = _same_user(smtp.username, imap.username, ctx.account.domain)
    same_service, why = _same_service(smtp, imap)
    if not same_service:
        same_service, why = await _same_organisation(ctx, smtp, imap)
    evidence: dict[str, JsonValue] = {
        "smtp": smtp.evidence(),
        "imap": imap.evidence(),
        "service_reason": why,
    }
    out = Outcome(summary="")
    if not same_user and same_service and await _proved_by_send_test(ctx):
        out.summary = (
            f"SMTP logs in as {smtp.username} and IMAP as {imap.username}, and the send test proved they "
            "are one mailbox: the IMAP login found the message the SMTP login sent to the address"
        )
        out.details = {**evidence, "proved_by": "send test"}
        return out
    if same_user and same_service:
        out.summary = (
            f"SMTP and IMAP both log in as {smtp.username} on the same service ({why}); inboxcheck "
            "cannot see the mailbox behind a login, so this compares usernames and servers"
        )
        out.details = evidence
        return out
    reasons = []
    if not same_user:
        reasons.append(f"SMTP logs in as {smtp.username!r} but IMAP as {imap.username!r}")
    if not same_service:
        smtp_host, imap_host = smtp.endpoint.host, imap.endpoint.host
        reasons.append(f"the SMTP server {smtp_host} and the IMAP server {imap_host} look unrelated ({why})")
    out.summary = "the SMTP and IMAP logins may belong to different mailboxes"
    out.add(
        "login.mailbox_mismatch",
        # The platform requires one account for both; usernames that name two mailboxes block the gate.
        Severity.WARN if same_user else Severity.FAIL,
        "The SMTP and IMAP logins both work, but " + " and ".join(reasons) + "; if they are different "
        "mailboxes, the platform sends from one and watches the other, so reply tracking breaks"
        + ("." if same_user else " (the platform requires the same account for both)."),
        fix="Use the credentials of one mailbox for both: the IMAP account must be the inbox that "
        f"receives replies to {ctx.account.email_address}"
        + ("." if same_user else "; if they are one mailbox, run with --send-test to prove it."),
        **evidence,
    )
    return out


CHECKS = [
    CheckSpec(
        "login.same_mailbox",
        "Same mailbox for SMTP and IMAP",
        Family.IMAP,
        check_same_mailbox,
        needs=("smtp.login", "imap.login"),
    ),
]
