"""The platform client: the create call for a sender account, and nothing that could send it twice.

What the platform documents is in ``shared/api-contract.md``: ``POST
{base}/api/public/v1/sender-accounts`` with an ``X-API-Key`` header and a JSON body, answering with
the created inbox. Everything the documentation is silent about (error statuses, rate limits,
timeouts) is still turned into a distinct, typed :class:`CreateOutcome` carrying one
:class:`~inboxcheck.Finding` and its own exit code.

The rule that shapes this module: **inboxcheck never creates an inbox twice.** Every create carries
an ``Idempotency-Key`` (reused on every retry of that create), and a request is only repeated when
the platform provably did not act on it:

- the connection could not be opened (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``): the
  request never left this machine;
- ``429 Too Many Requests``: the platform refused the request before handling it, and said when to
  come back (``Retry-After``, bounded by ``max_retry_wait`` per wait and ``max_total_wait``
  overall).

Everything else that may have reached the platform is *not* repeated: a read timeout, a connection
dropped after the body was sent, and server errors (5xx). The platform does not document that it
honours ``Idempotency-Key``, so a retried 500 could create the inbox a second time; the user gets
``api.server_error`` with the idempotency key to reuse instead. ``retry_unavailable=True`` opts into
retrying ``503 Service Unavailable`` (which by RFC 9110 §15.6.4 means the server did not handle the
request) for a platform known to honour the key.

Secrets: the API key lives in :class:`ApiKey`, whose ``repr``/``str`` are masked, and is put on each
request's headers only (never on the client's default headers, whose repr httpx does not mask for
``X-API-Key``). Anything the server sends back (error messages, echoed bodies, header values) goes
through :class:`Scrubber` before it becomes evidence, so neither the key nor a password can reach a
finding, a log line or an exception message, even from a server that echoes the request.

What each exchange came to (an answer, a transport failure, a passed deadline) becomes its typed
outcome in :mod:`inboxcheck.platform.classify`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import httpx
from pydantic import ValidationError

from inboxcheck._errors import OptionsError
from inboxcheck._models import Severity, finding
from inboxcheck._secrets import Scrubber
from inboxcheck.platform.classify import (
    _NOT_SENT,
    _Attempt,
    _bad_response,
    _bulk_from,
    _Context,
    _deadline_passed,
    _error_status,
    _json_or_none,
    _parse_bulk,
    _Result,
    _transport_failure,
)
from inboxcheck.platform.key import (
    BULK_MAX_ITEMS,
    DEFAULT_BASE_URL,
    DEFAULT_BULK_PATH,
    DEFAULT_PATH,
    ApiKey,
)
from inboxcheck.platform.outcomes import (
    ApiOutcome,
    BulkOutcome,
    CreatedInbox,
    CreateOutcome,
)
from inboxcheck.platform.replies import parse_retry_after

_log = logging.getLogger("inboxcheck.api")

# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]

_CONNECT_BACKOFF: Final = (0.5, 1.0, 2.0, 4.0)
_RATE_BACKOFF: Final = (1.0, 2.0, 4.0, 8.0)
DEFAULT_DEADLINE: Final = 60.0


def _backoff(steps: tuple[float, ...], attempts: int) -> float:
    return steps[min(attempts - 1, len(steps) - 1)]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_base_url(base_url: str, *, allow_insecure_http: bool) -> httpx.URL:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise OptionsError(
            f"The API URL {base_url!r} is not a URL ({exc}); pass e.g. {DEFAULT_BASE_URL}."
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise OptionsError(
            f"The API URL {base_url!r} must start with https:// and name a host, e.g. {DEFAULT_BASE_URL}."
        )
    if url.scheme == "http" and not allow_insecure_http and not _may_be_loopback(url.host):
        raise _plain_http(base_url)
    return url


def _plain_http(base_url: str) -> OptionsError:
    return OptionsError(
        f"The API URL {base_url!r} is plain http: the API key and the mailbox passwords would "
        "cross the network unencrypted. Use https://, or a loopback address for a local test "
        "server."
    )


def _may_be_loopback(host: str) -> bool:
    """A loopback address, or a ``localhost`` name (RFC 6761) that :func:`confirm_loopback` must still
    resolve before anything is sent."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


def _needs_confirmation(url: httpx.URL, *, allow_insecure_http: bool) -> bool:
    if url.scheme != "http" or allow_insecure_http:
        return False
    try:
        ipaddress.ip_address(url.host.strip("[]"))
    except ValueError:
        return True
    return False


