"""The fleet store's accounts: add (passwords encrypted), list, remove, pause, load (passwords
decrypted: the one way out), rekey; an OAuth2 account's refresh token and client secret are
encrypted and decrypted beside its passwords, and a rotated refresh token is saved here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from inboxcheck.fleet._crypto import FleetKey, WrongKeyError
from inboxcheck.fleet._db import writing
from inboxcheck.fleet._schema import accounts
from inboxcheck.fleet._store_base import _FIELDS, UnknownAccountError, _normal, iso, status_entry
from inboxcheck.fleet.changes import State

if TYPE_CHECKING:
    from pydantic import SecretStr
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from inboxcheck._models import Account
    from inboxcheck._oauth import RefreshRequest
    from inboxcheck.fleet.oauth import FleetOAuth

# An OAuth2 account's secrets, encrypted like the passwords (the field name is associated data).
# oauth_given_token is the refresh token as `fleet add` last gave it: the same line added again keeps
# the stored one, which may be its rotated successor (the given one may be retired by then).
_OAUTH_FIELDS: Final = ("oauth_refresh_token", "oauth_client_secret", "oauth_given_token")


@dataclass
class AddResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


async def refuse_other_keys(conn: AsyncConnection, key: FleetKey) -> None:
    rows = await conn.execute(
        sa.select(accounts.c.address).where(accounts.c.key_id != key.id).order_by(accounts.c.address)
    )
    other = [row.address for row in rows]
    if other:
        raise WrongKeyError(other)


async def add_accounts(
    engine: AsyncEngine,
    items: Iterable[Account],
    *,
    key: FleetKey,
    interval: float,
    now: float,
    oauth: Mapping[str, RefreshRequest] | None = None,
) -> AddResult:
    """Insert or update (by address) every account, passwords encrypted; one transaction.

    ``oauth`` (by address) holds the accounts that log in with OAuth2 tokens: their refresh token
    and client secret are encrypted too. An account added again without one logs in with its
    passwords from then on. Refused when any stored account was encrypted under another key: a
    fleet has one key.
    """
    refreshes = {_normal(address): request for address, request in (oauth or {}).items()}
    result = AddResult()
    latest: dict[str, Account] = {}
    for account in items:
        # The same address twice in one file: the last one counts, as a second `fleet add` would.
        latest.pop(_normal(account.email_address), None)
        latest[_normal(account.email_address)] = account
    async with writing(engine) as conn:
        await refuse_other_keys(conn, key)
        addresses = list(latest)
        existing: dict[str, Any] = {}
        for start in range(0, len(addresses), 1000):
            chunk = addresses[start : start + 1000]
            rows = await conn.execute(
                sa.select(
                    accounts.c.id,
                    accounts.c.address,
                    accounts.c.payload,
                    accounts.c.smtp_password,
                    accounts.c.imap_password,
                    accounts.c.interval_s,
                    accounts.c.oauth,
                    accounts.c.oauth_given_token,
                    accounts.c.oauth_client_secret,
                ).where(accounts.c.address.in_(chunk))
            )
            existing.update({row.address: row for row in rows})
        inserts, reschedules = [], []
        # By the columns they set (an OAuth2 account given its same token again keeps the stored one).
        updates: dict[frozenset[str], list[dict[str, Any]]] = {}
        for address, account in latest.items():
            payload = account.view().model_dump_json()
            old = existing.get(address)
            refresh = refreshes.get(address)
            if old is not None and _same(old, key, payload, account, refresh):
                # The same account again (a whole file re-added): its schedule and history stand.
                if old.interval_s == int(interval):
                    result.unchanged.append(address)
                else:
                    reschedules.append({"b_id": old.id, "interval_s": int(interval), "updated_at": now})
                    result.updated.append(address)
                continue
            values = {
                "payload": payload,
                "smtp_password": key.encrypt(
                    address, "smtp_password", account.smtp_password.get_secret_value()
                ),
                "imap_password": key.encrypt(
                    address, "imap_password", account.imap_password.get_secret_value()
                ),
                "key_id": key.id,
                **_oauth_values(key, address, refresh, old),
                "interval_s": int(interval),
                "updated_at": now,
                # A new or changed payload is checked at the next run, whatever its schedule said.
                "next_due": now,
            }
            if old is not None:
                updates.setdefault(frozenset(values), []).append({"b_id": old.id, **values})
                result.updated.append(address)
            else:
                inserts.append(
                    {
                        "status_json": status_entry(address, State.UNKNOWN.value, None, None, None, None),
                        "address": address,
                        "paused": False,
                        "state": State.UNKNOWN.value,
                        "backoff": 0,
                        "created_at": now,
                        "provider": None,
                        **values,
                    }
                )
                result.added.append(address)
        if inserts:
            await conn.execute(accounts.insert(), inserts)
        for changed in (*updates.values(), reschedules):
            if changed:
                await conn.execute(accounts.update().where(accounts.c.id == sa.bindparam("b_id")), changed)
    return result


def _oauth_values(key: FleetKey, address: str, refresh: RefreshRequest | None, old: Any) -> dict[str, Any]:
    from inboxcheck.fleet.oauth import public_json

    if refresh is None:
        return dict.fromkeys(("oauth", *_OAUTH_FIELDS))
    secret = refresh.client_secret
    values = {
        "oauth": public_json(refresh),
        "oauth_client_secret": None
        if secret is None
        else key.encrypt(address, "oauth_client_secret", secret.get_secret_value()),
    }
    token = refresh.refresh_token.get_secret_value()
    if old is not None and _opened(key, old, "oauth_given_token") == token:
        # The token this account was given before: the stored one (perhaps rotated since) stands.
        return values
    return {
        **values,
        "oauth_refresh_token": key.encrypt(address, "oauth_refresh_token", token),
        "oauth_given_token": key.encrypt(address, "oauth_given_token", token),
    }


def _same(row: Any, key: FleetKey, payload: str, account: Account, refresh: RefreshRequest | None) -> bool:
    """Whether the stored account is ``account``: the same payload, passwords and OAuth2 refresh."""
    from inboxcheck.fleet.oauth import public_json

    if row.payload != payload or not all(
        key.decrypt(row.address, name, getattr(row, name)) == getattr(account, name).get_secret_value()
        for name in _FIELDS
    ):
        return False
    if refresh is None or row.oauth is None:
        return refresh is None and row.oauth is None
    secret = refresh.client_secret
    return (
        row.oauth == public_json(refresh)
        and _opened(key, row, "oauth_given_token") == refresh.refresh_token.get_secret_value()
        and _opened(key, row, "oauth_client_secret")
        == (None if secret is None else secret.get_secret_value())
    )


def _opened(key: FleetKey, row: Any, name: str) -> str | None:
    """``name``'s plaintext; ``None`` when the column is empty or ``key`` does not open it."""
    blob = getattr(row, name)
    return None if blob is None else key.decrypt(row.address, name, blob)


