"""The --oauth-* options: an OAuth2 access token instead of the passwords, given in a file or got by
a refresh at the provider's token endpoint (INBOXCHECK_SMTP_OAUTH_TOKEN / _IMAP_ also work).

The payload stays the platform's: a token replaces its passwords for the logins, it adds no field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from inboxcheck.cli._terminal import run_async

if TYPE_CHECKING:
    from inboxcheck._input import OAuthTokens
    from inboxcheck._models import CheckResult
    from inboxcheck._options import CheckOptions

__all__ = ["OAUTH_OPTIONS", "oauth_params", "oauth_tokens"]

_FILE: Final = click.Path(path_type=Path)

OAUTH_OPTIONS: Final = tuple(
    click.option(f"--oauth-{name}", f"oauth_{name.replace('-', '_')}", **attrs)
    for name, attrs in (
        ("token-file", {"type": _FILE, "help": "Log in with the OAuth2 access token in this file."}),
        (
            "provider",
            {
                "type": click.Choice(["google", "microsoft"]),
                "help": "Get a token by refresh from this provider.",
            },
        ),
        ("client-id", {"metavar": "ID", "help": "With --oauth-provider: the app's client id."}),
        ("refresh-token-file", {"type": _FILE, "help": "With --oauth-provider: the refresh token's file."}),
        ("client-secret-file", {"type": _FILE, "help": "With --oauth-provider: the client secret's file."}),
        (
            "tenant",
            {
                "default": "common",
                "show_default": True,
                "help": "With --oauth-provider microsoft: the tenant.",
            },
        ),
        (
            "token-url",
            {
                "metavar": "URL",
                "help": "With --oauth-provider: this token endpoint instead of the provider's.",
            },
        ),
    )
)


def oauth_params(params: dict[str, Any]) -> dict[str, Any]:
    """Takes the --oauth-* values out of a command's parameters."""
    return {key: params.pop(key) for key in list(params) if key.startswith("oauth_")}


def oauth_given(params: dict[str, Any]) -> bool:
    """Whether any --oauth-* option was given (the tenant has a default, so it does not count)."""
    return any(value is not None for key, value in params.items() if key != "oauth_tenant")


def oauth_tokens(
    params: dict[str, Any], options: CheckOptions | None
) -> tuple[OAuthTokens | None, tuple[CheckResult, ...]]:
    """The tokens the --oauth-* options give (None: the environment's, if any), and the refresh's result."""

    from inboxcheck._errors import OAuthInputError
    from inboxcheck._input import OAuthTokens
    from inboxcheck._oauth import RefreshRequest, read_secret_file, refresh_access_token

    given = {k: v for k, v in params.items() if v is not None and k != "oauth_tenant"}
    if given.get("oauth_token_file") is not None:
        if len(given) > 1:
            raise OAuthInputError(
                "--oauth-token-file goes alone: a token, or a refresh (--oauth-provider ...)"
            )
        token = read_secret_file(params["oauth_token_file"], "access token")
        return OAuthTokens.both(token, "--oauth-token-file"), ()
    if "oauth_provider" not in given:
        if given:
            raise OAuthInputError(f"--{sorted(given)[0].replace('_', '-')} goes with --oauth-provider")
        return None, ()
    missing = [
        f"--{k.replace('_', '-')}" for k in ("oauth_client_id", "oauth_refresh_token_file") if k not in given
    ]
    if missing:
        raise OAuthInputError(f"--oauth-provider needs {' and '.join(missing)}")
    secret_file = params.get("oauth_client_secret_file")
    request = RefreshRequest(
        provider=params["oauth_provider"],
        client_id=params["oauth_client_id"],
        refresh_token=read_secret_file(params["oauth_refresh_token_file"], "refresh token"),
        client_secret=read_secret_file(secret_file, "client secret") if secret_file is not None else None,
        tenant=params.get("oauth_tenant") or "common",
        token_url=params.get("oauth_token_url"),
    )
    timeout = options.timeout if options is not None else 10.0
    outcome = run_async(refresh_access_token(request, step_timeout=timeout))
    return OAuthTokens.both(outcome.token, "a refresh"), (outcome.result,)
