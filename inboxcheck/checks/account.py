"""Offline checks of the account payload: no network, only the payload and the provider preset.

They catch the mistakes that make a connection fail before a byte is sent: a username the provider
will not accept, hosts of one provider under another's inbox type, a port with the wrong TLS mode, a
main password where an app password is needed, a daily limit that burns a new mailbox.

What they say about one of the account's servers is a prediction (``Outcome.predict``): when the live
login on that server works in the same run, the runner makes a predicted failure a warning (the
account works today; the finding still says what the provider documents). See ``inboxcheck._check``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext, CheckSpec, Outcome
from inboxcheck._endpoint import Endpoint, TlsMode
from inboxcheck._limits import EVIDENCE_CHECKS, RECOMMENDATION_FACT, recommend_daily_limit
from inboxcheck._models import Account, Finding, InboxType, Severity
from inboxcheck._options import Family
from inboxcheck._presets import BasicAuth, Preset, ServiceSpec, UsernameRule
from inboxcheck.checks.login.microsoft import limit_caveats

__all__ = ["CHECKS"]


def _local_part(address: str) -> str:
    return address.rsplit("@", 1)[0]


def _expected_username(rule: UsernameRule, account: Account) -> str | None:
    if rule is UsernameRule.EMAIL:
        return account.email_address
    if rule is UsernameRule.LOCAL_PART:
        return _local_part(account.email_address)
    return None


async def check_usernames(ctx: CheckContext) -> Outcome:
    account, preset = ctx.account, ctx.preset
    out = Outcome(summary="SMTP and IMAP log in as the mailbox being connected")
    smtp_user, imap_user = account.smtp_username.strip(), account.imap_username.strip()
    rules = {
        "smtp_username": preset.smtp.username if preset else UsernameRule.ANY,
        "imap_username": preset.imap.username if preset else UsernameRule.ANY,
    }
    for field, given in (("smtp_username", smtp_user), ("imap_username", imap_user)):
        expected = _expected_username(rules[field], account)
        if (
            expected is None
            or given.lower() == expected.lower()
            or _full_address_works(rules[field], given, account)
        ):
            continue
        provider = preset.name if preset else "the provider"
        server = account.endpoint("smtp" if field == "smtp_username" else "imap")
        if "@" not in given and rules[field] is UsernameRule.EMAIL:
            out.predict(
                server,
                "account.username_mismatch",
                Severity.FAIL,
                f"{field} is {given!r}, but {provider} expects the full address as the username.",
                fix=f"Set {field} to {expected}.",
                field=field,
                username=given,
                expected=expected,
            )
        else:
            out.add(
                "account.username_mismatch",
                Severity.WARN,
                f"{field} is {given!r}, not the address being connected ({account.email_address}); "
                f"{provider} logs in as one mailbox and sends as another only if that alias is set up.",
                fix=f"Set {field} to {expected}, or make sure {account.email_address} is a verified "
                f"send-as alias of {given}.",
                field=field,
                username=given,
                expected=expected,
            )
    if _same_identity(smtp_user, imap_user, rules, account):
        pass
    else:
        out.add(
            "account.username_mismatch",
            Severity.WARN,
            f"SMTP logs in as {smtp_user!r} but IMAP as {imap_user!r}: if these are different "
            "mailboxes, replies land where the platform is not watching and reply tracking breaks.",
            fix="Use the same mailbox for both; normally both usernames are the full address.",
            smtp_username=smtp_user,
            imap_username=imap_user,
        )
    if out.findings:
        out.summary = "the usernames do not all name the mailbox being connected"
    return out


def _full_address_works(rule: UsernameRule, given: str, account: Account) -> bool:
    """A provider that documents the local part (iCloud IMAP) also takes the full address."""
    return rule is UsernameRule.LOCAL_PART and given.lower() == account.email_address.lower()


def _same_identity(smtp_user: str, imap_user: str, rules: dict[str, UsernameRule], account: Account) -> bool:
    if smtp_user.lower() == imap_user.lower():
        return True
    # A provider whose rules differ per protocol (iCloud: local part for IMAP) is not a mismatch.
    expected = {f: _expected_username(r, account) for f, r in rules.items()}
    return (
        expected["smtp_username"] is not None
        and expected["imap_username"] is not None
        and smtp_user.lower() == expected["smtp_username"].lower()
        and imap_user.lower() == expected["imap_username"].lower()
    )


async def check_provider(ctx: CheckContext) -> Outcome:
    account = ctx.account
    smtp_preset = ctx.presets.by_smtp_host(account.smtp_host, account.smtp_port)
    imap_preset = ctx.presets.by_imap_host(account.imap_host, account.imap_port)
    out = Outcome(summary=f"inbox_type {account.inbox_type.value} fits the hosts")
    details: dict[str, str | None] = {
        "smtp_host_provider": smtp_preset.id if smtp_preset else None,
        "imap_host_provider": imap_preset.id if imap_preset else None,
    }
    out.details.update(details)
    if (
        smtp_preset is not None
        and imap_preset is not None
        and smtp_preset.id != imap_preset.id
        and not _shared_host_pair(smtp_preset, imap_preset)
    ):
        out.add(
            "account.inbox_type_mismatch",
            Severity.FAIL,
            f"The SMTP host {account.smtp_host} belongs to {smtp_preset.name} but the IMAP host "
            f"{account.imap_host} to {imap_preset.name}: one account cannot live at both.",
            fix="Take both hosts from the same provider's settings page.",
            smtp_host=account.smtp_host,
            imap_host=account.imap_host,
        )
    # The hosts and inbox_type disagreeing is a warning, not a failure: a relay or tunnel in front of
    # a provider is a working setup, and whether the logins work is for the login checks to say
    # (with the reply knowledge of both candidate providers).
    detected = smtp_preset or imap_preset
    if detected is not None and detected.inbox_type is not account.inbox_type:
        out.add(
            "account.inbox_type_mismatch",
            Severity.WARN,
            f"The hosts belong to {detected.name}, but inbox_type is {account.inbox_type.value}.",
            fix=f"Set inbox_type to {detected.inbox_type.value}: the platform applies that "
            "provider's limits and rules.",
            inbox_type=account.inbox_type.value,
            detected=detected.id,
            expected_inbox_type=detected.inbox_type.value,
        )
    elif detected is None and account.inbox_type is not InboxType.CUSTOM_SMTP:
        expected = ctx.presets.for_inbox_type(account.inbox_type)
        hosts = ""
        if expected is not None:
            smtp_default, imap_default = expected.smtp.preferred(), expected.imap.preferred()
            if smtp_default and imap_default:
                hosts = f" ({smtp_default.host} and {imap_default.host})"
        out.add(
            "account.inbox_type_mismatch",
            Severity.WARN,
            f"inbox_type is {account.inbox_type.value}, but neither {account.smtp_host} nor "
            f"{account.imap_host} is one of that provider's hosts (a relay or tunnel in front of "
            "it works only if it passes the logins on).",
            fix=f"Use the provider's own hosts{hosts}, or set inbox_type to CUSTOM_SMTP if the "
            "mailbox is hosted elsewhere.",
            inbox_type=account.inbox_type.value,
            smtp_host=account.smtp_host,
            imap_host=account.imap_host,
        )
    if out.findings:
        out.summary = "inbox_type and the hosts disagree about the provider"
    return out


def _shared_host_pair(a: Preset, b: Preset) -> bool:
    """Two presets of one company that share hosts (Microsoft 365 and Outlook.com share IMAP)."""
    return a.inbox_type is b.inbox_type and a.inbox_type is not InboxType.CUSTOM_SMTP


async def check_tls_ports(ctx: CheckContext) -> Outcome:
    account, preset = ctx.account, ctx.preset
    out = Outcome(summary="ports and TLS settings agree")
    smtp, imap = account.endpoint("smtp"), account.endpoint("imap")
    smtp_mode, imap_mode = smtp.tls, imap.tls
    out.details.update({"smtp_tls": smtp_mode.value, "imap_tls": imap_mode.value})

    if account.smtp_port == 465 and not account.smtp_use_tls:
        out.predict(
            smtp,
            "account.tls_port_mismatch",
            Severity.FAIL,
            "smtp_port is 465, which speaks TLS from the first byte, but smtp_use_tls is false.",
            fix="Set smtp_use_tls to true (or use port 587 with STARTTLS).",
            smtp_port=465,
            smtp_use_tls=False,
        )
    elif not account.smtp_use_tls:
        required = preset is not None and not preset.is_generic and preset.smtp.requires_tls
        out.predict(
            smtp,
            "account.tls_port_mismatch",
            Severity.FAIL if required else Severity.WARN,
            "smtp_use_tls is false: the password would cross the network unencrypted"
            + (f", and {preset.name} refuses logins without TLS." if required and preset else "."),
            fix="Set smtp_use_tls to true; use 587 (STARTTLS) or 465 (implicit TLS).",
            smtp_port=account.smtp_port,
            smtp_use_tls=False,
        )
    if account.smtp_port == 25:
        out.predict(
            smtp,
            "account.tls_port_mismatch",
            Severity.WARN,
            "smtp_port is 25, the port servers use to relay mail to each other; many networks block "
            "it and most providers do not accept logins there.",
            fix="Use the submission port 587 (STARTTLS) or 465 (implicit TLS).",
            smtp_port=25,
        )
    if account.imap_port == 993 and not account.imap_use_ssl:
        out.predict(
            imap,
            "account.tls_port_mismatch",
            Severity.FAIL,
            "imap_port is 993, which speaks TLS from the first byte, but imap_use_ssl is false.",
            fix="Set imap_use_ssl to true.",
            imap_port=993,
            imap_use_ssl=False,
        )
    elif account.imap_port == 143 and account.imap_use_ssl:
        out.predict(
            imap,
            "account.tls_port_mismatch",
            Severity.FAIL,
            "imap_port is 143, which starts unencrypted (STARTTLS), but imap_use_ssl is true, which "
            "means TLS from the first byte: the handshake will fail.",
            fix="Use port 993 with imap_use_ssl true (recommended), or keep 143 and set imap_use_ssl "
            "to false for STARTTLS.",
            imap_port=143,
            imap_use_ssl=True,
        )
    # A provider's port table says nothing about a host that is not the provider's (a relay, a tunnel).
    if preset is not None and not preset.is_generic:
        if preset.matches_smtp_host(account.smtp_host, account.smtp_port):
            _compare_with_preset(out, preset, smtp)
        if preset.matches_imap_host(account.imap_host, account.imap_port):
            _compare_with_preset(out, preset, imap)
    if out.findings:
        out.summary = "ports and TLS settings do not agree"
    return out


def _compare_with_preset(out: Outcome, preset: Preset, server: Endpoint) -> None:
    service, port, mode = server.protocol, server.port, server.tls
    spec = preset.smtp if service == "smtp" else preset.imap
    if not spec.endpoints:
        return
    offered = {(e.port, e.tls) for e in spec.endpoints}
    ports = sorted({e.port for e in spec.endpoints})
    if (port, mode) in offered or mode is TlsMode.NONE:
        return
    listing = ", ".join(f"{e.host}:{e.port} ({e.tls.value})" for e in spec.endpoints)
    field_tls = "smtp_use_tls" if service == "smtp" else "imap_use_ssl"
    if port in ports:
        message = (
            f"{preset.name} offers {service.upper()} on port {port} with {_modes_at(spec, port)}, "
            f"but the account asks for {mode.value}."
        )
        fix = f"Set {field_tls} to match: {listing}."
    else:
        only = f" only on {ports[0]}" if len(ports) == 1 else f" on {', '.join(map(str, ports))}"
        message = f"{preset.name} offers {service.upper()}{only}, not on port {port}."
        fix = f"Use one of: {listing}."
    evidence: dict[str, JsonValue] = {
        f"{service}_host": server.host,
        f"{service}_port": port,
        "offered": listing,
    }
    out.predict(
        server,
        "account.tls_port_mismatch",
        Severity.FAIL,
        message,
        fix=fix,
        **evidence,
    )


def _modes_at(spec: ServiceSpec, port: int) -> str:
    return " or ".join(sorted(e.tls.value for e in spec.endpoints if e.port == port))


_EXCESSIVE_PUNCTUATION = re.compile(r"[!?$*]{2,}|[!?$]")
_ADDRESS_LIKE = re.compile(r"\S+@\S+|https?://|www\.", re.IGNORECASE)


async def check_display_name(ctx: CheckContext) -> Outcome:
    name = ctx.account.display_name.strip()
    out = Outcome(summary=f"display name {name!r} looks like a person")
    letters = [c for c in name if c.isalpha()]
    if _ADDRESS_LIKE.search(name):
        out.add(
            "account.display_name_style",
            Severity.WARN,
            f"The display name {name!r} is an address or link; recipients and filters trust a "
            "real name more.",
            fix="Use a person's name and company, e.g. 'John Smith, Acme'.",
            display_name=name,
        )
    if len(letters) >= 4 and all(c.isupper() for c in letters):
        out.add(
            "account.display_name_style",
            Severity.WARN,
            f"The display name {name!r} is all capitals, which reads as shouting and trips spam filters.",
            fix=f"Write it in normal case, e.g. {_plain(name).title()!r}.",
            display_name=name,
        )
    punctuation = [c for c in name if unicodedata.category(c).startswith(("P", "S")) and c not in ".,-'&()"]
    if _EXCESSIVE_PUNCTUATION.search(name) or len(punctuation) >= 3:
        out.add(
            "account.display_name_style",
            Severity.WARN,
            f"The display name {name!r} carries promotional punctuation or symbols.",
            fix="Remove characters such as ! ? $ * and emoji; use a plain name.",
            display_name=name,
        )
    if out.findings:
        out.summary = "the display name may hurt how mail is received"
    return out


def _plain(name: str) -> str:
    return " ".join("".join(c for c in name if c.isalnum() or c in " .,-'&()").split())


_GOOGLE_APP_PASSWORD = re.compile(r"^[a-z]{16}$")


async def check_app_password(ctx: CheckContext) -> Outcome:
    preset, account = ctx.preset, ctx.account
    if preset is None or not preset.auth.app_password_required:
        name = preset.name if preset else "this provider"
        return Outcome.skip(f"{name} does not require an app password")
    out = Outcome(summary=f"the passwords look like {preset.name} app passwords")
    if preset.auth.app_password_format == "google16":
        for field, secret in (
            ("smtp_password", account.smtp_password),
            ("imap_password", account.imap_password),
        ):
            raw = secret.get_secret_value()
            compact = raw.replace(" ", "")
            if not _GOOGLE_APP_PASSWORD.match(compact):
                # Evidence describes the shape only; the password itself never leaves this function.
                out.predict(
                    account.endpoint("smtp" if field == "smtp_password" else "imap"),
                    "account.app_password_expected",
                    Severity.WARN,
                    f"{field} is not shaped like a Google app password (16 letters); Google accepts "
                    "only app passwords for SMTP and IMAP, never the account's main password.",
                    fix="Turn on 2-Step Verification, create an app password at "
                    "myaccount.google.com/apppasswords, and use its 16 letters.",
                    field=field,
                    length=len(compact),
                    letters_only=compact.isalpha(),
                )
            elif compact != raw:
                out.add(
                    "account.app_password_expected",
                    Severity.INFO,
                    f"{field} has spaces: Google shows app passwords in groups of four, but the "
                    "spaces are not part of it.",
                    fix=f"Remove the spaces from {field}.",
                    field=field,
                )
    else:
        out.summary = f"{preset.name} needs an app password; its shape cannot be checked offline"
    if any(f.severity is not Severity.INFO for f in out.findings):
        out.summary = "a password does not look like an app password"
    return out


async def check_auth_policy(ctx: CheckContext) -> Outcome:
    preset = ctx.preset
    if preset is None or preset.is_generic:
        return Outcome.skip("no provider policy is known for custom hosts")
    out = Outcome(summary=f"{preset.name} allows password logins for SMTP and IMAP")
    smtp, imap = ctx.account.endpoint("smtp"), ctx.account.endpoint("imap")
    # A login with an OAuth2 token is the way in that the password policy points to: none of it applies.
    smtp_token = ctx.account.smtp_credential.is_token
    imap_token = ctx.account.imap_credential.is_token
    if smtp_token and imap_token:
        return Outcome(summary=f"both logins use an OAuth2 token, which {preset.name} accepts")
    if preset.auth.oauth_only:
        password_sides = tuple(ref for ref, token in ((smtp, smtp_token), (imap, imap_token)) if not token)
        out.predict(
            password_sides,
            "account.basic_auth_retired",
            Severity.FAIL,
            f"{preset.name} accepts only OAuth2 sign-in for SMTP and IMAP; no password works.",
            fix="Connect this mailbox with the platform's OAuth option, or use a mailbox at a "
            "provider that allows app passwords.",
            provider=preset.id,
        )
    else:
        if preset.auth.imap_basic_auth is BasicAuth.RETIRED and not imap_token:
            out.predict(
                imap,
                "account.basic_auth_retired",
                Severity.FAIL,
                f"{preset.name} has retired password (Basic) logins for IMAP; the IMAP login will be "
                "refused whatever the password.",
                fix="Connect the mailbox through the platform's OAuth2 option; password IMAP cannot "
                "be turned back on.",
                provider=preset.id,
                protocol="imap",
            )
        if smtp_token:
            pass
        elif preset.auth.smtp_basic_auth is BasicAuth.TENANT_SETTING:
            out.add(
                "account.smtp_auth_tenant_setting",
                Severity.INFO,
                f"{preset.name} allows password SMTP logins only where an administrator has turned "
                "SMTP AUTH on for the mailbox and Security Defaults are off.",
                fix="If the SMTP login fails, ask the administrator to run Set-CASMailbox -Identity "
                "<mailbox> -SmtpClientAuthenticationDisabled $false.",
                provider=preset.id,
                protocol="smtp",
            )
        elif preset.auth.smtp_basic_auth is BasicAuth.RETIRED:
            out.predict(
                smtp,
                "account.basic_auth_retired",
                Severity.FAIL,
                f"{preset.name} has retired password (Basic) logins for SMTP.",
                fix="Connect the mailbox through the platform's OAuth2 option.",
                provider=preset.id,
                protocol="smtp",
            )
    if any(f.severity is Severity.FAIL for f in out.findings):
        out.summary = f"{preset.name} refuses password logins for part of this account"
    elif out.findings:
        out.summary = f"{preset.name} allows password logins only under conditions"
    return out


async def check_daily_limit(ctx: CheckContext) -> Outcome:
    """The limit against the run's recommendation, which the DNS findings may have lowered: the check
    and the report's ``recommended_daily_limit`` are one judgement."""
    account, stage = ctx.account, ctx.options.stage
    findings: list[Finding] = []
    for name in EVIDENCE_CHECKS:
        result = await ctx.result_of(name)
        if result is not None:
            findings.extend(result.findings)
    recommendation = recommend_daily_limit(
        stage=stage,
        preset=ctx.preset,
        findings=findings,
        domain=ctx.account.domain,
        caveats=limit_caveats(ctx),
    )
    ctx.facts[RECOMMENDATION_FACT] = recommendation
    low, high = recommendation.stage_range
    recommended = recommendation.value
    adjustments = recommendation.reasons[1:]
    why = f" ({'; '.join(adjustments)})" if adjustments else ""
    evidence: dict[str, JsonValue] = {"recommended": recommended, "reasons": list(recommendation.reasons)}
    if recommendation.caveats:
        evidence["caveats"] = list(recommendation.caveats)
    if account.daily_limit is None:
        return Outcome(
            summary=f"no daily_limit given; {recommended} a day is recommended for a {stage.value} "
            f"mailbox{why}",
            details=evidence,
        )
    limit = account.daily_limit
    out = Outcome(
        summary=f"daily_limit {limit} suits a {stage.value} mailbox ({low}-{high})"
        + (f"; {recommended} a day is recommended" if recommended != limit else ""),
        details=evidence,
    )
    caps = {}
    preset = ctx.preset
    if preset is not None:
        provider_cap = preset.daily_cap(ctx.account.domain)
        if provider_cap is not None:
            caps["the provider's hard cap"] = provider_cap
        if preset.limits.platform_max is not None:
            caps["the platform's maximum"] = preset.limits.platform_max
    over = {name: cap for name, cap in caps.items() if limit > cap}
    if over:
        name, cap = min(over.items(), key=lambda item: item[1])
        out.add(
            "account.daily_limit_high",
            Severity.FAIL,
            f"daily_limit {limit} is above {name} of {cap} a day; the excess is refused or gets the "
            "mailbox suspended.",
            fix=f"Set daily_limit to at most {min(cap, recommended)}.",
            daily_limit=limit,
            cap=cap,
            **evidence,
        )
    elif adjustments and limit > recommended:
        out.add(
            "account.daily_limit_high",
            Severity.WARN,
            f"daily_limit {limit} is above the {recommended} a day recommended for this mailbox "
            f"({low}-{high} a day for a {stage.value} mailbox, {'; '.join(adjustments)}).",
            fix=f"Start at {recommended} a day (or lower) and raise it by about 2 a day as replies "
            "come in; fix what lowered it to be allowed more.",
            daily_limit=limit,
            stage=stage.value,
            **evidence,
        )
    elif limit > high:
        out.add(
            "account.daily_limit_high",
            Severity.WARN,
            f"daily_limit {limit} is above the {low}-{high} a day recommended for a {stage.value} "
            "mailbox; sending that much this early burns its reputation.",
            fix=f"Start at {low}-{high} a day and raise it by about 2 a day as replies come in "
            "(or pass --stage if the mailbox is further along).",
            daily_limit=limit,
            stage=stage.value,
            recommended_max=high,
            **evidence,
        )
    if out.findings:
        out.summary = f"daily_limit {limit} is too high; {recommended} a day is recommended{why}"
    return out


CHECKS: Final = [
    CheckSpec("account.usernames", "Usernames", Family.ACCOUNT, check_usernames),
    CheckSpec("account.provider", "Provider", Family.ACCOUNT, check_provider),
    CheckSpec("account.tls", "Ports and TLS", Family.ACCOUNT, check_tls_ports),
    CheckSpec("account.auth_policy", "Login policy", Family.ACCOUNT, check_auth_policy),
    CheckSpec("account.app_password", "App password", Family.ACCOUNT, check_app_password),
    CheckSpec("account.display_name", "Display name", Family.ACCOUNT, check_display_name),
    CheckSpec("account.daily_limit", "Daily limit", Family.ACCOUNT, check_daily_limit, needs=EVIDENCE_CHECKS),
]
