"""Troubleshooting an inbox that stopped working: rank the causes, look further, try the alternates.

``diagnose`` runs every check, then:
- ranks the probable causes, most likely first, by a table of weights kept as data
  (``inboxcheck/diagnosis.toml``): a refused login outranks a TLS problem, which outranks DNS;
- adds what a preflight does not need: a certificate that expires within a month, SPF lookups close
  to the limit, and (given an earlier report) a DKIM key or MX host that changed since;
- when the SMTP or IMAP login fails for a reason another endpoint could avoid, logs in to the
  account's own port in the other TLS mode first, then the provider's alternates (465 against 587,
  STARTTLS against implicit TLS, Zoho's organisation hosts), and suggests the payload fields to
  change. Credentials only ever go to the provider's documented hosts or to the account's own host.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from inboxcheck._check import CheckContext, Outcome, make_ssl_context
from inboxcheck._endpoint import STANDARD_PORTS, Endpoint, MailProtocol, TlsMode
from inboxcheck._models import Account, CheckResult, Finding, Report, Severity, Status, finding
from inboxcheck._options import CheckOptions, Family
from inboxcheck._packaged import packaged, read_toml
from inboxcheck._presets import Preset, Presets, load_presets
from inboxcheck._runner import as_account, build_options, refuse_inside_a_loop, run_checks

if TYPE_CHECKING:
    from inboxcheck.dns.client import DnsClient

__all__ = ["Alternative", "Cause", "Diagnosis", "diagnose", "diagnose_sync", "rank_causes"]

CERT_EXPIRY_NOTICE_DAYS: Final = 30
SPF_HEADROOM_NOTICE: Final = 2
MAX_ALTERNATES: Final = 6
# Presets of one provider whose hosts are worth trying for each other (personal vs organisation).
_SIBLINGS: Final = {"zoho": ("zoho-org",), "zoho-org": ("zoho",)}
# Failures another endpoint could avoid. A wrong password is the same wrong password on 465.
# What to try on the account's own host and port before anything else, by its configured TLS mode.
_OTHER_MODES: Final = {
    TlsMode.IMPLICIT: (TlsMode.STARTTLS,),
    TlsMode.STARTTLS: (TlsMode.IMPLICIT,),
    TlsMode.NONE: (TlsMode.STARTTLS, TlsMode.IMPLICIT),
}
_RETRYABLE_PREFIXES: Final = {
    "smtp": ("smtp.connect.", "smtp.tls.", "smtp.starttls.", "smtp.protocol.", "smtp.auth.unsupported"),
    "imap": ("imap.connect.", "imap.tls.", "imap.starttls.", "imap.protocol.", "imap.login_disabled"),
}


class Cause(BaseModel):
    """One probable cause of the failure, with its evidence and fix."""

    model_config = ConfigDict(frozen=True)

    rank: int
    weight: int
    check: str
    code: str
    severity: Severity
    message: str
    fix: str | None
    evidence: dict[str, JsonValue]


class Alternative(Endpoint):
    """One other endpoint tried, and whether a login there works."""

    model_config = ConfigDict(frozen=True)

    source: str
    result: Literal["works", "fails", "could not tell"]
    summary: str
    codes: tuple[str, ...] = ()
    changes: dict[str, JsonValue]


class Diagnosis(BaseModel):
    """What ``diagnose`` found: the report, the ranked causes, what else is worth knowing, and the
    alternatives tried, with the payload changes that make the account work when one was found."""

    model_config = ConfigDict(frozen=True)

    report: Report
    causes: tuple[Cause, ...]
    notices: tuple[Finding, ...]
    alternatives: tuple[Alternative, ...]
    suggested_changes: dict[str, JsonValue]

    @property
    def exit_code(self) -> int:
        return self.report.exit_code


@dataclass(frozen=True)
class _Weight:
    prefix: str
    weight: int


@cache
def _weights() -> tuple[_Weight, ...]:
    data = read_toml(packaged("diagnosis.toml"), source="inboxcheck/diagnosis.toml")
    rules = [_Weight(str(rule["prefix"]), int(rule["weight"])) for rule in data["rule"]]
    return tuple(sorted(rules, key=lambda rule: len(rule.prefix), reverse=True))


def weight_of(code: str) -> int:
    """The weight of the longest prefix of ``code`` in the table (0 when none matches)."""
    return next((rule.weight for rule in _weights() if code.startswith(rule.prefix)), 0)


_SEVERITY_ORDER: Final = {Severity.FAIL: 3, Severity.ERROR: 2, Severity.WARN: 1, Severity.INFO: 0}


def rank_causes(report: Report) -> tuple[Cause, ...]:
    """Every warning, failure and could-not-tell finding, most likely cause of a broken inbox first."""
    candidates = [
        (check, item)
        for check in report.checks
        for item in check.findings
        if item.severity is not Severity.INFO
    ]
    candidates.sort(key=lambda pair: (-weight_of(pair[1].code), -_SEVERITY_ORDER[pair[1].severity]))
    return tuple(
        Cause(
            rank=rank,
            weight=weight_of(item.code),
            check=check.name,
            code=item.code,
            severity=item.severity,
            message=item.message,
            fix=item.fix,
            evidence=item.evidence,
        )
        for rank, (check, item) in enumerate(candidates, start=1)
    )


def _detail(check: CheckResult | None, *path: str) -> Any:
    value: Any = check.details if check else None
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _find(report: Report, name: str) -> CheckResult | None:
    try:
        return report.check(name)
    except KeyError:
        return None


def look_further(report: Report, previous: Report | None = None) -> tuple[Finding, ...]:
    """What a preflight does not need but a troubleshooter does."""
    notices: list[Finding] = []
    for name, label in (("smtp.login", "SMTP"), ("imap.login", "IMAP")):
        days = _detail(_find(report, name), "tls", "days_to_expiry")
        if isinstance(days, int) and 0 <= days < CERT_EXPIRY_NOTICE_DAYS:
            notices.append(
                finding(
                    "diagnose.cert_expiring_soon",
                    Severity.WARN,
                    f"The {label} server's certificate expires in {days} days; when it does, every "
                    "login fails with an untrusted-certificate error.",
                    fix="Ask the mail host to renew the certificate, or watch for the renewal.",
                    days_to_expiry=days,
                    not_after=_detail(_find(report, name), "tls", "cert_not_after"),
                )
            )
    spf = _find(report, "dns.spf")
    headroom = _detail(spf, "headroom")
    if isinstance(headroom, int) and 0 <= headroom <= SPF_HEADROOM_NOTICE:
        notices.append(
            finding(
                "diagnose.spf_headroom_low",
                Severity.WARN,
                f"The SPF record needs {_detail(spf, 'lookup_count')} of its 10 DNS lookups: "
                f"{headroom} more include of a sending service will break SPF for all mail.",
                fix="Remove includes of services no longer used, or flatten one of them.",
                headroom=headroom,
                lookup_count=_detail(spf, "lookup_count"),
            )
        )
    if previous is not None:
        notices.extend(_changes_since(report, previous))
    return tuple(notices)


def _changes_since(report: Report, previous: Report) -> list[Finding]:
    notices: list[Finding] = []
    before = _detail(_find(previous, "dns.dkim"), "keys") or {}
    after = _detail(_find(report, "dns.dkim"), "keys") or {}
    for selector in sorted(set(before) | set(after)):
        old, new = _detail_record(before, selector), _detail_record(after, selector)
        if old != new:
            state = "appeared" if old is None else "disappeared" if new is None else "changed"
            notices.append(
                finding(
                    "diagnose.dkim_key_changed",
                    Severity.WARN,
                    f"The DKIM key at selector {selector!r} {state} since the earlier report; mail "
                    "signed with the old key fails DKIM until the provider and DNS agree again.",
                    fix="Make sure the key published in DNS is the one the provider signs with "
                    "(re-copy it from the provider's DKIM settings).",
                    selector=selector,
                    before=old,
                    after=new,
                )
            )
    old_mx = _detail(_find(previous, "dns.mx"), "mx")
    new_mx = _detail(_find(report, "dns.mx"), "mx")
    if old_mx is not None and new_mx is not None and old_mx != new_mx:
        notices.append(
            finding(
                "diagnose.mx_changed",
                Severity.WARN,
                "The domain's MX records changed since the earlier report: mail may now be hosted "
                "somewhere else than the account's SMTP and IMAP hosts.",
                fix="Check that the account's hosts belong to the provider the MX records point to.",
                before=old_mx,
                after=new_mx,
            )
        )
    return notices


def _detail_record(keys: Mapping[str, Any], selector: str) -> str | None:
    value = keys.get(selector)
    if isinstance(value, Mapping):
        record = value.get("record")
        return str(record) if record is not None else None
    return None


@dataclass(frozen=True)
class _Candidate:
    endpoint: Endpoint
    source: str


def _wants_alternates(report: Report, protocol: str, preset: Preset | None) -> bool:
    check = _find(report, f"{protocol}.login")
    if check is None or check.status not in (Status.FAIL, Status.ERROR):
        return False
    codes = [f.code for f in check.findings if f.severity in (Severity.FAIL, Severity.ERROR)]
    if any(code.startswith(_RETRYABLE_PREFIXES[protocol]) for code in codes):
        return True
    # Zoho's personal hosts refuse organisation accounts as if the password were wrong.
    return preset is not None and preset.id in _SIBLINGS and any(".auth." in code for code in codes)


def _candidates(
    account: Account, protocol: Literal["smtp", "imap"], preset: Preset | None, presets: Presets
) -> list[_Candidate]:
    current = account.endpoint(protocol)
    host, port = current.host, current.port

    def at(host: str, port: int, tls: TlsMode, source: str) -> _Candidate:
        return _Candidate(Endpoint(protocol=current.protocol, host=host, port=port, tls=tls), source)

    # The same host and port in the other TLS modes first: a port that speaks the other mode
    # (imap.tls.mode_mismatch) is the most common way a right host and port still fail. A port set
    # for no TLS at all is tried with STARTTLS first, the upgrade of the same conversation.
    others = _OTHER_MODES[current.tls]
    found = [at(host, port, mode, "the account's own host and port") for mode in others]
    sources: list[tuple[Preset, str]] = []
    if preset is not None and not preset.is_generic:
        sources.append((preset, f"{preset.name} preset"))
        sources.extend(
            (presets.get(s), f"{presets.get(s).name} preset") for s in _SIBLINGS.get(preset.id, ())
        )
    for source_preset, label in sources:
        service = source_preset.smtp if protocol == "smtp" else source_preset.imap
        for endpoint in sorted(service.endpoints, key=lambda e: not e.preferred):
            if endpoint.tls is not TlsMode.NONE:
                found.append(_Candidate(endpoint.at(protocol), label))
    standard = STANDARD_PORTS[current.protocol]
    found.extend(at(host, p, mode, "the account's own host") for p, mode in standard)
    unique: dict[tuple[str, str, int, str], _Candidate] = {}
    for candidate in found:
        # An endpoint the payload cannot express is no suggestion the platform could use.
        if candidate.endpoint.unexpressible() is not None:
            continue
        key = candidate.endpoint.key
        if key != current.key and key not in unique:
            unique[key] = candidate
    return list(unique.values())[:MAX_ALTERNATES]


def _changes(candidate: _Candidate) -> dict[str, JsonValue]:
    return dict(candidate.endpoint.payload_fields())


async def _try(
    candidate: _Candidate,
    account: Account,
    *,
    options: CheckOptions,
    base: CheckContext,
) -> Alternative:
    from inboxcheck.checks.login.imap import check_imap_login
    from inboxcheck.checks.login.smtp import check_smtp_login

    changes = _changes(candidate)
    ctx = base.for_variant(account.model_copy(update=changes))
    run = check_smtp_login if candidate.endpoint.protocol is MailProtocol.SMTP else check_imap_login
    try:
        outcome: Outcome = await asyncio.wait_for(run(ctx), timeout=options.timeout * 3)
    except TimeoutError:
        outcome = Outcome(summary="no answer in time")
        outcome.add(f"{candidate.endpoint.protocol}.connect.timeout", Severity.ERROR, "no answer in time")
    finally:
        # The login ran outside the runner, so what it started (the TLS context's thread) is stopped
        # here, also when diagnose itself is cancelled.
        await ctx.stop_started()
    status = CheckResult.status_of(outcome.findings)
    result: Literal["works", "fails", "could not tell"] = (
        "works"
        if status in (Status.PASS, Status.WARN)
        else "fails"
        if status is Status.FAIL
        else "could not tell"
    )
    return Alternative(
        **candidate.endpoint.model_dump(),
        source=candidate.source,
        result=result,
        summary=outcome.summary,
        codes=tuple(f.code for f in outcome.findings if f.severity is not Severity.INFO),
        changes=changes,
    )


async def diagnose(
    account: Account | Mapping[str, Any],
    *,
    options: CheckOptions | None = None,
    previous: Report | None = None,
    try_alternates: bool = True,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    leading: Sequence[CheckResult] = (),
    now: Callable[[], datetime] | None = None,
    dns_client: DnsClient | None = None,
    **option_overrides: Any,
) -> Diagnosis:
    """Everything ``check`` does, then the ranked causes, what else is worth knowing, and the
    alternates that work when the given configuration does not. ``now`` is the run's clock (dates in
    findings: certificates, Microsoft's timeline); ``dns_client`` is a cache shared with other runs
    (a batch's, a service's); by default the run has its own."""
    account = as_account(account)
    options = build_options(options, option_overrides)
    presets = presets if presets is not None else load_presets()
    ssl_context = ssl_context or make_ssl_context(options)
    # One DNS client and TLS context for the run and every alternate tried after it, so a
    # host the checks already resolved is not looked up again.
    base = CheckContext.for_account(
        account, options=options, presets=presets, ssl_context=ssl_context, dns_client=dns_client
    )
    preset = base.preset
    report = await run_checks(
        account,
        options=options,
        presets=presets,
        ssl_context=ssl_context,
        dns_client=base.dns,
        leading=leading,
        now=now if now is not None else (lambda: datetime.now(UTC)),
    )
    alternatives: list[Alternative] = []
    if try_alternates:
        candidates: list[_Candidate] = []
        protocols: tuple[tuple[Literal["smtp", "imap"], Family], ...] = (
            ("smtp", Family.SMTP),
            ("imap", Family.IMAP),
        )
        for protocol, family in protocols:
            if family in options.families and _wants_alternates(report, protocol, preset):
                candidates.extend(_candidates(account, protocol, preset, presets))
        limit = asyncio.Semaphore(3)

        async def bounded(candidate: _Candidate) -> Alternative:
            async with limit:
                return await _try(candidate, account, options=options, base=base)

        alternatives = list(await asyncio.gather(*(bounded(c) for c in candidates)))
    suggested: dict[str, JsonValue] = {}
    for protocol in ("smtp", "imap"):
        working = next((a for a in alternatives if a.protocol == protocol and a.result == "works"), None)
        if working is not None:
            suggested.update(working.changes)
    return Diagnosis(
        report=report,
        causes=rank_causes(report),
        notices=look_further(report, previous),
        alternatives=tuple(alternatives),
        suggested_changes=suggested,
    )


def diagnose_sync(
    account: Account | Mapping[str, Any],
    *,
    options: CheckOptions | None = None,
    previous: Report | None = None,
    try_alternates: bool = True,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **option_overrides: Any,
) -> Diagnosis:
    """:func:`diagnose` for code that has no event loop running; inside one, raises
    :class:`InboxcheckError`."""
    refuse_inside_a_loop("diagnose_sync", "diagnose")
    return asyncio.run(
        diagnose(
            account,
            options=options,
            previous=previous,
            try_alternates=try_alternates,
            presets=presets,
            ssl_context=ssl_context,
            **option_overrides,
        )
    )
