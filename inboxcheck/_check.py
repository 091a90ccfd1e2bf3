"""What a check is, and what it is handed: the context of one run.

A check is an async function ``(CheckContext) -> Outcome`` registered with a :class:`CheckSpec`. It
reports what it found as findings; it never raises for anything the account or the network did (the
runner turns an unexpected exception into an ``error`` result that says it is a bug).

The context carries everything a check may need and nothing global: the account, the options, the
matched preset, the DNS client (one per run, so every check shares its lookups), the TLS context, the
clock, and the results of checks it depends on.

Live evidence beats offline rules. An offline check predicts; a login that worked is a fact. A
finding an offline rule makes about one of the account's servers names it
(``Outcome.predict(account.endpoint("smtp"), code, ...)``); a login check that logs in
records the server it reached (:attr:`CheckContext.logins`). When every check has finished, the
runner turns each ``fail`` about a server where the live login worked on the same host, port and TLS
mode into a ``warning`` saying the account works today (its message and fix still say what the
provider documents instead). A login that was not attempted (``--skip smtp``) or did not work leaves
the prediction as it was.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from pydantic import JsonValue

from inboxcheck._endpoint import Endpoint
from inboxcheck._errors import LOCAL_SHORTAGE
from inboxcheck._models import Account, CheckResult, Finding, Severity, finding
from inboxcheck._options import CheckOptions, Family
from inboxcheck._presets import Preset, PresetMatch, Presets
from inboxcheck._secrets import Scrubber

if TYPE_CHECKING:
    from inboxcheck.dns.client import DnsClient

__all__ = [
    "LEFTOVER_BOUND",
    "LOCAL_SHORTAGE",
    "RESOURCES_FIX",
    "SEND_UNKNOWN",
    "CheckContext",
    "CheckFunction",
    "CheckSpec",
    "Outcome",
    "SendJournal",
    "SentTest",
]

_T = TypeVar("_T")


#: Seconds the runner gives the work checks left behind (a test message to delete) when the run ends
#: before the check that undoes it: one login and a deletion, short enough after a Ctrl-C.
LEFTOVER_BOUND: Final = 5.0
#: The fix of every ``run.resources`` finding.
RESOURCES_FIX: Final = (
    "Check fewer accounts at once (--concurrency), or raise this machine's limit on open files "
    "(ulimit -n), then run again (--retry-errors checks only these)."
)

#: The send test's message may have been delivered by an earlier, interrupted run: not sent again.
SEND_UNKNOWN: Final = "send.message.outcome_unknown"


@dataclass(frozen=True)
class SentTest:
    """A test message handed to the server: what finds it in the mailbox, and when it left (empty,
    or None, for what a damaged log line no longer says)."""

    token: str
    message_id: str
    recipient: str
    sent_at: datetime | None


@dataclass(frozen=True)
class SendJournal:
    """A results log's part in one account's send test (a batch with ``--output``).

    ``earlier`` is the message an earlier run handed to the server with no result recorded after
    it (the run was killed): it may have been delivered, so this run sends none.
    ``write_ahead`` is called with the message before DATA and returns once it is on disk."""

    earlier: SentTest | None
    write_ahead: Callable[[SentTest], None]


@dataclass
class Outcome:
    """What a check returns: a one-line summary, its findings, and details for the report."""

    summary: str
    findings: list[Finding] = field(default_factory=list)
    details: dict[str, JsonValue] = field(default_factory=dict)
    skipped: bool = False
    #: Findings of an offline rule about one or more of the account's servers (see the module's docstring).
    predictions: list[tuple[Finding, tuple[Endpoint, ...]]] = field(default_factory=list)

    @classmethod
    def skip(cls, reason: str, **details: JsonValue) -> Outcome:
        return cls(summary=reason, skipped=True, details=dict(details))

    def add(
        self,
        code: str,
        severity: Severity,
        message: str,
        *,
        fix: str | None = None,
        **evidence: JsonValue,
    ) -> Finding:
        item = finding(code, severity, message, fix=fix, **evidence)
        self.findings.append(item)
        return item

    def predict(
        self,
        about: Endpoint | tuple[Endpoint, ...],
        code: str,
        severity: Severity,
        message: str,
        *,
        fix: str | None = None,
        **evidence: JsonValue,
    ) -> Finding:
        """Add an offline rule's finding about the servers ``about``: a live login there overrules a
        failure (see the module's docstring)."""
        item = self.add(code, severity, message, fix=fix, **evidence)
        self.predictions.append((item, about if isinstance(about, tuple) else (about,)))
        return item


CheckFunction = Callable[["CheckContext"], Awaitable[Outcome]]


@dataclass(frozen=True)
class CheckSpec:
    """A check's identity and place in the run.

    ``needs`` names checks whose results this one reads (through :meth:`CheckContext.result_of`); they
    run first. Everything else runs concurrently. ``wanted`` keeps a check that must be asked for
    (the send test sends real mail) out of runs whose options do not ask for it.
    """

    name: str
    title: str
    family: Family
    run: CheckFunction
    needs: tuple[str, ...] = ()
    wanted: Callable[[CheckOptions], bool] | None = None

    def selected_by(self, options: CheckOptions) -> bool:
        """Whether a run with ``options`` runs this check."""
        return self.family in options.families and (self.wanted is None or self.wanted(options))


class CheckContext:
    """Everything one run shares between its checks. Made by the runner, one per account."""

    def __init__(
        self,
        account: Account,
        *,
        options: CheckOptions,
        presets: Presets,
        match: PresetMatch | None,
        ssl_context: ssl.SSLContext | None = None,
        dns_client: DnsClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.account = account
        self.options = options
        self.presets = presets
        self.match = match
        self.clock = clock
        self.now = now
        self.started = clock()
        self.facts: dict[str, Any] = {}
        self._ssl_context = ssl_context
        self._dns = dns_client
        self._scrubber: Scrubber | None = None
        self._results: dict[str, asyncio.Future[CheckResult]] = {}
        self._owned: set[asyncio.Future[Any]] = set()
        #: The servers a live login of this run got into, by protocol.
        self.logins: dict[str, Endpoint] = {}
        #: Work a check left for a later one to undo (a test message in a mailbox), by the name of
        #: the check that undoes it, which removes the entry when it has run. The runner runs what is
        #: left when the run ends first (cancelled, or its deadline passed): bounded and shielded. A
        #: job returns a finding for that check's result when it could not undo the work.
        self.leftovers: dict[str, Callable[[], Awaitable[Finding | None]]] = {}
        #: Where the send test writes its message ahead, and what an earlier run sent (a batch's log).
        self.send_journal: SendJournal | None = None

    @classmethod
    def for_account(
        cls,
        account: Account,
        *,
        options: CheckOptions,
        presets: Presets,
        ssl_context: ssl.SSLContext | None = None,
        dns_client: DnsClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> CheckContext:
        """The context of a run over ``account``: its preset matched, the rest as given."""
        match = presets.match(
            smtp_host=account.smtp_host,
            imap_host=account.imap_host,
            inbox_type=account.inbox_type,
            smtp_port=account.smtp_port,
            imap_port=account.imap_port,
        )
        return cls(
            account,
            options=options,
            presets=presets,
            match=match,
            ssl_context=ssl_context,
            dns_client=dns_client,
            clock=clock,
            now=now,
        )

    def for_variant(self, account: Account) -> CheckContext:
        """A context for a changed copy of the account that shares this one's DNS client,
        TLS context and clock, so what this run already looked up is not looked up again."""
        return CheckContext.for_account(
            account,
            options=self.options,
            presets=self.presets,
            ssl_context=self.ssl_context,
            dns_client=self.dns,
            clock=self.clock,
            now=self.now,
        )

    @property
    def preset(self) -> Preset | None:
        """The provider the run settled on."""
        return self.match.preset if self.match else None

    @property
    def candidate_presets(self) -> tuple[Preset, ...]:
        """Every provider the account may belong to, the settled one first (see ``_presets``)."""
        return self.match.candidates if self.match else ()

    @property
    def deadline_at(self) -> float:
        return self.started + self.options.deadline

    def remaining(self) -> float:
        """Seconds left before the run's deadline (never negative)."""
        return max(0.0, self.deadline_at - self.clock())

    def step_timeout(self) -> float:
        """The timeout for one network step: ``--timeout``, cut short by the run's deadline."""
        return max(0.001, min(self.options.timeout, self.remaining()))

    @property
    def dns(self) -> DnsClient:
        """The run's DNS client: each (name, type) is asked once, whoever asks."""
        if self._dns is None:
            from inboxcheck.dns.client import DnsClient

            self._dns = DnsClient(self.options.nameservers, timeout=self.options.timeout)
        return self._dns

    @property
    def has_ssl_context(self) -> bool:
        """Whether the TLS context is already there (given, or built), so that asking costs nothing."""
        return self._ssl_context is not None

    @property
    def scrubber(self) -> Scrubber:
        """The account's secrets in every form they can come back in; one for the whole run."""
        if self._scrubber is None:
            # The recipient mailbox of the send test (--to-account) has passwords too.
            recipient = self.options.send_to_account
            scrubber = Scrubber.for_account(self.account)
            if recipient is not None:
                scrubber = scrubber.with_secrets(
                    credentials=(recipient.smtp_credential, recipient.imap_credential)
                )
            self._scrubber = scrubber
        return self._scrubber

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """Certificate-verifying TLS context, trusting ``--ca-file`` in addition to the system CAs."""
        if self._ssl_context is None:
            self._ssl_context = make_ssl_context(self.options)
        return self._ssl_context

    def start(self, awaitable: Awaitable[_T]) -> asyncio.Future[_T]:
        """Run ``awaitable`` as a task of this run: one the runner cancels, if it is still running, when
        the run ends or is cancelled, so that nothing a check started outlives the run."""
        future = asyncio.ensure_future(awaitable)
        self._owned.add(future)
        future.add_done_callback(self._owned.discard)
        return future

    async def stop_started(self) -> None:
        """Cancel every task :meth:`start` began that is still running, and wait until they end."""
        owned = list(self._owned)
        for future in owned:
            future.cancel()
        if owned:
            await asyncio.wait(owned)

    def _register(self, name: str, future: asyncio.Future[CheckResult]) -> None:
        self._results[name] = future

    async def result_of(self, name: str) -> CheckResult | None:
        """The result of another check of this run, waiting for it; None when it does not run."""
        future = self._results.get(name)
        if future is None:
            return None
        return await asyncio.shield(future)


def make_ssl_context(options: CheckOptions) -> ssl.SSLContext:
    """A verifying client context: system CAs plus the optional extra CA file."""
    context = ssl.create_default_context()
    if options.ca_file is not None:
        context.load_verify_locations(cafile=str(options.ca_file))
    return context
