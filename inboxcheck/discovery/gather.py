"""Gathering a discovery's sources: the run's state (its context, what each source said, the
findings so far) and the sources, asked together under the run's deadline: a preset by the
address's domain; else the domain's MX hosts and their preset, RFC 6186 service records, autoconfig
files for the domain and then for the MX host's domain; guesses when nothing else names a protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

from pydantic import JsonValue

from inboxcheck._check import CheckContext
from inboxcheck._models import Finding, Severity, ascii_domain, finding
from inboxcheck._presets import Preset, Presets
from inboxcheck.checks.dns.lookups import Lookups
from inboxcheck.checks.dns.treewalk import is_public_suffix, load_public_suffixes, organisational_domain
from inboxcheck.discovery.choose import under
from inboxcheck.discovery.model import (
    Candidate,
    Lookup,
    LookupOutcome,
    MailProtocol,
    SourceKind,
)
from inboxcheck.discovery.sources import guess_candidates, preset_candidates

__all__ = ["AUTOCONFIG_PROBLEMS"]

#: Why an autoconfig file was ignored: the last part of each ``discover.autoconfig.*`` code.
AUTOCONFIG_PROBLEMS: Final = {
    "tls": "could not be fetched over verified HTTPS",
    "timeout": "did not arrive in time",
    "too_large": "is too large to be a mail client's configuration",
    "malformed": "is not a usable autoconfig file",
    "forbidden": "declares a DTD or entities (an XML bomb or an external reference)",
}


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
