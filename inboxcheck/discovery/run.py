"""``discover``: settings from just an address.

Sources (a preset by the address's domain; else, together, the domain's MX hosts and their preset,
RFC 6186 service records, autoconfig files for the domain and then for the MX host's domain; guesses
when nothing else names a protocol: :mod:`inboxcheck.discovery.gather`) give candidates; each
candidate the payload can express is probed without a credential, then, with a password, logged in
to where a password may go. The best working SMTP and IMAP pair is the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from pydantic import JsonValue, SecretStr

from inboxcheck._check import CheckContext
from inboxcheck._endpoint import TlsMode
from inboxcheck._errors import AccountError
from inboxcheck._models import (
    Account,
    InboxType,
    Severity,
    Verdict,
    email_problem,
)
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets, load_presets
from inboxcheck._runner import build_options
from inboxcheck._secrets import Scrubber
from inboxcheck.discovery.choose import (
    merge,
    payload_fields,
    rank_key,
)
from inboxcheck.discovery.gather import _ascii_domain, _gather_within, _Run
from inboxcheck.discovery.model import (
    Candidate,
    CredentialUse,
    Discovery,
    MailProtocol,
    ProbeResult,
    SourceKind,
)

if TYPE_CHECKING:
    import ssl

    from inboxcheck.dns.client import DnsClient

__all__ = ["discover", "discover_sync"]

#: Logins tried per protocol before giving up: each failed one counts against the account's lockout.
MAX_LOGINS: Final = 3
_PROBES_AT_ONCE: Final = 8


def _placeholder_account(address: str, domain: str) -> Account:
    """The context's account while probing: no probe reads its passwords or hosts."""
    return Account(
        email_address=address,
        display_name=address,
        inbox_type=InboxType.CUSTOM_SMTP,
        smtp_host=domain,
        smtp_port=587,
        smtp_username=address,
        smtp_password=SecretStr("-"),
        imap_host=domain,
        imap_port=993,
        imap_username=address,
        imap_password=SecretStr("-"),
    )


async def discover(
    address: str,
    *,
    smtp_password: str | SecretStr | None = None,
    imap_password: str | SecretStr | None = None,
    options: CheckOptions | None = None,
    trust_hosts: Iterable[str] = (),
    autoconfig_port: int | None = None,
    probe: bool = True,
    given: Mapping[str, JsonValue] | None = None,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    dns_client: DnsClient | None = None,
    **option_overrides: Any,
) -> Discovery:
    """Find the SMTP and IMAP settings of ``address`` and try them.

    With a password, the chosen pair is logged in to (only over verified TLS, and only on a host that
    is a preset's, under the address's domain or its MX host's domain, or named in ``trust_hosts``);
    without one, a pair "works" when it answers over verified TLS and offers a login. ``probe=False``
    only gathers candidates (no connection is made). ``given`` are fields the user already knows (a
    partial payload): candidates agreeing with them win. ``autoconfig_port`` fetches autoconfig files
    from that HTTPS port instead of 443 (for test labs). Raises :class:`AccountError` for an address
    that is not one; everything else is in the result.
    """
    problem = email_problem(address)
    if problem:
        raise AccountError("address", message=f"{address!r} is not an email address: {problem}")
    started = time.monotonic()
    opts = build_options(options, option_overrides)
    presets = presets if presets is not None else load_presets()
    domain = _ascii_domain(address)
    ctx = CheckContext(
        _placeholder_account(address, domain),
        options=opts,
        presets=presets,
        match=None,
        ssl_context=ssl_context,
        dns_client=dns_client,
    )
    run = _Run(
        address,
        ctx,
        presets=presets,
        autoconfig_port=autoconfig_port,
        trust_hosts=frozenset(h.lower().rstrip(".") for h in trust_hosts),
    )
    await run.gather_sources()
    candidates = [c.model_copy(update={"trusted": run.trusted(c)}) for c in merge(run.candidates)]
    candidates = [_mark_expressible(c) for c in candidates]
    _disagreement(run, candidates)
    if probe:
        candidates = await _probe_all(ctx, candidates)
        passwords = {
            MailProtocol.SMTP: _secret(smtp_password),
            MailProtocol.IMAP: _secret(imap_password) or _secret(smtp_password),
        }
        if any(passwords.values()):
            candidates = await _log_in(run, candidates, passwords, presets)
    return _conclude(run, candidates, probe=probe, given=given or {}, started=started, presets=presets)


def _secret(value: str | SecretStr | None) -> SecretStr | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, SecretStr) else SecretStr(value)


