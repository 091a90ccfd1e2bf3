"""What the API double can be told to do instead of answering well (:meth:`ApiDouble.misbehave`).

Each misbehaviour applies to one upcoming request, in order. Not part of the inboxcheck wheel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

__all__ = [
    "Drip",
    "DropAfterBody",
    "Misbehaviour",
    "RateLimit",
    "ResetBeforeRead",
    "Respond",
    "ServerError",
    "Slow",
    "Stall",
]


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
