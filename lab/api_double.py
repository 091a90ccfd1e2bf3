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

The contract's rules live in :mod:`lab.api_contract`, the misbehaviours in :mod:`lab.api_misbehaviour`
and the HTTP reading and writing in :mod:`lab.api_http`; tests import every name from here.

Not part of the inboxcheck wheel; standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import signal
import socket
import struct
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from lab.api_contract import (
    BULK_MAX,
    DEFAULT_BULK_PATH,
    DEFAULT_DAILY_LIMIT,
    DEFAULT_PATH,
    KEY_FORMAT,
    MAX_DAILY_LIMIT,
    field_error,
    masked_body,
    masked_headers,
    validate_account,
)
from lab.api_http import Answer, BadRequest, DripWriter, Request, read_request, write_answer
from lab.api_misbehaviour import (
    Drip,
    DropAfterBody,
    Misbehaviour,
    RateLimit,
    ResetBeforeRead,
    Respond,
    ServerError,
    Slow,
    Stall,
)

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
        self._replays: dict[tuple[str, str], tuple[str, Answer]] = {}
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
            request = await read_request(reader)
        except BadRequest as exc:
            await write_answer(writer, Answer(exc.status, {"detail": exc.message}), self._request_id())
            return
        if request is None:
            return
        if isinstance(action, Slow):
            await asyncio.sleep(action.seconds)
        record = self._recorder(request)

        if isinstance(action, RateLimit):
            headers = {"Retry-After": action.retry_after} if action.retry_after is not None else {}
            answer = Answer(429, {"detail": "Too many requests; slow down."}, headers)
            record(answer.status, "rate_limited")
            await write_answer(writer, answer, self._request_id())
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
            await write_answer(DripWriter(writer, action.interval), answer, self._request_id())
            return
        await write_answer(writer, answer, self._request_id())

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
        answer = Answer(action.status, {"detail": "Internal error; try again later."}, headers)
        if record is not None:
            record(answer.status, "server_error")
        await write_answer(writer, answer, self._request_id())

    async def _respond_canned(
        self,
        writer: asyncio.StreamWriter,
        request: Request,
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
        await write_answer(writer, Answer(action.status, body, action.headers), self._request_id())

    def _request_id(self) -> str:
        return f"req_{uuid.uuid4().hex[:16]}"

    def _recorder(self, request: Request) -> Callable[..., None]:
        def record(status: int | None, outcome: str, created: str | None = None) -> None:
            self.log.append(
                LoggedRequest(
                    method=request.method,
                    path=request.path,
                    headers=masked_headers(request.headers),
                    body=masked_body(request.body),
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

    def _handle(self, request: Request) -> tuple[Answer, str, str | None]:
        """The answer, what it was, and the id of an inbox this request created."""
        if request.path not in (self.path, self.bulk_path):
            return Answer(404, {"detail": "Not found."}), "not_found", None
        allowed = ("GET", "POST") if request.path == self.path else ("POST",)
        if request.method not in allowed:
            return (
                Answer(405, {"detail": "Method not allowed."}, {"Allow": ", ".join(allowed)}),
                "method_not_allowed",
                None,
            )
        key = request.headers.get("x-api-key")
        if key is None or key == "":
            return Answer(401, {"detail": "Missing X-API-Key header."}), "key_missing", None
        if not KEY_FORMAT.match(key):
            return Answer(401, {"detail": "Malformed API key."}), "key_malformed", None
        if key not in self.keys:
            return Answer(403, {"detail": "This API key is not valid."}), "key_unknown", None
        if request.method == "GET":
            return Answer(200, {"items": list(self.accounts.values())}), "listed", None

        idempotency_key = request.headers.get("idempotency-key") if self.honour_idempotency else None
        fingerprint = hashlib.sha256(request.body).hexdigest()
        if idempotency_key is not None:
            previous = self._replays.get((key, idempotency_key))
            if previous is not None:
                if previous[0] != fingerprint:
                    detail = "This Idempotency-Key was already used with a different request body."
                    return Answer(422, {"detail": detail}), "idempotency_mismatch", None
                return (
                    Answer(previous[1].status, previous[1].body, {"Idempotent-Replayed": "true"}),
                    "replayed",
                    None,
                )

        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            detail = "The body must be JSON, sent with Content-Type: application/json."
            return Answer(415, {"detail": detail}), "unsupported_media_type", None
        try:
            data = json.loads(request.body)
        except ValueError:
            return Answer(400, {"detail": "The body is not valid JSON."}), "not_json", None

        if request.path == self.bulk_path:
            answer, created_ids = self._bulk(data)
            outcome, created = ("bulk", ",".join(created_ids) or None)
        else:
            errors = validate_account(data)
            if errors:
                return Answer(422, {"detail": errors}), "invalid", None
            address = data["email_address"].lower()
            if address in self.accounts:
                detail = "A sender account with this email address already exists."
                return Answer(409, {"detail": detail}), "duplicate", None
            inbox = self._create(data)
            answer, outcome, created = Answer(201, inbox), "created", inbox["id"]
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

    def _bulk(self, data: Any) -> tuple[Answer, list[str]]:
        if not isinstance(data, dict) or set(data) != {"accounts"}:
            return Answer(
                422, {"detail": [field_error(["body"], "missing", 'Expected {"accounts": [...]}.')]}
            ), []
        accounts = data["accounts"]
        if not isinstance(accounts, list) or not 1 <= len(accounts) <= BULK_MAX:
            msg = f"accounts must be a list of 1 to {BULK_MAX} sender accounts."
            return Answer(422, {"detail": [field_error(["body", "accounts"], "list_length", msg)]}), []
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
        return Answer(202, body), created


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
