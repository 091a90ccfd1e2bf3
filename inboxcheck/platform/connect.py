"""The gate: run the full preflight, and only when nothing failed, create the inbox on the platform.

The daily limit sent is the user's when given, the recommendation when not (or when asked for with
``apply_recommended_limit``), and never silently raised above what the user asked for.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import httpx
from pydantic import BaseModel, ConfigDict, JsonValue

from inboxcheck._models import Account, CheckResult, Report, Status
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets
from inboxcheck._runner import as_account, build_options, refuse_inside_a_loop, run_checks
from inboxcheck._secrets import masked
from inboxcheck.platform.client import DEFAULT_DEADLINE, PlatformClient, _check_base_url, _join
from inboxcheck.platform.key import DEFAULT_BASE_URL, DEFAULT_PATH, ApiKey
from inboxcheck.platform.outcomes import CreateOutcome

if TYPE_CHECKING:
    import dns.asyncresolver

__all__ = ["ConnectResult", "DailyLimitChoice", "choose_daily_limit", "connect", "connect_sync"]

EXIT_BLOCKED_FAILED: Final = 1
EXIT_BLOCKED_UNKNOWN: Final = 3


class DailyLimitChoice(BaseModel):
    """The daily_limit sent, where it came from, and why."""

    model_config = ConfigDict(frozen=True)

    value: int
    source: Literal["given", "recommended"]
    requested: int | None
    recommended: int
    note: str


def choose_daily_limit(
    requested: int | None, recommended: int, *, apply_recommended: bool
) -> DailyLimitChoice:
    """The user's limit unless none was given or the recommendation is asked for; never raised."""
    if requested is None:
        return DailyLimitChoice(
            value=recommended,
            source="recommended",
            requested=None,
            recommended=recommended,
            note=f"no daily_limit was given; using the recommended {recommended}",
        )
    if apply_recommended and recommended < requested:
        return DailyLimitChoice(
            value=recommended,
            source="recommended",
            requested=requested,
            recommended=recommended,
            note=f"lowered from {requested} to the recommended {recommended}",
        )
    note = f"keeping the given {requested}"
    if apply_recommended and recommended > requested:
        note += f" (the recommendation, {recommended}, is higher; a limit is never raised silently)"
    elif requested > recommended:
        note += f" (above the recommended {recommended}; --apply-recommended-limit lowers it)"
    return DailyLimitChoice(
        value=requested, source="given", requested=requested, recommended=recommended, note=note
    )


class ConnectResult(BaseModel):
    """What ``connect`` did: the preflight report, the gate's decision, and the create call."""

    model_config = ConfigDict(frozen=True)

    report: Report
    gate: Literal["passed", "blocked"]
    blocked_by: tuple[str, ...] = ()
    strict: bool = False
    dry_run: bool = False
    url: str
    payload: dict[str, JsonValue]
    daily_limit: DailyLimitChoice
    create: CreateOutcome | None = None

    @property
    def created(self) -> bool:
        return self.create is not None and self.create.ok

    @property
    def exit_code(self) -> int:
        """0 created (or a dry run that would send); 1 blocked by a failure (or a warning with
        --strict); 3 blocked because a check could not tell; 4-12 the platform refused or failed."""
        if self.gate == "blocked":
            statuses = {self.report.check(name).status for name in self.blocked_by}
            if statuses & {Status.FAIL, Status.WARN}:
                return EXIT_BLOCKED_FAILED
            return EXIT_BLOCKED_UNKNOWN
        if self.create is None:
            return 0
        return self.create.exit_code


def _blocking(report: Report, *, strict: bool) -> tuple[str, ...]:
    blocking = {Status.FAIL, Status.ERROR} | ({Status.WARN} if strict else set())
    return tuple(check.name for check in report.checks if check.status in blocking)


async def connect(
    account: Account | Mapping[str, Any],
    *,
    api_key: ApiKey | None,
    options: CheckOptions | None = None,
    strict: bool = False,
    dry_run: bool = False,
    apply_recommended_limit: bool = False,
    base_url: str = DEFAULT_BASE_URL,
    path: str = DEFAULT_PATH,
    transport: httpx.AsyncBaseTransport | None = None,
    api_timeout: float = 30,
    api_deadline: float = DEFAULT_DEADLINE,
    on_wait: Callable[[str], None] | None = None,
    idempotency_key: str | None = None,
    presets: Presets | None = None,
    resolver: dns.asyncresolver.Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
    leading: Sequence[CheckResult] = (),
    **option_overrides: Any,
) -> ConnectResult:
    """Preflight ``account``; create it on the platform only if no check failed.

    Warnings do not block unless ``strict``; a check that could not tell blocks (nothing is created
    on a guess). ``dry_run`` stops before the request, which is returned with passwords masked. The
    API key is needed unless ``dry_run``. Returns a :class:`ConnectResult`; raises only for unusable
    input (:class:`AccountError`, :class:`OptionsError`, :class:`ApiKeyError`).
    """
    from inboxcheck._errors import ApiKeyError, OptionsError

    if api_key is None and not dry_run:
        raise ApiKeyError(
            "an API key is needed to create the inbox: set COLDSEND_API_KEY or use --api-key-file"
        )
    # Unusable input is refused before the logins, not after minutes of checks.
    url = str(_join(_check_base_url(base_url, allow_insecure_http=False), path))
    if not api_deadline > 0:
        raise OptionsError(f"The API deadline must be more than 0 seconds, not {api_deadline}.")
    account = as_account(account)
    report = await run_checks(
        account,
        options=build_options(options, option_overrides),
        presets=presets,
        resolver=resolver,
        ssl_context=ssl_context,
        leading=leading,
    )
    limit = choose_daily_limit(
        account.daily_limit,
        report.recommended_daily_limit.value,
        apply_recommended=apply_recommended_limit,
    )
    payload = account.api_payload(daily_limit=limit.value)
    blocked_by = _blocking(report, strict=strict)
    common: dict[str, Any] = {
        "report": report,
        "strict": strict,
        "dry_run": dry_run,
        "url": url,
        "payload": masked(payload),
        "daily_limit": limit,
    }
    if blocked_by:
        return ConnectResult(gate="blocked", blocked_by=blocked_by, **common)
    if dry_run or api_key is None:
        return ConnectResult(gate="passed", **common)
    async with PlatformClient(
        api_key,
        base_url=base_url,
        path=path,
        transport=transport,
        timeout=api_timeout,
        deadline=api_deadline,
        on_wait=on_wait,
    ) as client:
        outcome = await client.create_sender_account(payload, idempotency_key=idempotency_key)
    return ConnectResult(gate="passed", create=outcome, **common)


def connect_sync(account: Account | Mapping[str, Any], **kwargs: Any) -> ConnectResult:
    """:func:`connect` for code with no event loop running; inside one, raises :class:`InboxcheckError`."""
    import asyncio

    refuse_inside_a_loop("connect_sync", "connect")
    return asyncio.run(connect(account, **kwargs))
