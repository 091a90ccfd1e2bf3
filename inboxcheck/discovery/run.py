"""``discover``: settings from just an address.

Sources (a preset by the address's domain; else, together, the domain's MX hosts and their preset,
RFC 6186 service records, autoconfig files for the domain and then for the MX host's domain; guesses
when nothing else names a protocol) give candidates; each candidate the payload can express is probed
without a credential, then, with a password, logged in to where a password may go. The best
working SMTP and IMAP pair is the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from pydantic import JsonValue, SecretStr

from inboxcheck._check import CheckContext
from inboxcheck._endpoint import TlsMode
from inboxcheck._errors import AccountError
from inboxcheck._models import (
    Account,
    Finding,
    InboxType,
    Severity,
    Verdict,
    ascii_domain,
    email_problem,
    finding,
)
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Preset, Presets, load_presets
from inboxcheck._runner import build_options
from inboxcheck._secrets import Scrubber
from inboxcheck.checks.dns.lookups import Lookups
from inboxcheck.checks.dns.treewalk import is_public_suffix, load_public_suffixes, organisational_domain
from inboxcheck.discovery.choose import (
    merge,
    payload_fields,
    rank_key,
    under,
)
from inboxcheck.discovery.model import (
    Candidate,
    CredentialUse,
    Discovery,
    Lookup,
    LookupOutcome,
    MailProtocol,
    ProbeResult,
    SourceKind,
)
from inboxcheck.discovery.sources import guess_candidates, preset_candidates

if TYPE_CHECKING:
    import ssl

    from inboxcheck.dns.client import DnsClient

__all__ = ["discover", "discover_sync"]

#: Why an autoconfig file was ignored: the last part of each ``discover.autoconfig.*`` code.
AUTOCONFIG_PROBLEMS: Final = {
    "tls": "could not be fetched over verified HTTPS",
    "timeout": "did not arrive in time",
    "too_large": "is too large to be a mail client's configuration",
    "malformed": "is not a usable autoconfig file",
    "forbidden": "declares a DTD or entities (an XML bomb or an external reference)",
}
#: Logins tried per protocol before giving up: each failed one counts against the account's lockout.
MAX_LOGINS: Final = 3
_PROBES_AT_ONCE: Final = 8


class _Run:
    """The state of one discovery: its context, what each source said, and the findings so far."""

    def __init__(
        self,
        address: str,
        ctx: CheckContext,
        *,
        presets: Presets,
        autoconfig_port: int | None,
        trust_hosts: frozenset[str],
    ) -> None:
        self.address = address
        self.domain = _ascii_domain(address)
        self.ctx = ctx
        self.presets = presets
        self.autoconfig_port = autoconfig_port
        self.trust_hosts = trust_hosts
        self.candidates: list[Candidate] = []
        self.lookups: list[Lookup] = []
        self.findings: list[Finding] = []
        self.preset: Preset | None = None
        self.mx_domain: str | None = None

    def add(
        self, code: str, severity: Severity, message: str, *, fix: str | None = None, **ev: JsonValue
    ) -> None:
        self.findings.append(finding(code, severity, message, fix=fix, **ev))

    def asked(self, source: SourceKind, target: str, outcome: LookupOutcome, detail: str) -> None:
        """Record one question put to a source and what came of it."""
        self.lookups.append(Lookup(source=source, target=target, outcome=outcome, detail=detail))

    def trusted(self, candidate: Candidate) -> bool:
        host = candidate.host.lower().rstrip(".")
        if candidate.source is SourceKind.PRESET or host in self.trust_hosts:
            return True
        if under(host, self.domain) and not is_public_suffix(self.domain):
            return True
        return self.mx_domain is not None and under(host, self.mx_domain)

    # --- sources -------------------------------------------------------------------------------

    async def mx_and_followers(self) -> None:
        """MX hosts -> a provider's preset, else the MX host's domain's autoconfig."""
        answer = (await Lookups(self.ctx).get(self.domain, "MX")).answer
        if not answer.ok or answer.rrset is None:
            self.asked(
                SourceKind.PRESET,
                f"{self.domain} MX",
                "nothing" if answer.definite else "failed",
                answer.describe(),
            )
            return
        hosts = [
            rdata.exchange.to_text(omit_final_dot=True).lower()
            for rdata in sorted(answer.rrset, key=lambda r: r.preference)
        ]
        hosts = [host for host in hosts if host]
        if not hosts:
            return
        # The MX host's organisational domain by the DNS tree walk, the rule every domain comparison
        # uses; a walk that could not tell leaves only the host itself (a password is withheld, never
        # sent further).
        organisation = await organisational_domain(Lookups(self.ctx), hosts[0])
        mx_domain = organisation or hosts[0]
        # A suffix-level answer (an MX host "test.", "co.uk") is no organisation: nothing under it is
        # trusted for being under it.
        self.mx_domain = None if is_public_suffix(mx_domain) else mx_domain
        preset = self.presets.by_mx(hosts)
        known = preset.name if preset is not None else "no preset knows these hosts"
        self.asked(
            SourceKind.PRESET,
            f"{self.domain} MX",
            "found" if preset else "nothing",
            f"{', '.join(hosts)}: {known}",
        )
        if preset is not None:
            self.preset = preset
            self.candidates += preset_candidates(preset, self.address, how=f"MX {hosts[0]}")
            return
        if self.mx_domain is not None and self.mx_domain != self.domain:
            await self.autoconfig(self.mx_domain)

    async def srv(self) -> None:
        from inboxcheck.discovery.srv import lookup_srv, order_records, records_of

        for rank, (service, answer) in enumerate(await lookup_srv(Lookups(self.ctx), self.domain)):
            name = f"{service.label}.{self.domain}"
            if not answer.ok:
                self.asked(
                    SourceKind.SRV, name, "nothing" if answer.definite else "failed", answer.describe()
                )
                continue
            records = order_records(records_of(answer))
            self.asked(SourceKind.SRV, name, "found", "; ".join(answer.records()))
            if any(record.not_offered for record in records):
                self.add(
                    "discover.srv.not_offered",
                    Severity.INFO,
                    f"{name} has the target '.', which says the service is deliberately not offered "
                    "(RFC 6186 section 3); it was not tried.",
                    record=name,
                )
            for order, record in enumerate(r for r in records if not r.not_offered):
                self.candidates.append(
                    Candidate(
                        protocol=service.protocol,
                        host=record.target.lower(),
                        port=record.port,
                        tls=service.tls,
                        source=SourceKind.SRV,
                        sources=(f"srv {name}",),
                        username=self.address,
                        evidence={
                            "order": rank * 100 + order,
                            "srv": f"{record.priority} {record.weight} {record.port} {record.target}.",
                        },
                    )
                )

    async def autoconfig(self, domain: str) -> None:
        from inboxcheck.discovery.autoconfig import (
            AutoconfigError,
            autoconfig_urls,
            fetch_autoconfig,
            parse_autoconfig,
        )

        for host, path in autoconfig_urls(domain, self.address):
            fetched = await fetch_autoconfig(
                self.ctx, host, path, port=self.autoconfig_port, ssl_context=self.ctx.ssl_context
            )
            if fetched.body is None:
                outcome: LookupOutcome = "nothing" if fetched.kind == "not_found" else "failed"
                self.asked(SourceKind.AUTOCONFIG, fetched.url, outcome, fetched.detail)
                if fetched.kind in ("tls", "timeout", "too_large"):
                    self._autoconfig_problem(str(fetched.kind), fetched.url, fetched.detail)
                continue
            try:
                endpoints = parse_autoconfig(fetched.body, self.address)
            except AutoconfigError as exc:
                self.asked(SourceKind.AUTOCONFIG, fetched.url, "failed", str(exc))
                self._autoconfig_problem(exc.kind, fetched.url, str(exc))
                continue
            self.asked(
                SourceKind.AUTOCONFIG,
                fetched.url,
                "found" if endpoints else "nothing",
                f"{len(endpoints)} SMTP/IMAP server(s)",
            )
            for endpoint in endpoints:
                self.candidates.append(
                    Candidate(
                        **endpoint.endpoint.model_dump(),
                        source=SourceKind.AUTOCONFIG,
                        sources=(f"autoconfig {fetched.url}",),
                        username=endpoint.username,
                        evidence={"order": endpoint.order},
                    )
                )
            if endpoints:
                return  # the first location that answers is the domain's file (as Thunderbird does)

    def _autoconfig_problem(self, kind: str, url: str, detail: str) -> None:
        what = AUTOCONFIG_PROBLEMS[kind]
        self.add(
            f"discover.autoconfig.{kind}",
            Severity.WARN,
            f"The autoconfig file at {url} {what} ({detail}); it was ignored.",
            fix="Whoever runs the domain's web server should serve a small, valid config-v1.1.xml over "
            "HTTPS with a trusted certificate, or remove it.",
            url=url,
            detail=detail,
        )

    async def gather_sources(self) -> None:
        self.preset = self.presets.by_address_domain(self.domain)
        if self.preset is not None:
            # The provider's documented settings: nothing on the network can improve on them.
            self.asked(
                SourceKind.PRESET, self.domain, "found", f"{self.preset.name} hosts {self.domain} addresses"
            )
            self.candidates += preset_candidates(
                self.preset, self.address, how=f"address domain {self.domain}"
            )
            return
        self.asked(SourceKind.PRESET, self.domain, "nothing", "not a provider's address domain")
        tasks = [
            asyncio.ensure_future(self.mx_and_followers()),
            asyncio.ensure_future(self.srv()),
            asyncio.ensure_future(self.autoconfig(self.domain)),
            # read while the sources ask: what may be trusted for being under a domain needs it
            asyncio.ensure_future(load_public_suffixes()),
        ]
        pending = await _gather_within(tasks, self.ctx.remaining())
        if pending:
            self.asked(
                SourceKind.GUESS,
                "(sources)",
                "failed",
                f"{len(pending)} source(s) still running at the deadline",
            )
        for task in tasks:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
        for protocol in MailProtocol:
            if not any(c.protocol is protocol for c in self.candidates):
                self.candidates += guess_candidates(protocol, self.domain, self.address)
                self.asked(SourceKind.GUESS, protocol.value, "found", "no source named one")


async def _gather_within(tasks: Sequence[asyncio.Future[Any]], seconds: float) -> set[asyncio.Future[Any]]:
    """Wait for ``tasks`` for ``seconds``; cancel (and wait for) those still running then, or all of
    them when the caller is cancelled: nothing discovery started outlives it. Returns the cut ones."""
    if not tasks:
        return set()
    try:
        _done, pending = await asyncio.wait(tasks, timeout=seconds)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    return pending


def _ascii_domain(address: str) -> str:
    """The address's domain as DNS, TLS and HTTP carry it: its A-labels by IDNA 2008 (the one
    conversion every check uses, :func:`~inboxcheck._models.ascii_domain`), so ``faß.de`` stays
    ``xn--fa-hia.de`` and never becomes ``fass.de``, another owner's domain."""
    domain = address.rsplit("@", 1)[1].lower().rstrip(".")
    try:
        return ascii_domain(domain)
    except (UnicodeError, ValueError):
        return domain  # email_problem() already refused a name IDNA cannot encode


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
