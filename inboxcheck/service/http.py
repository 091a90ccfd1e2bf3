"""The HTTP edges every route shares: a body read with a bound, the payload decoded as ``check``
decodes a file, the CLI's error document, and a check that ends when its client goes away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from inboxcheck._errors import AccountError, FieldProblem

__all__ = [
    "ClientGone",
    "TooLarge",
    "decode_body",
    "error_response",
    "input_error",
    "read_body",
    "while_connected",
]

T = TypeVar("T")
JSON: Final = "application/json"


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit:,} bytes")


class TooSlow(Exception):  # a state, answered 408
    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s")


class ClientGone(Exception):
    pass


async def read_body(request: Request, limit: int, *, seconds: float) -> bytes:
    """The body, refused with :class:`TooLarge` as soon as it passes ``limit`` bytes (a declared
    Content-Length over it is refused before a byte is read): never held whole past the bound; and
    with :class:`TooSlow` when it takes longer than ``seconds`` to arrive."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise TooSlow(seconds) from None
    return b"".join(chunks)


def decode_body(raw: bytes, *, source: str = "request body") -> object:
    """The JSON document in ``raw``, decoded as ``check`` decodes a file (repeated keys and
    overlong integers kept for the field checks), or :class:`AccountError` saying why not."""
    from inboxcheck._input import decode_json

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AccountError(source, message=f"not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise AccountError(source, message="is empty; expected a JSON object with the account's fields")
    try:
        return decode_json(text)
    except json.JSONDecodeError as exc:
        raise AccountError(
            source, message=f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise AccountError(source, message="not valid JSON: nested too deeply") from None


def input_error(exc: AccountError) -> Response:
    """422 with the CLI's JSON error document (``check --format json`` on an unusable payload).

    A missing password is told as the service reads one: from the body only (the CLI's hint names
    its environment variables and prompt, which a request has neither of)."""
    from inboxcheck._input import PASSWORD_FIELDS
    from inboxcheck.cli._report import render_input_error

    problems = [
        FieldProblem(p.field, "is missing: give it in the request body")
        if p.field in PASSWORD_FIELDS and p.problem.startswith("is missing")
        else p
        for p in exc.problems
    ]
    if problems != exc.problems:
        exc = AccountError(exc.source, problems, message=exc.message)
    return Response(render_input_error(exc), status_code=422, media_type=JSON)


def query_error(problems: list[FieldProblem]) -> Response:
    """422 for a bad query value: the same document, its fixes naming the query, not the payload."""
    from inboxcheck.cli._report import render_input_error

    document = json.loads(render_input_error(AccountError("query", problems)))
    document["message"] = "a query parameter is not valid"
    for item in document["findings"]:
        item["fix"] = "Correct this query parameter (the service's OpenAPI document lists what it accepts)."
    return Response(json.dumps(document, indent=2, ensure_ascii=False), status_code=422, media_type=JSON)


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"detail": detail}), status_code=status, media_type=JSON, headers=headers)


async def _disconnected(request: Request) -> None:
    # Once the body is read, the server's next message is the disconnect (uvicorn holds it back
    # until the client goes away or the response is complete).
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`ClientGone` when the client disconnects first; ``work`` is then
    cancelled and awaited, so its logins are closed and no task is left behind."""
    task: asyncio.Future[T] = asyncio.ensure_future(work)
    watcher: asyncio.Future[Any] = asyncio.ensure_future(_disconnected(request))
    both: set[asyncio.Future[Any]] = {task, watcher}
    try:
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
        await asyncio.wait(both)
    if task.cancelled():
        raise ClientGone
    return task.result()


def json_response(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status_code=status, media_type=JSON)
