"""Microsoft's end of SMTP AUTH Basic authentication, in every report of a Microsoft password login.

Exchange Team blog, 27 January 2026 (message center MC786329): at the end of December 2026 SMTP AUTH
with a password is turned off by default for existing tenants (administrators can turn it back on),
tenants created after that never have it, and the final removal date is to be announced in the second
half of 2027 (its reply: ``550 5.7.30 Basic authentication is not supported for Client Submission``).

The SMTP login's own reply decides what the finding is: a login that worked gets a warning (it works
today, for as long as an administrator keeps SMTP AUTH on); a login refused because Basic auth is off
(5.7.30, 5.7.139 "basic authentication is disabled") has the timeline added to that finding, which is
the failure's cause; any other outcome gets the warning too (it applies once the password is right).
The date is the run's clock (``CheckContext.now``), never read here.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from inboxcheck._check import CheckContext, Outcome
from inboxcheck._models import InboxType, Severity

__all__ = [
    "CUTOFF",
    "MICROSOFT_PRESETS",
    "add_basic_auth_notice",
    "basic_auth_timeline",
    "is_microsoft",
    "limit_caveats",
]

#: The day from which the change is in the past tense: "the end of December 2026".
CUTOFF: Final = date(2026, 12, 31)
MICROSOFT_PRESETS: Final = ("microsoft-365", "outlook-com")
SOURCE: Final = "Exchange Team blog, 27 January 2026; Microsoft 365 message center MC786329"
_MICROSOFT_HOSTS: Final = (".office365.com", ".outlook.com", ".office.com")
#: The reply rules whose finding means "refused because Basic auth is off": the timeline is its cause.
_BASIC_AUTH_OFF: Final = frozenset({"smtp.auth.basic_auth_retired", "smtp.auth.basic_auth_disabled"})
CODE: Final = "smtp.auth.basic_auth_ending"


def is_microsoft(ctx: CheckContext) -> bool:
    """An OUTLOOK_365 account, a Microsoft preset among the candidates, or a Microsoft SMTP host."""
    account = ctx.account
    host = account.smtp_host.lower().rstrip(".")
    return (
        account.inbox_type is InboxType.OUTLOOK_365
        or any(preset.id in MICROSOFT_PRESETS for preset in ctx.candidate_presets)
        or any(host.endswith(suffix) for suffix in _MICROSOFT_HOSTS)
    )


def basic_auth_timeline(now: datetime) -> str:
    """The change, told in the tense of ``now``."""
    if now.date() < CUTOFF:
        return (
            "Microsoft turns SMTP AUTH Basic authentication off by default for existing tenants at the end "
            "of December 2026; this login keeps working only where an administrator keeps SMTP AUTH on; "
            "move to OAuth2."
        )
    return (
        "Since the end of December 2026 Microsoft has SMTP AUTH Basic authentication off by default for "
        "existing tenants (tenants created since then never have it); this login keeps working only where "
        "an administrator keeps SMTP AUTH on, until Microsoft removes it for good (the date is to be "
        "announced in the second half of 2027); move to OAuth2."
    )


def limit_caveats(ctx: CheckContext) -> tuple[str, ...]:
    """What a daily limit assumes of a password SMTP login at Microsoft, told in the tense of the
    run's date (the recommendation's ``caveats``); nothing for a token login or another provider."""
    if ctx.account.smtp_credential.is_token or not is_microsoft(ctx):
        return ()
    if ctx.now().date() < CUTOFF:
        change = (
            "SMTP AUTH Basic authentication goes off by default for existing tenants at the end of December "
            "2026 (an administrator can turn it back on), and is removed for good later (the date is to be "
            "announced in the second half of 2027)"
        )
    else:
        change = (
            "since the end of December 2026 SMTP AUTH Basic authentication is off by default for existing "
            "tenants (tenants created since then never have it), and it is removed for good later (the "
            "date is to be announced in the second half of 2027)"
        )
    return (
        "this limit assumes the password login keeps working, and Microsoft is retiring it: "
        f"{change}; move to OAuth2, which inboxcheck checks too (a token in INBOXCHECK_SMTP_OAUTH_TOKEN, "
        "or --oauth-provider microsoft with a refresh token)",
    )


def add_basic_auth_notice(ctx: CheckContext, out: Outcome) -> None:
    """The timeline for a password SMTP login at Microsoft, as the login's reply makes it (see above)."""
    if ctx.account.smtp_credential.is_token or out.skipped or not is_microsoft(ctx):
        return
    timeline = basic_auth_timeline(ctx.now())
    for index, found in enumerate(out.findings):
        if found.code in _BASIC_AUTH_OFF:
            out.findings[index] = found.model_copy(
                update={
                    "message": f"{found.message} {timeline}",
                    "evidence": {**found.evidence, "timeline_source": SOURCE},
                }
            )
            return
    worked = "authenticated_as" in out.details
    out.add(
        CODE,
        Severity.WARN,
        ("This password login works today. " if worked else "") + timeline,
        fix="Connect the mailbox with OAuth2 (XOAUTH2, scope https://outlook.office.com/SMTP.Send); check it "
        "now with a token (INBOXCHECK_SMTP_OAUTH_TOKEN or --oauth-refresh-token-file).",
        login_worked=worked,
        as_of=ctx.now().date().isoformat(),
        source=SOURCE,
    )
