"""OAuth2 logins for stored accounts: the ``oauth`` object of a ``fleet add`` line, and the refresh
before each check.

A line of ``fleet add`` is the platform's payload with, beside its fields, an object::

    "oauth": {"provider": "google", "client_id": "...", "refresh_token": "...",
              "client_secret_file": "/etc/inboxcheck/client-secret", "tenant": "...", "token_url": "..."}

(``client_secret_file``, ``tenant`` and ``token_url`` optional; the payload's passwords may then be
left out). It becomes the CLI's :class:`~inboxcheck._oauth.RefreshRequest`: the refresh is the one
of ``check --oauth-provider`` (:func:`~inboxcheck._oauth.refresh_access_token`), its result the
report's ``oauth.token`` with the same codes. The refresh token and the client secret are stored
encrypted like the passwords (``_store_accounts``); a refresh token the endpoint rotates is stored
(encrypted) as soon as it arrives, before the logins, so that no later failure can lose it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import SecretStr

from inboxcheck._errors import OAuthInputError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from inboxcheck._batch_input import BatchItem
    from inboxcheck._models import Account, CheckResult
    from inboxcheck._oauth import RefreshRequest
    from inboxcheck.fleet._crypto import FleetKey

__all__ = [
    "AddLines",
    "FleetOAuth",
    "batch_items",
    "parse_oauth",
    "preparer",
    "public_json",
    "request_from",
    "split_lines",
]

_KEYS: Final = ("provider", "client_id", "refresh_token", "client_secret_file", "tenant", "token_url")
# Over HTTP (serve --fleet-db) the client secret is in the body like the passwords: the server reads
# no file a request names (it would store that file and send it to the request's token endpoint).
_REMOTE_KEYS: Final = ("provider", "client_id", "refresh_token", "client_secret", "tenant", "token_url")
# The CLI's option names in RefreshRequest's messages, as a line's field names.
_NAMES: Final = {
    "--oauth-provider": "oauth.provider",
    "--oauth-client-id": "oauth.client_id",
    "--oauth-tenant": "oauth.tenant",
    "--oauth-token-url": "oauth.token_url",
}


@dataclass(frozen=True)
class FleetOAuth:
    """A stored account's refresh, and its refresh token's ciphertext as stored (a rotated token
    replaces exactly that one)."""

    request: RefreshRequest
    stored: bytes = field(repr=False)


def _text(data: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        if value is None:
            raise OAuthInputError(f"oauth.{name} is missing")
        raise OAuthInputError(f"oauth.{name}: give a non-empty string")
    return value.strip()


def _token(data: Mapping[str, Any], name: str) -> str | None:
    value = _text(data, name, required=name == "refresh_token")
    if value is not None and any(c.isspace() or not c.isprintable() for c in value):
        what = "token" if name == "refresh_token" else "secret"
        raise OAuthInputError(f"oauth.{name}: holds spaces or control characters; give the {what} alone")
    return value


def parse_oauth(data: object, *, remote: bool = False) -> RefreshRequest:
    """The refresh a line's ``oauth`` object asks for, or :class:`OAuthInputError` saying what is wrong
    (no secret in the message). A client secret is read from its file now (then stored encrypted).

    ``remote`` (a request's body, ``POST /v1/fleet/accounts``): the client secret is the field
    ``client_secret`` itself, as the body holds the passwords; ``client_secret_file`` is refused."""
    from inboxcheck._oauth import PROVIDERS, RefreshRequest, read_secret_file

    if not isinstance(data, dict):
        raise OAuthInputError("oauth: give an object (provider, client_id, refresh_token, ...)")
    keys = _REMOTE_KEYS if remote else _KEYS
    if remote and "client_secret_file" in data:
        raise OAuthInputError(
            "oauth.client_secret_file: the server reads no file a request names; give the secret "
            "itself as oauth.client_secret"
        )
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        raise OAuthInputError(f"oauth.{unknown[0]}: not a field of oauth (allowed: {', '.join(keys)})")
    provider = _text(data, "provider", required=True)
    if provider not in PROVIDERS:
        raise OAuthInputError(f"oauth.provider {provider!r}: give one of {', '.join(PROVIDERS)}")
    client_id = _text(data, "client_id", required=True)
    refresh = _token(data, "refresh_token")
    assert client_id is not None and refresh is not None
    secret = _token(data, "client_secret") if remote else None
    secret_file = None if remote else _text(data, "client_secret_file", required=False)
    try:
        return RefreshRequest(
            provider=provider,  # type: ignore[arg-type]  # checked against PROVIDERS above
            client_id=client_id,
            refresh_token=SecretStr(refresh),
            client_secret=read_secret_file(Path(secret_file), "client secret")
            if secret_file
            else (SecretStr(secret) if secret is not None else None),
            tenant=_text(data, "tenant", required=False) or "common",
            token_url=_text(data, "token_url", required=False),
        )
    except OAuthInputError as exc:
        message = str(exc)
        for option, name in _NAMES.items():
            message = message.replace(option, name)
        raise OAuthInputError(message) from None


@dataclass
class AddLines:
    """The lines of ``fleet add`` (or ``POST /v1/fleet/accounts``) as the store adds them: the
    accounts, the OAuth2 refreshes by address, and each refused line with its problem."""

    accounts: list[Account] = field(default_factory=list)
    refreshes: dict[str, RefreshRequest] = field(default_factory=dict)
    refused: list[tuple[BatchItem, str]] = field(default_factory=list)


def split_lines(items: Iterable[BatchItem], *, discover: str, remote: bool = False) -> AddLines:
    """Read with ``oauth`` (:func:`~inboxcheck._batch_input._parse`): each line's account and its
    ``oauth`` object parsed (:func:`parse_oauth`), or its refusal; ``discover`` is where to complete
    a partial payload. The same address again: the last line counts, with or without its refresh."""
    out = AddLines()
    for item in items:
        if item.partial is not None:
            out.refused.append((item, f"line {item.line}: a partial payload; complete it first ({discover})"))
        elif item.account is None:
            out.refused.append((item, item.error or f"line {item.line}: unusable"))
        elif item.oauth is not None:
            try:
                request = parse_oauth(item.oauth, remote=remote)
            except OAuthInputError as exc:
                out.refused.append((item, f"line {item.line}: {exc}"))
                continue
            out.refreshes[item.account.email_address.strip().lower()] = request
            out.accounts.append(item.account)
        else:
            # The same address again without oauth: the last line counts, with its passwords.
            out.refreshes.pop(item.account.email_address.strip().lower(), None)
            out.accounts.append(item.account)
    return out


def public_json(request: RefreshRequest) -> str:
    """What the store keeps in clear: the refresh's public part."""
    return json.dumps(
        {
            "provider": request.provider,
            "client_id": request.client_id,
            "tenant": request.tenant,
            "token_url": request.token_url,
        },
        sort_keys=True,
    )


def request_from(public: str, refresh_token: str, client_secret: str | None) -> RefreshRequest:
    from inboxcheck._oauth import RefreshRequest

    data = json.loads(public)
    return RefreshRequest(
        provider=data["provider"],
        client_id=data["client_id"],
        refresh_token=SecretStr(refresh_token),
        client_secret=SecretStr(client_secret) if client_secret is not None else None,
        tenant=data.get("tenant") or "common",
        token_url=data.get("token_url"),
    )


Prepare = Callable[["Account"], Awaitable[tuple["Account", tuple["CheckResult", ...]]]]


def preparer(
    engine: AsyncEngine,
    *,
    key: FleetKey,
    account_id: int,
    oauth: FleetOAuth,
    timeout: float,
    clock: Callable[[], float],
) -> Prepare:
    """What a batch item awaits before its checks (:attr:`BatchItem.prepare`): a refresh, a rotated
    refresh token stored, and the account logging in with the new access token (or, when the
    endpoint refused, with none: its logins are skipped and ``oauth.token`` says why)."""

    async def prepare(account: Account) -> tuple[Account, tuple[CheckResult, ...]]:
        from inboxcheck._input import OAuthTokens
        from inboxcheck._oauth import refresh_access_token
        from inboxcheck.fleet import store

        outcome = await refresh_access_token(oauth.request, step_timeout=timeout)
        if outcome.refresh_token is not None:
            # Stored before anything else can fail or be cancelled: the old token may be dead now.
            await asyncio.shield(
                store.save_refresh_token(
                    engine,
                    account_id,
                    address=account.email_address,
                    token=outcome.refresh_token,
                    replaces=oauth.stored,
                    key=key,
                    now=clock(),
                )
            )
        return OAuthTokens.both(outcome.token, "a refresh").apply(account), (outcome.result,)

    return prepare


def batch_items(
    engine: AsyncEngine,
    loaded: Iterable[tuple[int, Account]],
    refresh: Mapping[int, FleetOAuth],
    *,
    key: FleetKey,
    timeout: float,
    clock: Callable[[], float],
) -> list[BatchItem]:
    """Stored accounts as the batch engine checks them (``fleet run``, a queue job): an OAuth2
    account refreshes its token first."""
    from inboxcheck._batch_input import BatchItem

    return [
        BatchItem(
            line=account_id,
            account=account,
            email=account.email_address,
            prepare=None
            if account_id not in refresh
            else preparer(
                engine,
                key=key,
                account_id=account_id,
                oauth=refresh[account_id],
                timeout=timeout,
                clock=clock,
            ),
        )
        for account_id, account in loaded
    ]