async def list_accounts(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                accounts.c.address,
                accounts.c.provider,
                accounts.c.interval_s,
                accounts.c.paused,
                accounts.c.next_due,
                accounts.c.state,
                accounts.c.oauth,
            ).order_by(accounts.c.address)
        )
        return [
            {
                "email_address": row.address,
                "provider": row.provider,
                "interval_s": row.interval_s,
                "paused": bool(row.paused),
                "next_due": iso(row.next_due),
                "verdict": row.state,
                # How it logs in: its passwords, or OAuth2 tokens by refresh (the provider named).
                "login": "password" if row.oauth is None else f"oauth2 {json.loads(row.oauth)['provider']}",
            }
            for row in rows
        ]


async def remove_account(engine: AsyncEngine, address: str) -> None:
    async with writing(engine) as conn:
        done = await conn.execute(accounts.delete().where(accounts.c.address == _normal(address)))
        if done.rowcount == 0:
            raise UnknownAccountError(address)


async def set_paused(engine: AsyncEngine, address: str, paused: bool, *, now: float) -> None:
    async with writing(engine) as conn:
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        if not paused:
            values["next_due"] = now
        done = await conn.execute(
            accounts.update().where(accounts.c.address == _normal(address)).values(**values)
        )
        if done.rowcount == 0:
            raise UnknownAccountError(address)


