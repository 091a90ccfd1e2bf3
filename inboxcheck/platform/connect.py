"""``connect``: run the full preflight, and only when the gate lets it through, create the inbox.

The gate and the daily limit sent are decided in :mod:`inboxcheck.platform.gate`, as for a batch.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

import httpx
from pydantic import BaseModel, ConfigDict, JsonValue

from inboxcheck._models import Account, CheckResult, Report, Status
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets
from inboxcheck._runner import as_account, build_options, refuse_inside_a_loop, run_checks
from inboxcheck._secrets import masked
from inboxcheck.platform.client import (
    DEFAULT_DEADLINE,
    PlatformClient,
    _check_base_url,
    _join,
    confirm_loopback,
)
from inboxcheck.platform.gate import DailyLimitChoice, decide
from inboxcheck.platform.key import DEFAULT_BASE_URL, DEFAULT_PATH, ApiKey
from inboxcheck.platform.outcomes import CreateOutcome

__all__ = ["ConnectResult", "connect", "connect_sync"]

EXIT_BLOCKED_FAILED: Final = 1
EXIT_BLOCKED_UNKNOWN: Final = 3


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
    on_sending: Callable[[str], None] | None = None,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    leading: Sequence[CheckResult] = (),
    **option_overrides: Any,
) -> ConnectResult:
    """Preflight ``account``; create it on the platform only if no check failed.

    Warnings do not block unless ``strict``; a check that could not tell blocks (nothing is created
    on a guess). ``dry_run`` stops before the request, which is returned with passwords masked. The
    API key is needed unless ``dry_run``. Returns a :class:`ConnectResult`; raises only for unusable
    input (:class:`AccountError`, :class:`OptionsError`, :class:`ApiKeyError`). ``on_sending`` is
    told the create's Idempotency-Key just before the request leaves: a caller interrupted after
    that can say that the create was sent, with no answer yet, and with which key.
    """
    from inboxcheck._errors import ApiKeyError, OptionsError

    if api_key is None and not dry_run:
        raise ApiKeyError(
            "an API key is needed to create the inbox: set COLDSEND_API_KEY or use --api-key-file"
        )
    # Unusable input is refused before the logins, not after minutes of checks.
    base = _check_base_url(base_url, allow_insecure_http=False)
    await confirm_loopback(base)
    url = str(_join(base, path))
    if not api_deadline > 0:
        raise OptionsError(f"The API deadline must be more than 0 seconds, not {api_deadline}.")
    account = as_account(account)
    report = await run_checks(
        account,
        options=build_options(options, option_overrides),
        presets=presets,
        ssl_context=ssl_context,
        leading=leading,
    )
    gate = decide(account, report, strict=strict, apply_recommended=apply_recommended_limit)
    limit, blocked_by = gate.daily_limit, gate.blocked_by
    payload = account.api_payload(daily_limit=limit.value)
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
        key = idempotency_key or str(uuid.uuid4())
        if on_sending is not None:
            on_sending(key)
        outcome = await client.create_sender_account(payload, idempotency_key=key)
    return ConnectResult(gate="passed", create=outcome, **common)


def connect_sync(account: Account | Mapping[str, Any], **kwargs: Any) -> ConnectResult:
    """:func:`connect` for code with no event loop running; inside one, raises :class:`InboxcheckError`."""
    import asyncio

    refuse_inside_a_loop("connect_sync", "connect")
    return asyncio.run(connect(account, **kwargs))
