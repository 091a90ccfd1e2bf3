"""A stand-in for the ColdSend platform's sender-account API, for tests and the end-to-end demo.

It enforces the documented contract (``shared/api-contract.md``) rather than accepting anything: the
``X-API-Key`` header and its format, a JSON body, every field's type and limits, no unknown fields, the
daily-limit maximum per inbox type, 409 for an address that already exists. It answers a successful
create with the documented body, and replays that answer for a repeated ``Idempotency-Key``.

It can be told to misbehave for the next requests (:meth:`ApiDouble.misbehave`): a 429 with
``Retry-After``, a 5xx, a slow or stalled answer, a connection dropped after the body was read, a
connection reset before anything was read, or any canned answer. Every request is logged with the key
and the passwords masked (:attr:`ApiDouble.log`), so tests can assert how many creates were sent.

Like the platform's likely behaviour, its own error bodies never echo a password or the key; only the
opt-in :class:`Respond` with ``echo_request=True`` imitates a careless server, to test the client.

In tests::

    async with ApiDouble(keys={KEY}) as api:
        client = PlatformClient(ApiKey.parse(KEY), base_url=api.url)

From a shell: ``python -m lab.api_double --port 0 --key cs_test_... --print-url`` (prints the URL,
serves until interrupted). From a synchronous script: ``with ApiDouble(keys=...).running_in_thread()
as api: ...``.

Not part of the inboxcheck wheel; standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import signal
import socket
import struct
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

__all__ = [
    "DEFAULT_BULK_PATH",
    "DEFAULT_PATH",
    "MAX_DAILY_LIMIT",
    "ApiDouble",
    "Drip",
    "DropAfterBody",
    "LoggedRequest",
    "Misbehaviour",
    "RateLimit",
    "ResetBeforeRead",
    "Respond",
    "ServerError",
    "Slow",
    "Stall",
    "main",
    "validate_account",
]

DEFAULT_PATH: Final = "/api/public/v1/sender-accounts"
DEFAULT_BULK_PATH: Final = "/api/public/v1/sender-accounts/smtp/bulk"
#: The platform's documented maximum daily limit per inbox type (OUTLOOK_365: the larger of the two
#: figures the documentation gives).
MAX_DAILY_LIMIT: Final = {"GOOGLE_WORKSPACE": 2000, "OUTLOOK_365": 10000, "CUSTOM_SMTP": 100000}
DEFAULT_DAILY_LIMIT: Final = 100
BULK_MAX: Final = 100
KEY_FORMAT: Final = re.compile(r"^cs_(?:live|test)_[A-Za-z0-9_-]{16,256}$")
MASK: Final = "********"

_MAX_HEADER_BYTES: Final = 32 * 1024
_MAX_BODY_BYTES: Final = 1024 * 1024
_SECRET_FIELD = re.compile(r"password|secret|api[_-]?key|token", re.IGNORECASE)
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")

_STRING_LIMITS: Final[dict[str, tuple[int, int]]] = {
    "email_address": (5, 255),
    "display_name": (1, 255),
    "smtp_host": (1, 255),
    "smtp_username": (1, 255),
    "smtp_password": (1, 500),
    "imap_host": (1, 255),
    "imap_username": (1, 255),
    "imap_password": (1, 500),
}
_PORTS: Final = ("smtp_port", "imap_port")
_BOOLS: Final = ("smtp_use_tls", "imap_use_ssl")
_REQUIRED: Final = (*_STRING_LIMITS, "inbox_type", *_PORTS)
_KNOWN: Final = frozenset({*_REQUIRED, "daily_limit", *_BOOLS})


# --------------------------------------------------------------------------------------------------
# Misbehaviours: each applies to one upcoming request, in order
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """Answer 429 with this ``Retry-After`` (None: no header), without acting on the request."""

    retry_after: str | None = "1"


@dataclass(frozen=True)
class ServerError:
    """Answer with a 5xx. ``after_create`` acts on the request first, as a server failing late would."""

    status: int = 500
    after_create: bool = False
    retry_after: str | None = None


@dataclass(frozen=True)
class Slow:
    """Wait ``seconds`` before handling the request normally."""

    seconds: float


@dataclass(frozen=True)
class Stall:
    """Act on the request, then never answer (until the client gives up or the double stops)."""


@dataclass(frozen=True)
class Drip:
    """Act on the request, send the answer's head, then its body one byte every ``interval`` seconds:
    slow enough that a client's per-read timeout never fires."""

    interval: float = 10.0


