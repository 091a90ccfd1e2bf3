"""HTTP/1.1 for the API double, just enough of it: one bounded request read, one answer written
(at once, or its body dripped a byte at a time). Not part of the inboxcheck wheel.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

__all__ = ["Answer", "BadRequest", "DripWriter", "Request", "read_request", "write_answer"]

_MAX_HEADER_BYTES: Final = 32 * 1024
_MAX_BODY_BYTES: Final = 1024 * 1024


class Answer:
    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = target.split("?", 1)[0]
        self.headers = headers  # lower-case names
        self.body = body


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise BadRequest(400, "The request ended before its headers did.") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "The request headers are too large.") from None
    if len(head) > _MAX_HEADER_BYTES:
        raise BadRequest(431, "The request headers are too large.")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest(400, "Malformed request line.") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest(505, "Only HTTP/1.x is spoken here.")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(400, "Malformed header line.")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest(411, "Send a Content-Length; chunked bodies are not accepted.")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise BadRequest(400, "Content-Length is not a number.") from None
    if length > _MAX_BODY_BYTES:
        raise BadRequest(413, "The body is too large.")
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body)


class DripWriter:
    """Enough of a StreamWriter for :func:`write_answer`: the head at once, then the body a byte at a time."""

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


async def write_answer(writer: asyncio.StreamWriter | DripWriter, answer: Answer, request_id: str) -> None:
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