async def load_accounts(
    engine: AsyncEngine,
    ids: Sequence[int],
    *,
    key: FleetKey,
    refresh: dict[int, FleetOAuth] | None = None,
) -> list[tuple[int, Account]]:
    """The accounts ``ids`` with their passwords, or WrongKeyError naming every one ``key`` does not
    open (then none is returned).

    An OAuth2 account comes with no access token (its logins would be skipped: a password is never
    sent in a token's place); its refresh is put in ``refresh`` (by id) for the caller to get one
    (:func:`inboxcheck.fleet.oauth.preparer`).
    """
    from inboxcheck._input import OAuthTokens
    from inboxcheck._models import Account
    from inboxcheck.fleet.oauth import FleetOAuth, request_from

    out: list[tuple[int, Account]] = []
    wrong: list[str] = []
    async with engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            rows = await conn.execute(
                sa.select(
                    accounts.c.id,
                    accounts.c.address,
                    accounts.c.payload,
                    accounts.c.smtp_password,
                    accounts.c.imap_password,
                    accounts.c.key_id,
                    accounts.c.oauth,
                    accounts.c.oauth_refresh_token,
                    accounts.c.oauth_client_secret,
                ).where(accounts.c.id.in_(ids[start : start + 1000]))
            )
            for row in rows:
                secrets = [key.decrypt(row.address, name, getattr(row, name)) for name in _FIELDS]
                token = _opened(key, row, "oauth_refresh_token")
                client_secret = _opened(key, row, "oauth_client_secret")
                if (
                    row.key_id != key.id
                    or None in secrets
                    or (row.oauth is not None and token is None)
                    or (row.oauth_client_secret is not None and client_secret is None)
                ):
                    wrong.append(row.address)
                    continue
                data = json.loads(row.payload)
                data.update(zip(_FIELDS, secrets, strict=True))
                account = Account.model_validate(data)
                if row.oauth is not None:
                    assert token is not None
                    account = OAuthTokens.both(None, "an OAuth2 refresh").apply(account)
                    if refresh is not None:
                        refresh[row.id] = FleetOAuth(
                            request_from(row.oauth, token, client_secret), row.oauth_refresh_token
                        )
                out.append((row.id, account))
    if wrong:
        raise WrongKeyError(sorted(wrong))
    order = {account_id: n for n, account_id in enumerate(ids)}
    out.sort(key=lambda item: order[item[0]])
    return out


async def rekey(engine: AsyncEngine, *, old: FleetKey, new: FleetKey, now: float) -> int:
    """Re-encrypt every account's passwords under ``new``, in one transaction; how many accounts.

    Every row is decrypted before any is written: one that ``old`` does not open leaves all as they were.
    """
    names = (*_FIELDS, *_OAUTH_FIELDS)
    async with writing(engine) as conn:
        rows = list(
            await conn.execute(
                sa.select(accounts.c.id, accounts.c.address, *(accounts.c[name] for name in names))
            )
        )
        plain: dict[int, list[str | None]] = {
            row.id: [_opened(old, row, name) for name in names] for row in rows
        }
        wrong = sorted(
            row.address
            for row in rows
            if any(
                secret is None and getattr(row, name) is not None
                for name, secret in zip(names, plain[row.id], strict=True)
            )
        )
        if wrong:
            raise WrongKeyError(wrong)
        for row in rows:
            values = {
                name: new.encrypt(row.address, name, secret)
                for name, secret in zip(names, plain[row.id], strict=True)
                if secret is not None
            }
            await conn.execute(
                accounts.update()
                .where(accounts.c.id == row.id)
                .values(key_id=new.id, updated_at=now, **values)
            )
        return len(rows)


async def save_refresh_token(
    engine: AsyncEngine,
    account_id: int,
    *,
    address: str,
    token: SecretStr,
    replaces: bytes,
    key: FleetKey,
    now: float,
) -> bool:
    """Store a refresh token the endpoint rotated, encrypted, in place of the one it replaces (its
    stored ciphertext): an account re-added meanwhile with a new token keeps that one. Whether it
    was stored."""
    blob = key.encrypt(_normal(address), "oauth_refresh_token", token.get_secret_value())
    async with writing(engine) as conn:
        done = await conn.execute(
            accounts.update()
            .where(
                accounts.c.id == account_id,
                accounts.c.oauth_refresh_token == replaces,
                accounts.c.key_id == key.id,
            )
            .values(oauth_refresh_token=blob, updated_at=now)
        )
        return bool(done.rowcount)