def _mark_expressible(candidate: Candidate) -> Candidate:
    why = candidate.unexpressible()
    if why is None:
        return candidate
    return candidate.model_copy(
        update={"result": ProbeResult.NOT_EXPRESSIBLE, "reason": f"Passed over: {why}."}
    )


def _disagreement(run: _Run, candidates: list[Candidate]) -> None:
    """SRV and autoconfig both answered for a protocol and named no endpoint in common."""
    for protocol in MailProtocol:
        by_source: dict[SourceKind, set[str]] = {}
        for c in candidates:
            if c.protocol is protocol:
                for text in c.sources:
                    kind = SourceKind(text.split(" ", 1)[0])
                    by_source.setdefault(kind, set()).add(c.where)
        srv, auto = by_source.get(SourceKind.SRV), by_source.get(SourceKind.AUTOCONFIG)
        if srv and auto and not srv & auto:
            run.add(
                "discover.sources_disagree",
                Severity.WARN,
                "The domain's service records and its autoconfig file name different "
                f"{protocol.value.upper()} endpoints (SRV: {', '.join(sorted(srv))}; "
                f"autoconfig: {', '.join(sorted(auto))}); each was "
                "tried, and the one that works (and the payload can express) was chosen.",
                fix="Whoever runs the domain should make its SRV records and autoconfig file agree.",
                protocol=protocol.value,
                srv=list[JsonValue](sorted(srv)),
                autoconfig=list[JsonValue](sorted(auto)),
            )


async def _probe_all(ctx: CheckContext, candidates: list[Candidate]) -> list[Candidate]:
    from inboxcheck.discovery.probe import probe_endpoint

    limit = asyncio.Semaphore(_PROBES_AT_ONCE)

    async def one(candidate: Candidate) -> Candidate:
        async with limit:
            outcome = await probe_endpoint(ctx, candidate)
        evidence = {**candidate.evidence, "probe": outcome.evidence}
        return candidate.model_copy(
            update={"result": outcome.result, "reason": outcome.reason, "evidence": evidence}
        )

    todo = {
        i: asyncio.ensure_future(one(c))
        for i, c in enumerate(candidates)
        if c.result is ProbeResult.NOT_PROBED
    }
    await _gather_within(list(todo.values()), ctx.remaining())
    out = list(candidates)
    for i, task in todo.items():
        if task.cancelled():
            out[i] = out[i].model_copy(update={"reason": "Not tried: the run's deadline came first."})
        else:
            out[i] = task.result()
    return out


async def _log_in(
    run: _Run,
    candidates: list[Candidate],
    passwords: Mapping[MailProtocol, SecretStr | None],
    presets: Presets,
) -> list[Candidate]:
    out = list(candidates)
    for protocol in MailProtocol:
        password = passwords[protocol]
        order = sorted(
            (i for i, c in enumerate(out) if c.protocol is protocol and c.result is ProbeResult.AUTH_OFFERED),
            key=lambda i: rank_key(out[i]),
        )
        tries, done = 0, False
        for i in order:
            candidate = out[i]
            if password is None:
                continue
            if done:
                out[i] = candidate.model_copy(update={"credential": CredentialUse.NOT_NEEDED})
                continue
            if not candidate.trusted:
                out[i] = candidate.model_copy(
                    update={
                        "credential": CredentialUse.WITHHELD,
                        "reason": candidate.reason + " The password was not sent: "
                        f"{candidate.host} is not a preset's host and is outside {run.domain}"
                        + (f" and {run.mx_domain}" if run.mx_domain and run.mx_domain != run.domain else "")
                        + ".",
                    }
                )
                continue
            if tries >= MAX_LOGINS or run.ctx.remaining() <= 0:
                continue
            tries += 1
            out[i] = await _login_one(run, candidate, password, presets)
            done = out[i].result is ProbeResult.LOGGED_IN
    return out


