"""The library's entry points: ``check`` (async) and ``check_sync`` (for code without an event loop)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from inboxcheck._errors import OptionsError
from inboxcheck._input import parse_account
from inboxcheck._models import Account, Report
from inboxcheck._options import CheckOptions
from inboxcheck._presets import Presets
from inboxcheck._runner import run_checks

if TYPE_CHECKING:
    import dns.asyncresolver

__all__ = ["as_account", "build_options", "check", "check_sync"]


def build_options(options: CheckOptions | None, overrides: Mapping[str, Any]) -> CheckOptions:
    """``options`` as given, or one built from keyword overrides, with an error naming a bad one."""
    if options is not None and overrides:
        raise OptionsError("pass either options= or individual option keywords, not both")
    if options is not None:
        return options
    try:
        return CheckOptions(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {str(error['msg']).removeprefix('Value error, ')}"
            for error in exc.errors()
        )
        raise OptionsError(f"invalid options: {problems}") from None


def as_account(account: Account | Mapping[str, Any]) -> Account:
    """An :class:`Account` as given, or validated from a payload mapping (passwords from the mapping
    only: a library call never reads the environment or prompts)."""
    if isinstance(account, Account):
        return account
    return parse_account(dict(account), source="account", env={})


async def check(
    account: Account | Mapping[str, Any],
    *,
    options: CheckOptions | None = None,
    presets: Presets | None = None,
    resolver: dns.asyncresolver.Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **option_overrides: Any,
) -> Report:
    """Check one account and return its report.

    ``account`` is an :class:`Account` or a payload mapping in the platform's format. Options come as
    ``options=CheckOptions(...)`` or as keywords (``timeout=5, nameservers=["127.0.0.1:5353"]``). The
    resolver and TLS context can be passed in; by default they are built from the options.

    Raises :class:`AccountError` or :class:`OptionsError` for unusable input; every finding about
    the account is in the report, never raised.
    """
    return await run_checks(
        as_account(account),
        options=build_options(options, option_overrides),
        presets=presets,
        resolver=resolver,
        ssl_context=ssl_context,
    )


def check_sync(
    account: Account | Mapping[str, Any],
    *,
    options: CheckOptions | None = None,
    presets: Presets | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **option_overrides: Any,
) -> Report:
    """:func:`check` for code that has no event loop running. Must not be called from inside one."""
    return asyncio.run(
        check(account, options=options, presets=presets, ssl_context=ssl_context, **option_overrides)
    )