@dataclass(frozen=True)
class DropAfterBody:
    """Read the whole request, act on it when ``process``, then close the connection unanswered."""

    process: bool = True


@dataclass(frozen=True)
class ResetBeforeRead:
    """Reset the connection (TCP RST) as soon as it is accepted, before reading anything."""


@dataclass(frozen=True)
class Respond:
    """Answer with this canned response without acting on the request.

    ``echo_request=True`` imitates a careless platform that echoes the raw request body (passwords
    included) in its error; it exists to test that the client scrubs what it shows.
    """

    status: int
    json_body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    _: KW_ONLY
    text: str | None = None
    echo_request: bool = False


Misbehaviour = RateLimit | ServerError | Slow | Stall | Drip | DropAfterBody | ResetBeforeRead | Respond


@dataclass(frozen=True)
class LoggedRequest:
    """One request the double received, with the key and every password masked.

    ``status`` is the status answered, None when the connection was dropped or stalled; ``outcome``
    names what happened (``created``, ``replayed``, ``duplicate``, ``invalid``, ``key_missing``,
    ``key_malformed``, ``key_unknown``, ``rate_limited``, ``server_error``, ``dropped``, ``stalled``...).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    idempotency_key: str | None
    status: int | None
    outcome: str
    created_id: str | None = None


class _Answer:
    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class _Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = target.split("?", 1)[0]
        self.headers = headers  # lower-case names
        self.body = body


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------------
# The double
# --------------------------------------------------------------------------------------------------


class ApiDouble:
    """The platform's sender-account API on loopback. ``keys`` are the API keys it knows."""

    def __init__(
        self,
        *,
        keys: Iterable[str],
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = DEFAULT_PATH,
        bulk_path: str = DEFAULT_BULK_PATH,
        initial_status: str = "PENDING",
        honour_idempotency: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.keys = frozenset(keys)
        if initial_status not in ("PENDING", "ACTIVE"):
            raise ValueError("initial_status must be PENDING or ACTIVE")
        self.host = host
        self.port = port
        self.path = path
        self.bulk_path = bulk_path
        self.initial_status = initial_status
        #: False imitates a platform that ignores ``Idempotency-Key`` (the contract does not promise it).
        self.honour_idempotency = honour_idempotency
        self._clock = clock
        self.log: list[LoggedRequest] = []
        #: The created inboxes by lower-cased address, as the platform stores them (no passwords).
        self.accounts: dict[str, dict[str, Any]] = {}
        self.connections = 0
        self._plan: deque[Misbehaviour] = deque()
        self._replays: dict[tuple[str, str], tuple[str, _Answer]] = {}
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping: asyncio.Event | None = None
        self._logged: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # -- control ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give the client, e.g. ``http://127.0.0.1:41234``."""
        if self._server is None:
            raise RuntimeError("the API double is not running; start it first")
        return f"http://{self.host}:{self.port}"

    def misbehave(self, *actions: Misbehaviour) -> None:
        """Apply ``actions`` to the next requests, one each, in order."""
        with self._lock:
            self._plan.extend(actions)

    @property
    def pending_misbehaviours(self) -> int:
        return len(self._plan)

    def creates(self) -> list[LoggedRequest]:
        """Every POST to the create endpoint, whatever came of it."""
        return [r for r in self.log if r.method == "POST" and r.path == self.path]

    async def wait_for_requests(self, count: int) -> None:
        """Return once ``count`` requests are in the log (for tests that act while one is pending)."""
        assert self._logged is not None, "start the double first"
        while len(self.log) < count:
            self._logged.clear()
            await self._logged.wait()

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._logged = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        assert self._stopping is not None
        self._stopping.set()
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[Self]:
        """Serve from a background thread with its own event loop, for synchronous callers."""
        ready = threading.Event()
        done: asyncio.Event | None = None
        failure: list[BaseException] = []

        async def serve() -> None:
            nonlocal done
            done = asyncio.Event()
            try:
                await self.start()
            except OSError as exc:
                failure.append(exc)
                ready.set()
                return
            self._thread_loop = asyncio.get_running_loop()
            ready.set()
            try:
                await done.wait()
            finally:
                await self.stop()

        thread = threading.Thread(target=asyncio.run, args=(serve(),), name="api-double", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        try:
            yield self
        finally:
            loop = self._thread_loop
            if loop is not None and done is not None:
                loop.call_soon_threadsafe(done.set)
            thread.join()
            self._thread_loop = None

    def serve_forever(self, *, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve until SIGINT or SIGTERM; ``on_ready`` gets the URL once it listens."""

        async def serve() -> None:
            await self.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            if on_ready is not None:
                on_ready(self.url)
            try:
                await stop.wait()
            finally:
                await self.stop()

        asyncio.run(serve())

    # -- connections -----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            await self._connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    def _next_misbehaviour(self) -> Misbehaviour | None:
        with self._lock:
            return self._plan.popleft() if self._plan else None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        action = self._next_misbehaviour()
        if isinstance(action, ResetBeforeRead):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends a TCP RST instead of a FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            self.log.append(LoggedRequest("?", "?", {}, None, None, None, "reset_before_read"))
            if self._logged is not None:
                self._logged.set()
            return
        try:
            request = await _read_request(reader)
        except _BadRequest as exc:
            await _write(writer, _Answer(exc.status, {"detail": exc.message}), self._request_id())
            return
        if request is None:
            return
        if isinstance(action, Slow):
            await asyncio.sleep(action.seconds)
        record = self._recorder(request)

        if isinstance(action, RateLimit):
            headers = {"Retry-After": action.retry_after} if action.retry_after is not None else {}
            answer = _Answer(429, {"detail": "Too many requests; slow down."}, headers)
            record(answer.status, "rate_limited")
            await _write(writer, answer, self._request_id())
            return
        if isinstance(action, Respond):
            await self._respond_canned(writer, request, action, record)
            return
        if isinstance(action, ServerError) and not action.after_create:
            await self._server_error(writer, action, record)
            return
        if isinstance(action, DropAfterBody) and not action.process:
            record(None, "dropped_unprocessed")
            writer.transport.abort()
            return

        answer, outcome, created = self._handle(request)
        if isinstance(action, ServerError):
            record(action.status, f"server_error_after_{outcome}", created)
            await self._server_error(writer, action, None)
            return
        if isinstance(action, DropAfterBody):
            record(None, f"dropped_after_{outcome}", created)
            writer.transport.abort()
            return
        if isinstance(action, Stall):
            record(None, f"stalled_after_{outcome}", created)
            await self._wait_for_close(reader)
            return
        record(answer.status, outcome, created)
        if isinstance(action, Drip):
            await _write(_DripWriter(writer, action.interval), answer, self._request_id())
            return
        await _write(writer, answer, self._request_id())

    async def _wait_for_close(self, reader: asyncio.StreamReader) -> None:
        assert self._stopping is not None
        closed = asyncio.ensure_future(reader.read(1))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (closed, stopping):
                future.cancel()
            await asyncio.gather(closed, stopping, return_exceptions=True)

    async def _server_error(
        self,
        writer: asyncio.StreamWriter,
        action: ServerError,
        record: Callable[..., None] | None,
    ) -> None:
        headers = {"Retry-After": action.retry_after} if action.retry_after is not None else {}
        answer = _Answer(action.status, {"detail": "Internal error; try again later."}, headers)
        if record is not None:
            record(answer.status, "server_error")
        await _write(writer, answer, self._request_id())

    async def _respond_canned(
        self,
        writer: asyncio.StreamWriter,
        request: _Request,
        action: Respond,
        record: Callable[..., None],
    ) -> None:
        if action.echo_request:
            raw = request.body.decode("utf-8", "replace")
            body: Any = {"detail": f"Could not process request: {raw}", "received": raw}
        elif action.text is not None:
            body = action.text
        else:
            body = action.json_body
        record(action.status, "canned")
        await _write(writer, _Answer(action.status, body, action.headers), self._request_id())

    def _request_id(self) -> str:
        return f"req_{uuid.uuid4().hex[:16]}"

    def _recorder(self, request: _Request) -> Callable[..., None]:
        def record(status: int | None, outcome: str, created: str | None = None) -> None:
            self.log.append(
                LoggedRequest(
                    method=request.method,
                    path=request.path,
                    headers=_masked_headers(request.headers),
                    body=_masked_body(request.body),
                    idempotency_key=request.headers.get("idempotency-key"),
                    status=status,
                    outcome=outcome,
                    created_id=created,
                )
            )
            if self._logged is not None:
                self._logged.set()

        return record

    # -- the API ---------------------------------------------------------------------------------

    def _handle(self, request: _Request) -> tuple[_Answer, str, str | None]:
        """The answer, what it was, and the id of an inbox this request created."""
        if request.path not in (self.path, self.bulk_path):
            return _Answer(404, {"detail": "Not found."}), "not_found", None
        allowed = ("GET", "POST") if request.path == self.path else ("POST",)
        if request.method not in allowed:
            return (
                _Answer(405, {"detail": "Method not allowed."}, {"Allow": ", ".join(allowed)}),
                "method_not_allowed",
                None,
            )
        key = request.headers.get("x-api-key")
        if key is None or key == "":
            return _Answer(401, {"detail": "Missing X-API-Key header."}), "key_missing", None
        if not KEY_FORMAT.match(key):
            return _Answer(401, {"detail": "Malformed API key."}), "key_malformed", None
        if key not in self.keys:
            return _Answer(403, {"detail": "This API key is not valid."}), "key_unknown", None
        if request.method == "GET":
            return _Answer(200, {"items": list(self.accounts.values())}), "listed", None

        idempotency_key = request.headers.get("idempotency-key") if self.honour_idempotency else None
        fingerprint = hashlib.sha256(request.body).hexdigest()
        if idempotency_key is not None:
            previous = self._replays.get((key, idempotency_key))
            if previous is not None:
                if previous[0] != fingerprint:
                    detail = "This Idempotency-Key was already used with a different request body."
                    return _Answer(422, {"detail": detail}), "idempotency_mismatch", None
                return (
                    _Answer(previous[1].status, previous[1].body, {"Idempotent-Replayed": "true"}),
                    "replayed",
                    None,
                )

        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            detail = "The body must be JSON, sent with Content-Type: application/json."
            return _Answer(415, {"detail": detail}), "unsupported_media_type", None
        try:
            data = json.loads(request.body)
        except ValueError:
            return _Answer(400, {"detail": "The body is not valid JSON."}), "not_json", None

        if request.path == self.bulk_path:
            answer, created_ids = self._bulk(data)
            outcome, created = ("bulk", ",".join(created_ids) or None)
        else:
            errors = validate_account(data)
            if errors:
                return _Answer(422, {"detail": errors}), "invalid", None
            address = data["email_address"].lower()
            if address in self.accounts:
                detail = "A sender account with this email address already exists."
                return _Answer(409, {"detail": detail}), "duplicate", None
            inbox = self._create(data)
            answer, outcome, created = _Answer(201, inbox), "created", inbox["id"]
        if idempotency_key is not None and answer.status in (200, 201, 202):
            self._replays[(key, idempotency_key)] = (fingerprint, answer)
        return answer, outcome, created

    def _create(self, data: Mapping[str, Any]) -> dict[str, Any]:
        inbox = {
            "id": str(uuid.uuid4()),
            "email_address": data["email_address"],
            "display_name": data["display_name"],
            "inbox_type": data["inbox_type"],
            "daily_limit": data.get("daily_limit", DEFAULT_DAILY_LIMIT),
            "status": self.initial_status,
            "created_at": self._clock().isoformat().replace("+00:00", "Z"),
            # Not documented: a real platform adds fields; clients must ignore them.
            "workspace_id": "ws_lab",
        }
        self.accounts[data["email_address"].lower()] = inbox
        return inbox

    def _bulk(self, data: Any) -> tuple[_Answer, list[str]]:
        if not isinstance(data, dict) or set(data) != {"accounts"}:
            return _Answer(
                422, {"detail": [_error(["body"], "missing", 'Expected {"accounts": [...]}.')]}
            ), []
        accounts = data["accounts"]
        if not isinstance(accounts, list) or not 1 <= len(accounts) <= BULK_MAX:
            msg = f"accounts must be a list of 1 to {BULK_MAX} sender accounts."
            return _Answer(422, {"detail": [_error(["body", "accounts"], "list_length", msg)]}), []
        results: list[dict[str, Any]] = []
        created: list[str] = []
        for index, item in enumerate(accounts):
            errors = validate_account(item)
            address = item.get("email_address") if isinstance(item, dict) else None
            entry: dict[str, Any] = {
                "index": index,
                "email_address": address if isinstance(address, str) else None,
            }
            if errors:
                entry["status"] = "FAILED"
                entry["errors"] = [{"field": e["loc"][-1], "message": e["msg"]} for e in errors]
            elif isinstance(address, str) and address.lower() in self.accounts:
                entry["status"] = "FAILED"
                entry["errors"] = [{"field": "email_address", "message": "Already exists."}]
            else:
                inbox = self._create(item)
                entry["status"] = "CREATED"
                entry["id"] = inbox["id"]
                created.append(inbox["id"])
            results.append(entry)
        body = {"job_id": f"job_{uuid.uuid4().hex[:12]}", "status": "COMPLETED", "results": results}
        return _Answer(202, body), created


# --------------------------------------------------------------------------------------------------
# Validation: the contract table, field by field
# --------------------------------------------------------------------------------------------------


def _error(
    loc: list[str | int], kind: str, msg: str, value: Any = None, *, echo: bool = True
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg}
    if echo:
        error["input"] = value
    return error


def validate_account(data: Any) -> list[dict[str, Any]]:
    """FastAPI-style errors for a create body; empty when the platform would accept it.

    Inputs are echoed like FastAPI does, except secret fields, whose input is masked.
    """
    if not isinstance(data, dict):
        return [_error(["body"], "model_type", "Input should be a JSON object.", echo=False)]
    errors: list[dict[str, Any]] = []

    def bad(name: str, kind: str, msg: str) -> None:
        value = data.get(name)
        shown = MASK if _SECRET_FIELD.search(name) and value is not None else value
        errors.append(_error(["body", name], kind, msg, shown))

    for name in data:
        if name not in _KNOWN:
            errors.append(
                _error(["body", name], "extra_forbidden", "Extra inputs are not permitted.", echo=False)
            )
    for name in _REQUIRED:
        if name not in data:
            errors.append(_error(["body", name], "missing", "Field required.", echo=False))
    for name, (low, high) in _STRING_LIMITS.items():
        if name not in data:
            continue
        value = data[name]
        if not isinstance(value, str):
            bad(name, "string_type", "Input should be a valid string.")
        elif len(value) < low:
            bad(
                name,
                "string_too_short",
                f"String should have at least {low} character{'s' if low > 1 else ''}.",
            )
        elif len(value) > high:
            bad(name, "string_too_long", f"String should have at most {high} characters.")
    email = data.get("email_address")
    if isinstance(email, str) and 5 <= len(email) <= 255 and not _valid_email(email):
        bad("email_address", "value_error", "value is not a valid email address.")
    for name in _PORTS:
        if name not in data:
            continue
        value = data[name]
        if not _is_int(value):
            bad(name, "int_type", "Input should be a valid integer.")
        elif not 1 <= value <= 65535:
            bad(name, "less_than_equal" if value > 65535 else "greater_than_equal", "Port must be 1-65535.")
    inbox_type = data.get("inbox_type")
    if "inbox_type" in data and not (isinstance(inbox_type, str) and inbox_type in MAX_DAILY_LIMIT):
        bad("inbox_type", "enum", "Input should be 'GOOGLE_WORKSPACE', 'OUTLOOK_365' or 'CUSTOM_SMTP'.")
    if "daily_limit" in data:
        value = data["daily_limit"]
        if not _is_int(value):
            bad("daily_limit", "int_type", "Input should be a valid integer.")
        elif value < 1:
            bad("daily_limit", "greater_than_equal", "Input should be greater than or equal to 1.")
        elif (
            isinstance(inbox_type, str)
            and inbox_type in MAX_DAILY_LIMIT
            and value > MAX_DAILY_LIMIT[inbox_type]
        ):
            bad(
                "daily_limit",
                "less_than_equal",
                f"daily_limit may be at most {MAX_DAILY_LIMIT[inbox_type]} for {inbox_type}.",
            )
    for name in _BOOLS:
        if name in data and not isinstance(data[name], bool):
            bad(name, "bool_type", "Input should be a valid boolean.")
    return errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_email(value: str) -> bool:
    if not _EMAIL.match(value):
        return False
    local, domain = value.split("@")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    labels = domain.split(".")
    return (
        len(labels) >= 2
        and all(labels)
        and all(not (lbl.startswith("-") or lbl.endswith("-")) for lbl in labels)
    )


# --------------------------------------------------------------------------------------------------
# HTTP/1.1, just enough of it
# --------------------------------------------------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise _BadRequest(400, "The request ended before its headers did.") from None
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, "The request headers are too large.") from None
    if len(head) > _MAX_HEADER_BYTES:
        raise _BadRequest(431, "The request headers are too large.")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _BadRequest(400, "Malformed request line.") from None
    if not version.startswith("HTTP/1."):
        raise _BadRequest(505, "Only HTTP/1.x is spoken here.")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(400, "Malformed header line.")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest(411, "Send a Content-Length; chunked bodies are not accepted.")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest(400, "Content-Length is not a number.") from None
    if length > _MAX_BODY_BYTES:
        raise _BadRequest(413, "The body is too large.")
    body = await reader.readexactly(length) if length else b""
    return _Request(method, target, headers, body)


class _DripWriter:
    """Enough of a StreamWriter for :func:`_write`: the head at once, then the body a byte at a time."""

    def __init__(self, writer: asyncio.StreamWriter, interval: float) -> None:
        self._writer = writer
        self._interval = interval
        self._pending = b""

    def write(self, data: bytes) -> None:
        self._pending += data

    async def drain(self) -> None:
        head, _, body = self._pending.partition(b"\r\n\r\n")
        self._writer.write(head + b"\r\n\r\n")
        for index in range(len(body)):
            self._writer.write(body[index : index + 1])
            await self._writer.drain()
            await asyncio.sleep(self._interval)


async def _write(writer: asyncio.StreamWriter | _DripWriter, answer: _Answer, request_id: str) -> None:
    if isinstance(answer.body, str):
        payload = answer.body.encode("utf-8", "surrogateescape")  # "\udcfc": a raw byte, not UTF-8
        content_type = "text/plain; charset=utf-8"
    else:
        payload = json.dumps(answer.body).encode()
        content_type = "application/json"
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Unknown"
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(len(payload)),
        "Connection": "close",
        "X-Request-Id": request_id,
        **answer.headers,
    }
    head = f"HTTP/1.1 {answer.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode("latin-1") + b"\r\n" + payload)
    await writer.drain()


def _mask_key(value: str) -> str:
    if KEY_FORMAT.match(value):
        return f"{value[:8]}…{value[-4:]}" if len(value) - 8 >= 20 else f"{value[:8]}…"
    return f"[malformed key, {len(value)} characters]"


def _masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: (_mask_key(value) if name == "x-api-key" else MASK if name == "authorization" else value)
        for name, value in headers.items()
    }


def _masked_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return f"[not JSON, {len(body)} bytes]"
    return _mask_json(data)


def _mask_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if _SECRET_FIELD.search(str(k)) else _mask_json(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _read_keys(path: Path) -> list[str]:
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.api_double",
        description="Serve a stand-in for the ColdSend sender-account API until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--key", action="append", default=[], help="an API key to accept (repeatable)")
    parser.add_argument("--keys-file", type=Path, help="a file of API keys to accept, one a line")
    parser.add_argument("--status", choices=["PENDING", "ACTIVE"], default="PENDING")
    parser.add_argument(
        "--print-url", action="store_true", help="print the base URL on stdout once listening"
    )
    args = parser.parse_args(argv)
    keys = list(args.key)
    if args.keys_file is not None:
        try:
            keys += _read_keys(args.keys_file)
        except OSError as exc:
            parser.error(f"cannot read --keys-file {args.keys_file}: {exc.strerror}")
    bad = [k for k in keys if not KEY_FORMAT.match(k)]
    if not keys or bad:
        parser.error("give at least one key shaped like cs_test_ followed by 16+ letters, digits, _ or -")
    double = ApiDouble(keys=keys, host=args.host, port=args.port, initial_status=args.status)

    def ready(url: str) -> None:
        if args.print_url:
            print(url, flush=True)
        print(f"API double listening on {url}; Ctrl-C stops it.", file=sys.stderr, flush=True)

    double.serve_forever(on_ready=ready)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