async def _login_one(run: _Run, candidate: Candidate, password: SecretStr, presets: Presets) -> Candidate:
    """The SMTP or IMAP login check, run on this candidate alone."""
    from inboxcheck.checks.login.imap import check_imap_login
    from inboxcheck.checks.login.same_mailbox import fact_key
    from inboxcheck.checks.login.smtp import check_smtp_login

    username = candidate.username or run.address
    smtp = candidate.protocol is MailProtocol.SMTP
    account = Account(
        email_address=run.address,
        display_name=run.address,
        inbox_type=InboxType.CUSTOM_SMTP,
        smtp_host=candidate.host,
        smtp_port=candidate.port if smtp else 587,
        smtp_username=username,
        smtp_password=password,
        smtp_use_tls=candidate.tls_flag() if smtp else True,
        imap_host=candidate.host,
        imap_port=candidate.port if not smtp else 993,
        imap_username=username,
        imap_password=password,
        imap_use_ssl=candidate.tls_flag() if not smtp else True,
    )
    ctx = CheckContext(
        account,
        options=run.ctx.options,
        presets=presets,
        match=presets.match(
            smtp_host=account.smtp_host, imap_host=account.imap_host, inbox_type=account.inbox_type
        ),
        ssl_context=run.ctx.ssl_context,
        dns_client=run.ctx.dns,
    )
    check = check_smtp_login if smtp else check_imap_login
    try:
        async with asyncio.timeout(max(0.001, run.ctx.remaining())):
            outcome = await check(ctx)
    except TimeoutError:
        return candidate.model_copy(
            update={
                "result": ProbeResult.UNREACHABLE,
                "credential": CredentialUse.SENT,
                "reason": "The login did not finish before the run's deadline.",
            }
        )
    scrub = Scrubber.for_account(account)
    codes: list[JsonValue] = [f.code for f in outcome.findings if f.severity is not Severity.INFO]
    login: dict[str, JsonValue] = {"summary": scrub(outcome.summary), "codes": codes}
    evidence = {**candidate.evidence, "login": login}
    update: dict[str, Any] = {"credential": CredentialUse.SENT, "evidence": evidence}
    if fact_key(candidate.protocol.value) in ctx.facts:
        update |= {"result": ProbeResult.LOGGED_IN, "reason": scrub(outcome.summary).capitalize() + "."}
    else:
        worst = next((f for f in outcome.findings if f.severity is Severity.FAIL), None)
        unsure = next((f for f in outcome.findings if f.severity is Severity.ERROR), None)
        if worst is not None:
            update |= {"result": ProbeResult.LOGIN_FAILED, "reason": scrub(worst.message)}
        else:
            update |= {
                "result": ProbeResult.UNREACHABLE,
                "reason": scrub(unsure.message) if unsure else scrub(outcome.summary),
            }
    return candidate.model_copy(update=update)


def _conclude(
    run: _Run,
    candidates: list[Candidate],
    *,
    probe: bool,
    given: Mapping[str, JsonValue],
    started: float,
    presets: Presets,
) -> Discovery:
    password_used = any(c.credential is not CredentialUse.NOT_GIVEN for c in candidates)
    best: dict[MailProtocol, Candidate | None] = {}
    for protocol in MailProtocol:
        mine = [c for c in candidates if c.protocol is protocol]
        best[protocol] = min(mine, key=lambda c: rank_key(c, given=given)) if mine else None

    # A host a password may not go to is never chosen: the payload would send it there.
    def usable(c: Candidate | None) -> bool:
        if c is None or not c.trusted or c.result is ProbeResult.NOT_EXPRESSIBLE:
            return False
        return c.result.works or c.result.could_not_tell

    def working(c: Candidate | None) -> bool:
        if c is None or not c.trusted:
            return False
        if password_used and c.credential is not CredentialUse.NOT_GIVEN:
            return c.result is ProbeResult.LOGGED_IN
        return c.result.works

    smtp, imap = best[MailProtocol.SMTP], best[MailProtocol.IMAP]
    for c in candidates:
        if c.result is ProbeResult.NOT_EXPRESSIBLE and c.tls is not TlsMode.NONE:
            run.add(
                "discover.not_expressible",
                Severity.WARN,
                f"{c.protocol.value.upper()} at {c.where} (from {c.sources[0]}) was passed over: "
                f"{c.unexpressible()}.",
                fix="Use the endpoint chosen instead, or ask the provider for implicit TLS on 465 or "
                "STARTTLS on 587.",
                host=c.host,
                port=c.port,
                tls=c.tls.value,
            )
    untrusted: dict[str, list[Candidate]] = {}
    for c in candidates:
        if not c.trusted and c.result is not ProbeResult.NOT_EXPRESSIBLE:
            untrusted.setdefault(c.host, []).append(c)
    for host, named in untrusted.items():
        withheld = any(c.credential is CredentialUse.WITHHELD for c in named)
        outside = f"outside {run.domain}" + (
            f" and its MX host's domain {run.mx_domain}"
            if run.mx_domain and run.mx_domain != run.domain
            else ""
        )
        run.add(
            "discover.untrusted_host",
            Severity.WARN,
            f"{host} (named by {named[0].sources[0]}) is {outside} and is no provider's preset: it was "
            "probed without a password" + (" and no password was sent to it." if withheld else "."),
            fix=f"If {host} really is your mail provider, run again with --trust-host {host}.",
            host=host,
            source=named[0].sources[0],
            endpoints=[c.where for c in named],
        )
    account: dict[str, JsonValue] | None = None
    filled: dict[str, str] = {}
    chosen_keys: set[tuple[str, str, int, str]] = set()
    if usable(smtp) and usable(imap):
        assert smtp is not None and imap is not None
        chosen_keys = {smtp.key, imap.key}
        fields = payload_fields(smtp, imap, address=run.address)
        inbox_type = _inbox_type(run, presets, smtp, imap)
        account = {
            "email_address": run.address,
            "display_name": run.address.partition("@")[0],
            "inbox_type": inbox_type,
        }
        account |= fields
        for key in fields:
            filled[key] = (smtp if key.startswith("smtp_") else imap).sources[0]
        filled["inbox_type"] = f"preset {run.preset.id}" if run.preset else "the chosen hosts"
        filled["display_name"] = "the address's local part"
    candidates = [c.model_copy(update={"chosen": c.key in chosen_keys}) for c in candidates]
    verdict = _verdict(run, candidates, smtp, imap, probe=probe, working=working)
    return Discovery(
        email_address=run.address,
        duration_ms=round((time.monotonic() - started) * 1000, 2),
        account=account,
        filled=filled,
        preset=run.preset.id if run.preset else None,
        candidates=tuple(sorted(candidates, key=lambda c: (c.protocol.value, rank_key(c, given=given)))),
        lookups=tuple(run.lookups),
        findings=tuple(run.findings),
        verdict=verdict,
    )