async def confirm_loopback(url: httpx.URL, *, allow_insecure_http: bool = False) -> None:
    """For plain http to a ``localhost`` name: :class:`OptionsError` unless every address the name
    resolves to is a loopback one (a hosts file may send "localhost" elsewhere, and the key must not
    follow it). Resolved by the event loop's resolver, so the loop is never blocked."""
    if not _needs_confirmation(url, allow_insecure_http=allow_insecure_http):
        return
    import socket

    try:
        infos = await asyncio.get_running_loop().getaddrinfo(url.host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        infos = []
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise _plain_http(str(url))


def _join(base: httpx.URL, path: str) -> httpx.URL:
    prefix = base.path.rstrip("/")
    return base.copy_with(path=f"{prefix}/{path.lstrip('/')}")


class PlatformClient:
    """The ColdSend platform's create call, with the retry rules that never create an inbox twice.

    Use as an async context manager::

        async with PlatformClient(ApiKey.from_env()) as client:
            outcome = await client.create_sender_account(account.api_payload(daily_limit=30))
        if not outcome.ok:
            print(outcome.finding.message, outcome.finding.fix)

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``sleep`` and ``clock``
    replace waiting and the wall clock (for ``Retry-After`` dates). ``max_retries`` bounds the
    retries of one create across all causes; ``max_retry_wait`` bounds each wait and
    ``max_total_wait`` their sum. ``deadline`` bounds the whole call, waits included: ``timeout``
    is per read, and a server sending one byte per read would otherwise hold the call forever.
    ``on_wait`` is told, in a sentence, of each wait before a retry."""

    def __init__(
        self,
        api_key: ApiKey,
        *,
        base_url: str = DEFAULT_BASE_URL,
        path: str = DEFAULT_PATH,
        bulk_path: str = DEFAULT_BULK_PATH,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 30,
        max_retries: int = 3,
        max_retry_wait: float = 60,
        max_total_wait: float = 120,
        retry_unavailable: bool = False,
        allow_insecure_http: bool = False,
        deadline: float = DEFAULT_DEADLINE,
        on_wait: Callable[[str], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = _utcnow,
    ) -> None:
        if not isinstance(api_key, ApiKey):
            raise TypeError(
                "api_key must be an inboxcheck.ApiKey; build it with ApiKey.parse() or load_api_key()"
            )
        if not isinstance(timeout, httpx.Timeout) and timeout <= 0:
            raise OptionsError(f"The API timeout must be more than 0 seconds, not {timeout}.")
        if not deadline > 0:
            raise OptionsError(f"The API deadline must be more than 0 seconds, not {deadline}.")
        if max_retries < 0:
            raise OptionsError(f"max_retries must be 0 or more, not {max_retries}.")
        self._key = api_key
        self._base = _check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        # A localhost name is resolved (without blocking) before the first request goes out.
        self._unconfirmed = _needs_confirmation(self._base, allow_insecure_http=allow_insecure_http)
        self.url = _join(self._base, path)
        self.bulk_url = _join(self._base, bulk_path)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.max_total_wait = max_total_wait
        self.retry_unavailable = retry_unavailable
        self.deadline = deadline
        self._on_wait = on_wait
        self._sleep = sleep
        self._clock = clock
        if transport is None:
            # No keep-alive: a POST written onto a connection the server had just closed fails in a
            # way that cannot tell "never read" from "read and acted on". A fresh connection per
            # request makes "could not connect" the only failure that proves the request was not
            # sent.
            transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            follow_redirects=False,  # a redirected POST would carry the passwords to another URL
            headers={"Accept": "application/json", "User-Agent": _user_agent()},
        )

    def __repr__(self) -> str:
        return f"PlatformClient({str(self._base)!r}, api_key={self._key!r})"

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- create ------------------------------------------------------------------------------------

    async def create_sender_account(
        self, payload: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> CreateOutcome:
        """Create one sender account from ``payload`` (:meth:`Account.api_payload`).

        Never raises for anything the platform or the network did: every outcome, success included,
        is a :class:`CreateOutcome` (an http ``localhost`` URL that resolves elsewhere than loopback
        is unusable input: :class:`OptionsError`, before anything is sent). ``idempotency_key`` (a
        fresh uuid4 when None) is sent on the request and on every retry of it; pass the key of an
        earlier outcome to make a rerun safe on a platform that honours it."""
        key = idempotency_key or str(uuid.uuid4())
        _check_idempotency_key(key)
        scrub = Scrubber.for_request(self._key, payload)
        body = json.dumps(dict(payload), separators=(",", ":")).encode()
        result = await self._exchange(self.url, body, key, scrub)
        return self._create_outcome(result, scrub, key, email=_email_of(payload))

    async def create_sender_accounts_bulk(
        self, payloads: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> BulkOutcome:
        """Create up to 100 sender accounts in one call to the bulk endpoint.

        The request body is ``{"accounts": [payload, ...]}``; the platform answers with a job id and
        one result per item (``{"job_id": ..., "results": [{"index", "email_address", "status",
        "id", "errors"}]}``; other spellings of those are read too). The same retry rules as a
        single create."""
        if not payloads:
            raise OptionsError("A bulk create needs at least one account.")
        if len(payloads) > BULK_MAX_ITEMS:
            raise OptionsError(
                f"A bulk create takes at most {BULK_MAX_ITEMS} accounts, not {len(payloads)}; split the list."
            )
        key = idempotency_key or str(uuid.uuid4())
        _check_idempotency_key(key)
        scrub = Scrubber.for_request(self._key, *payloads)
        body = json.dumps({"accounts": [dict(p) for p in payloads]}, separators=(",", ":")).encode()
        result = await self._exchange(self.bulk_url, body, key, scrub)
        return self._bulk_outcome(result, scrub, key)

    # -- the exchange and its retries --------------------------------------------------------------

    async def _exchange(self, url: httpx.URL, body: bytes, key: str, scrub: Scrubber) -> _Result:
        if self._unconfirmed:
            await confirm_loopback(self._base)
            self._unconfirmed = False
        attempts = 0
        waited = 0.0
        history: list[str] = []
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline
        while True:
            attempts += 1
            _log.debug("POST %s attempt %d (Idempotency-Key %s)", url, attempts, key)
            attempt = await self._send(url, body, key, ends - loop.time())
            reason, wait = self._retry_wait(attempt, attempts)
            if (
                reason is not None
                and wait is not None
                and waited + wait <= self.max_total_wait
                and loop.time() + wait < ends
            ):
                _log.debug("retrying %s in %.1f s after %s (Idempotency-Key %s)", url, wait, reason, key)
                if self._on_wait is not None:
                    self._on_wait(
                        f"{_why_retried(reason)}; waiting {wait:g} s before "
                        f"trying again (attempt {attempts + 1}, same Idempotency-Key)"
                    )
                history.append(reason)
                waited += wait
                await self._sleep(wait)
                continue
            return _Result(attempt=attempt, attempts=attempts, waited=waited, history=tuple(history))

    def _retry_wait(self, attempt: _Attempt, attempts: int) -> tuple[str | None, float | None]:
        """Why this attempt may be repeated and after how long; (None, None) when it must not be."""
        if attempts > self.max_retries or attempt.deadline_passed:
            return None, None
        if attempt.error is not None:
            if isinstance(attempt.error, _NOT_SENT):
                return type(attempt.error).__name__, _backoff(_CONNECT_BACKOFF, attempts)
            return None, None
        assert attempt.response is not None
        status = attempt.response.status_code
        if status == 429 or (status == 503 and self.retry_unavailable):
            retry_after = parse_retry_after(attempt.response.headers.get("Retry-After"), now=self._clock())
            if retry_after is None:
                return str(status), _backoff(_RATE_BACKOFF, attempts)
            if retry_after > self.max_retry_wait:
                # Waiting less than asked would only be refused again; say when to come back
                # instead.
                return None, None
            return str(status), retry_after
        return None, None

    async def _send(self, url: httpx.URL, body: bytes, key: str, budget: float) -> _Attempt:
        headers = {
            "X-API-Key": self._key.reveal(),
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        }
        try:
            async with asyncio.timeout(max(budget, 0)):
                response = await self._http.post(url, content=body, headers=headers)
            return _Attempt(response=response, body=response.content)
        except httpx.RequestError as exc:
            # Transport errors, and also a body that cannot be decoded (httpx.DecodingError): the
            # platform answered, but what it said is lost. Never let one escape: httpx exceptions
            # carry the request, API key header included.
            _log.debug("POST %s failed: %s", url, type(exc).__name__)
            return _Attempt(response=None, error=exc)
        except TimeoutError:
            _log.debug("POST %s passed the %g s deadline", url, self.deadline)
            return _Attempt(response=None, deadline_passed=True)

    # -- turning an exchange into an outcome -------------------------------------------------------

    def _context(
        self, result: _Result, scrub: Scrubber, key: str, url: httpx.URL, email: str | None
    ) -> _Context:
        return _Context(
            result=result,
            scrub=scrub,
            key=key,
            url=str(url),
            email=email,
            api_key=self._key,
            now=self._clock(),
        )

    def _create_outcome(
        self, result: _Result, scrub: Scrubber, key: str, *, email: str | None
    ) -> CreateOutcome:
        attempt = result.attempt
        ctx = self._context(result, scrub, key, self.url, email)
        if attempt.deadline_passed:
            return ctx.outcome(*_deadline_passed(self.deadline, ctx))
        if attempt.error is not None:
            return ctx.outcome(*_transport_failure(attempt.error, ctx))
        response = attempt.response
        assert response is not None
        status = response.status_code
        if status in (200, 201):
            try:
                data = _json_or_none(attempt.body)
                inbox = CreatedInbox.model_validate(data)
            except (ValueError, ValidationError) as exc:
                return ctx.outcome(*_bad_response(data, exc, ctx))
            try:
                return ctx.outcome(
                    ApiOutcome.CREATED,
                    Severity.INFO,
                    f"The platform created the inbox {inbox.email_address} (id {inbox.id}, status "
                    f"{inbox.status.value}).",
                    None,
                    {"inbox_id": inbox.id, "inbox_status": inbox.status.value},
                    inbox=inbox,
                )
            except Exception:  # noqa: BLE001 - the inbox exists: its id must reach the caller whatever failed
                _log.exception("describing the created inbox failed")
                return CreateOutcome(
                    outcome=ApiOutcome.CREATED,
                    finding=finding(
                        ApiOutcome.CREATED.code, Severity.INFO, "The platform created the inbox."
                    ),
                    inbox=inbox,
                    attempts=result.attempts,
                    idempotency_key=key,
                    status_code=status,
                )
        return ctx.outcome(*_error_status(response, attempt.body, ctx))

    def _bulk_outcome(self, result: _Result, scrub: Scrubber, key: str) -> BulkOutcome:
        attempt = result.attempt
        ctx = self._context(result, scrub, key, self.bulk_url, None)
        if attempt.deadline_passed:
            return _bulk_from(ctx.outcome(*_deadline_passed(self.deadline, ctx)))
        if attempt.error is not None:
            created = ctx.outcome(*_transport_failure(attempt.error, ctx))
            return _bulk_from(created)
        response = attempt.response
        assert response is not None
        if response.status_code in (200, 201, 202):
            data = _json_or_none(attempt.body)
            parsed = _parse_bulk(data, scrub)
            if parsed is None:
                return _bulk_from(ctx.outcome(*_bad_response(data, None, ctx, bulk=True)))
            job_id, items = parsed
            created_count = sum(1 for item in items if item.created)
            outcome = ctx.outcome(
                ApiOutcome.CREATED,
                Severity.INFO if created_count == len(items) else Severity.WARN,
                f"The platform accepted the batch (job {job_id}): {created_count} of {len(items)} "
                f"accounts created.",
                None
                if created_count == len(items)
                else "Fix the accounts listed as failed and send only those again.",
                {"job_id": job_id, "created": created_count, "failed": len(items) - created_count},
            )
            return _bulk_from(outcome, job_id=job_id, items=items)
        return _bulk_from(ctx.outcome(*_error_status(response, attempt.body, ctx)))


def _user_agent() -> str:
    from inboxcheck._version import __version__

    return f"inboxcheck/{__version__}"


def _check_idempotency_key(key: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,255}", key):
        raise OptionsError(
            "The idempotency key must be 1-255 letters, digits, '-', '_', '.' or ':'; pass the key "
            "shown by the earlier attempt, or none for a fresh one."
        )


def _email_of(payload: Mapping[str, Any]) -> str | None:
    value = payload.get("email_address")
    return value if isinstance(value, str) else None


def _why_retried(reason: str) -> str:
    if reason.isdigit():
        return f"the platform answered HTTP {reason}"
    return f"could not connect to the platform ({reason})"
