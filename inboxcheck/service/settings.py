"""What a service is started with: the check options every request shares, the tokens, the limits."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

from inboxcheck._endpoint import is_loopback_host as is_loopback
from inboxcheck._errors import InboxcheckError
from inboxcheck._options import CheckOptions

if TYPE_CHECKING:
    from inboxcheck.fleet._crypto import FleetKey

__all__ = ["ENV_TOKENS", "ServiceSettings", "is_loopback", "read_tokens"]

ENV_TOKENS: Final = "INBOXCHECK_API_TOKENS"
#: An account payload is a few hundred bytes; a check request over this is refused while it is read.
MAX_BODY: Final = 64 * 1024
#: A batch of 10,000 accounts of about 600 bytes each.
MAX_BATCH_BODY: Final = 8 * 1024 * 1024
MAX_BATCH_ACCOUNTS: Final = 10_000


@dataclass(frozen=True)
class ServiceSettings:
    """Everything a service shares between requests; no global state, one app per settings.

    ``options`` are the server's check options (``--nameserver``, ``--ca-file``, ``--timeout``,
    ``--deadline``, ``--allow-plaintext``); a request may only add what its query allows (the send
    test, the deliverability checks, DKIM selectors). ``tokens`` empty means no authentication.
    """

    options: CheckOptions = field(default_factory=CheckOptions)
    tokens: tuple[SecretStr, ...] = ()
    #: Checks running at once (single checks and batch accounts together).
    concurrency: int = 20
    #: Checks that may wait for a slot; one more is answered 429 with Retry-After.
    queue: int = 20
    #: Accounts checked at once against one server host within a batch.
    per_host: int = 4
    max_body: int = MAX_BODY
    max_batch_body: int = MAX_BATCH_BODY
    max_batch_accounts: int = MAX_BATCH_ACCOUNTS
    #: Batches kept (running or finished, with their result lines, about 8 KB an account); past it
    #: the oldest finished one goes first, and a finished one goes after ``batch_keep_seconds``.
    max_batches: int = 8
    batch_keep_seconds: float = 3600.0
    #: Seconds a client has to send its body: a client trickling bytes must not hold a connection.
    body_seconds: float = 30.0
    #: DKIM selectors a request may add (each is a lookup).
    max_selectors: int = 16
    #: Seconds a shared DNS answer is reused: a record fixed by the user shows within this time.
    dns_cache_seconds: float = 60.0
    #: Seconds in-flight requests are given to finish after SIGTERM before they are cancelled.
    drain_seconds: float = 30.0
    #: Seconds a client is told to wait (Retry-After) when the server is full.
    retry_after: int = 2
    #: The fleet's database (``--fleet-db``): the ``/v1/fleet`` routes exist only with one.
    fleet_db: str | None = None
    #: The fleet's key (INBOXCHECK_FLEET_KEY or ``--fleet-key-file``): adding accounts needs it.
    fleet_key: FleetKey | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.queue < 0 or self.per_host < 1:
            raise InboxcheckError("--concurrency and --per-host must be at least 1, --queue at least 0")
        for token in self.tokens:
            if not token.get_secret_value() or any(c.isspace() for c in token.get_secret_value()):
                raise InboxcheckError("an API token must be non-empty and hold no spaces")

    def check_options(self, overrides: Mapping[str, Any]) -> CheckOptions:
        """The server's options with a request's additions, validated again (a bad DKIM selector is
        the request's problem: :class:`OptionsError`)."""
        from inboxcheck._runner import build_options

        if not overrides:
            return self.options
        base = {name: getattr(self.options, name) for name in self.options.model_fields_set}
        return build_options(None, {**base, **overrides})

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is one of the tokens, compared in constant time against every token (a
        match does not end the loop early, so the time tells nothing about which one matched)."""
        raw = given.encode("utf-8", "surrogateescape")
        found = False
        for token in self.tokens:
            found |= hmac.compare_digest(raw, token.get_secret_value().encode("utf-8", "surrogateescape"))
        return found


def read_tokens(env_value: str | None, path: Path | None) -> tuple[SecretStr, ...]:
    """The tokens from ``INBOXCHECK_API_TOKENS`` (comma-separated) and a token file (one a line;
    blank lines and ``#`` comments skipped)."""
    texts: list[str] = []
    if env_value:
        texts += env_value.split(",")
    if path is not None:
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InboxcheckError(f"{path}: cannot read the token file ({type(exc).__name__})") from None
        texts += [line for line in content.splitlines() if not line.lstrip().startswith("#")]
    return _unique(SecretStr(text.strip()) for text in texts if text.strip())


def _unique(tokens: Iterable[SecretStr]) -> tuple[SecretStr, ...]:
    seen: dict[str, SecretStr] = {}
    for token in tokens:
        seen.setdefault(token.get_secret_value(), token)
    return tuple(seen.values())