def _inbox_type(run: _Run, presets: Presets, smtp: Candidate, imap: Candidate) -> str:
    if run.preset is not None:
        return run.preset.inbox_type.value
    match = presets.match(smtp_host=smtp.host, imap_host=imap.host, inbox_type=InboxType.CUSTOM_SMTP)
    return match.preset.inbox_type.value if match else InboxType.CUSTOM_SMTP.value


def _verdict(
    run: _Run,
    candidates: list[Candidate],
    smtp: Candidate | None,
    imap: Candidate | None,
    *,
    probe: bool,
    working: Callable[[Candidate | None], bool],
) -> Verdict:
    if not probe:
        run.add(
            "discover.not_probed",
            Severity.ERROR,
            "The settings come from the sources named and were not tried (probing was off), so "
            "inboxcheck cannot tell whether they work.",
            fix="Run again without --no-probe, or run inboxcheck check on the written payload.",
        )
        return Verdict.ERROR
    if working(smtp) and working(imap):
        assert smtp is not None and imap is not None
        run.add(
            "discover.found",
            Severity.INFO,
            f"SMTP {smtp.where} and IMAP {imap.where} work"
            + (
                " (logged in)." if smtp.result is ProbeResult.LOGGED_IN else " (verified TLS, login offered)."
            ),
            smtp=smtp.where,
            imap=imap.where,
        )
        return Verdict.PASS
    missing = [
        c_p.value.upper()
        for c_p, c in ((MailProtocol.SMTP, smtp), (MailProtocol.IMAP, imap))
        if not working(c)
    ]
    unsure = any(
        c.result.could_not_tell
        or c.credential is CredentialUse.WITHHELD
        or (c.result.works and not c.trusted)
        for c in candidates
        if c.protocol.value.upper() in missing
    ) or any(
        lookup.outcome == "failed" and lookup.source is not SourceKind.AUTOCONFIG for lookup in run.lookups
    )
    if unsure:
        run.add(
            "discover.could_not_tell",
            Severity.ERROR,
            f"No working {' or '.join(missing)} endpoint was confirmed, but some could not be tried "
            "(a timeout, a refused connection, a host a password may not go to, or a failed lookup), "
            "so inboxcheck cannot tell whether one works.",
            fix="See each candidate's result; try again later, with a longer --deadline, or with "
            "--trust-host.",
            missing=list(missing),
        )
        return Verdict.ERROR
    run.add(
        "discover.nothing_works",
        Severity.FAIL,
        f"No {' or '.join(missing)} endpoint found for {run.address} works: every candidate was tried "
        "and each failed (see the candidates).",
        fix="Look up the provider's settings page and write the payload by hand, then run inboxcheck check.",
        missing=list(missing),
    )
    return Verdict.FAIL


def discover_sync(address: str, **kwargs: Any) -> Discovery:
    """:func:`discover` for code with no event loop running; inside one, raises :class:`InboxcheckError`."""
    from inboxcheck._runner import refuse_inside_a_loop

    refuse_inside_a_loop("discover_sync", "discover")
    return asyncio.run(discover(address, **kwargs))
