"""OAuth2 access tokens for the logins: from the environment, a file, or a refresh (RFC 6749 section 6).

A token replaces the payload's passwords for the logins; it adds no field to the payload. Where it
comes from is told (never its value):

- ``INBOXCHECK_SMTP_OAUTH_TOKEN`` / ``INBOXCHECK_IMAP_OAUTH_TOKEN`` (IMAP defaults to the SMTP one;
  read by :func:`inboxcheck._input.parse_account`);
- ``--oauth-token-file`` (one access token, for both logins);
- a refresh: the provider's token endpoint (or ``--oauth-token-url``) exchanges a refresh token read
  from a file for an access token. Its outcome is the report's ``oauth.token`` result: each refusal
  the endpoint can give (``invalid_grant``, ``invalid_client``, ``invalid_scope``, Microsoft's
  ``AADSTS`` codes) has its own finding and fix; a 5xx or a timeout is tried once more, then is
  "could not tell".

Refresh tokens, client secrets and access tokens are secrets: read from files (never the command
line), kept as :class:`~pydantic.SecretStr`, and scrubbed from every text the endpoint sends back.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import JsonValue, SecretStr

from inboxcheck._endpoint import is_loopback_host
from inboxcheck._errors import OAuthInputError
from inboxcheck._models import CheckResult, Finding, Severity, Status, finding
from inboxcheck._secrets import Scrubber

if TYPE_CHECKING:
    import httpx

__all__ = [
    "PROVIDERS",
    "Provider",
    "RefreshRequest",
    "TokenOutcome",
    "read_secret_file",
    "refresh_access_token",
]

MAX_SECRET_FILE: Final = 64 * 1024
MAX_BODY: Final = 256 * 1024
RESULT_NAME: Final = "oauth.token"
_MAX_TEXT: Final = 500
_RETRY_PAUSE: Final = 0.5

Provider = Literal["google", "microsoft"]


@dataclass(frozen=True)
class _ProviderFacts:
    token_url: str
    #: The scope a refresh asks for (Microsoft's v2 endpoint wants one), and the one a token must hold.
    scope: str | None
    mail_scopes: tuple[str, ...]
    source: str


# provider-facts.md, "OAuth2 logins": token endpoints and scopes.
PROVIDERS: Final[dict[str, _ProviderFacts]] = {
    "google": _ProviderFacts(
        token_url="https://oauth2.googleapis.com/token",
        scope=None,
        mail_scopes=("https://mail.google.com/",),
        source="https://developers.google.com/identity/protocols/oauth2/web-server#offline",
    ),
    "microsoft": _ProviderFacts(
        token_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        scope="https://outlook.office.com/SMTP.Send https://outlook.office.com/IMAP.AccessAsUser.All "
        "offline_access",
        mail_scopes=(
            "https://outlook.office.com/SMTP.Send",
            "https://outlook.office.com/IMAP.AccessAsUser.All",
        ),
        source="https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#refresh-the-access-token",
    ),
}


def read_secret_file(path: Path, what: str) -> SecretStr:
    """The one secret in ``path`` (surrounding white space removed), or :class:`OAuthInputError`."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_FILE + 1)
    except FileNotFoundError:
        raise OAuthInputError(f"{what} file {path}: no such file") from None
    except IsADirectoryError:
        raise OAuthInputError(f"{what} file {path}: is a directory") from None
    except PermissionError:
        raise OAuthInputError(f"{what} file {path}: permission denied") from None
    except OSError as exc:
        raise OAuthInputError(f"{what} file {path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_SECRET_FILE:
        raise OAuthInputError(f"{what} file {path}: larger than {MAX_SECRET_FILE // 1024} KiB")
    try:
        text = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise OAuthInputError(f"{what} file {path}: not UTF-8 text") from None
    if not text:
        raise OAuthInputError(f"{what} file {path}: is empty")
    if any(char.isspace() or not char.isprintable() for char in text):
        raise OAuthInputError(
            f"{what} file {path}: holds more than one line or word; put only the {what} in it"
        )
    return SecretStr(text)


@dataclass(frozen=True)
class RefreshRequest:
    """What a refresh sends (RFC 6749 section 6), and where."""

    provider: Provider
    client_id: str
    refresh_token: SecretStr = field(repr=False)
    client_secret: SecretStr | None = field(default=None, repr=False)
    tenant: str = "common"
    token_url: str | None = None

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise OAuthInputError(f"--oauth-provider {self.provider!r}: give one of {', '.join(PROVIDERS)}")
        if not self.client_id.strip() or any(not c.isprintable() for c in self.client_id):
            raise OAuthInputError("--oauth-client-id: give the app's client id")
        if not self.tenant or any(not (c.isalnum() or c in "-._") for c in self.tenant):
            raise OAuthInputError(f"--oauth-tenant {self.tenant!r}: give a tenant id, a domain, or common")
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise OAuthInputError(f"--oauth-token-url {self.url!r}: give an https:// URL")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            # A refresh token is a long-lived secret: it crosses no network unencrypted.
            raise OAuthInputError(
                f"--oauth-token-url {self.url!r}: the refresh token is sent only over https (plain http "
                "only to this machine)"
            )

    @property
    def facts(self) -> _ProviderFacts:
        return PROVIDERS[self.provider]

    @property
    def url(self) -> str:
        return self.token_url or self.facts.token_url.format(tenant=self.tenant)

    def form(self) -> dict[str, str]:
        body = {
            "grant_type": "refresh_token",
            "refresh_token": self.refresh_token.get_secret_value(),
            "client_id": self.client_id,
        }
        if self.client_secret is not None:
            body["client_secret"] = self.client_secret.get_secret_value()
        if self.facts.scope is not None:
            body["scope"] = self.facts.scope
        return body

    def scrubber(self) -> Scrubber:
        secrets = [self.refresh_token.get_secret_value()]
        if self.client_secret is not None:
            secrets.append(self.client_secret.get_secret_value())
        return Scrubber(secrets)


@dataclass(frozen=True)
class TokenOutcome:
    """A refresh's result: the access token (None when there is none) and the report's result.

    ``refresh_token`` is a new refresh token when the endpoint rotated it (RFC 6749 section 6: the
    client must then use the new one and may no longer use the old one): a caller that keeps the
    refresh token stores it.
    """

    token: SecretStr | None = field(repr=False)
    result: CheckResult
    refresh_token: SecretStr | None = field(default=None, repr=False)


# Each refusal the endpoint can give: (code, message, fix). Microsoft's AADSTS numbers come first
# (they are more precise than the OAuth error they come with).
_AADSTS: Final[dict[str, tuple[str, str, str]]] = {
    "700082": (
        "oauth.token.refresh_expired",
        "Microsoft refused the refresh token because it expired: it was not used for 90 days (AADSTS700082).",
        "The mailbox's owner signs in again through the app (the platform's 'reconnect'), which gives a "
        "new refresh token.",
    ),
    "65001": (
        "oauth.token.consent_missing",
        "Microsoft refused the refresh because the user or an administrator has not consented to the "
        "app's permissions (AADSTS65001).",
        "An administrator grants the app consent for SMTP.Send and IMAP.AccessAsUser.All (Entra admin "
        "centre, Enterprise applications), or the user signs in again and accepts.",
    ),
}
_ERRORS: Final[dict[str, tuple[str, str, str]]] = {
    "invalid_grant": (
        "oauth.token.invalid_grant",
        "The token endpoint refused the refresh token (invalid_grant): it was revoked, expired, or "
        "issued to another app, or the user changed the password.",
        "The mailbox's owner must reconnect: sign in again through the app to get a new refresh token.",
    ),
    "invalid_client": (
        "oauth.token.invalid_client",
        "The token endpoint did not accept the app (invalid_client): the client id or client secret "
        "is wrong, or the secret has expired.",
        "Check --oauth-client-id and the client secret file against the app's registration (Google Cloud "
        "console, or Entra app registrations); create a new secret if it expired.",
    ),
    "unauthorized_client": (
        "oauth.token.invalid_client",
        "The token endpoint refused the app (unauthorized_client): it may not use refresh tokens.",
        "Check the app's registration: it must be allowed the authorization-code flow with refresh tokens.",
    ),
    "invalid_scope": (
        "oauth.token.invalid_scope",
        "The token endpoint refused the scope the refresh asked for (invalid_scope): the app was not "
        "granted the mail permissions.",
        "Add the mail scopes to the app (Google https://mail.google.com/; Microsoft SMTP.Send and "
        "IMAP.AccessAsUser.All) and have the user sign in again.",
    ),
}


def _text(value: Any, scrub: Scrubber) -> str | None:
    return scrub(str(value))[:_MAX_TEXT] if isinstance(value, str | int) else None


def _refusal(status: int, body: Mapping[str, Any], scrub: Scrubber, url: str) -> Finding:
    error = _text(body.get("error"), scrub) or ""
    description = _text(body.get("error_description"), scrub) or ""
    codes = body.get("error_codes")
    numbers = [str(c) for c in codes] if isinstance(codes, list) else []
    numbers += [part[6:].rstrip(":") for part in description.split() if part.startswith("AADSTS")]
    evidence: dict[str, JsonValue] = {
        "url": url,
        "http_status": status,
        "error": error,
        "error_description": description,
    }
    known = next((_AADSTS[n] for n in numbers if n in _AADSTS), None) or _ERRORS.get(error)
    if known is not None:
        code, message, fix = known
        return finding(code, Severity.FAIL, message, fix=fix, **evidence)
    return finding(
        "oauth.token.rejected",
        Severity.FAIL,
        f"The token endpoint refused the refresh (HTTP {status}"
        + (f", {error}" if error else "")
        + "); the endpoint's words are in the evidence.",
        fix="Read error_description in the evidence; usually the user must sign in again through the app.",
        **evidence,
    )


def _result(findings: list[Finding], summary: str, started: float, **details: JsonValue) -> CheckResult:
    return CheckResult(
        name=RESULT_NAME,
        title="OAuth2 access token",
        status=CheckResult.status_of(findings) if findings else Status.PASS,
        summary=summary,
        duration_ms=round((time.monotonic() - started) * 1000),
        findings=tuple(findings),
        details=dict(details),
    )


async def refresh_access_token(
    request: RefreshRequest,
    *,
    step_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> TokenOutcome:
    """Exchange the refresh token for an access token. Never raises for what the endpoint does."""
    import httpx

    started = time.monotonic()
    scrub = request.scrubber()
    url = request.url
    last: Finding | None = None
    async with httpx.AsyncClient(
        verify=ssl_context if ssl_context is not None else True,
        trust_env=False,
        follow_redirects=False,
        timeout=step_timeout,
        transport=transport,
    ) as client:
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(_RETRY_PAUSE)
            try:
                async with asyncio.timeout(step_timeout * 1.5):
                    response = await client.post(
                        url, data=request.form(), headers={"Accept": "application/json"}
                    )
                    body_bytes = await response.aread()
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                last = finding(
                    "oauth.token.unavailable",
                    Severity.ERROR,
                    "The token endpoint could not be reached, so inboxcheck could not get an access token "
                    "and could not tell whether the logins work.",
                    fix="Check the network and --oauth-token-url, then try again.",
                    url=url,
                    detail=scrub(str(exc) or type(exc).__name__)[:_MAX_TEXT],
                )
                continue
            status = response.status_code
            body: Any = None
            if len(body_bytes) <= MAX_BODY:
                try:
                    body = response.json()
                except ValueError:
                    body = None
            if status >= 500 or status == 429:
                last = finding(
                    "oauth.token.unavailable",
                    Severity.ERROR,
                    f"The token endpoint answered HTTP {status} (a temporary failure) twice, so inboxcheck "
                    "could not get an access token and could not tell whether the logins work.",
                    fix="Try again later.",
                    url=url,
                    http_status=status,
                )
                continue
            if not isinstance(body, dict):
                found = finding(
                    "oauth.token.rejected",
                    Severity.FAIL,
                    f"The token endpoint answered HTTP {status} with no OAuth2 JSON reply.",
                    fix="Check --oauth-token-url: it must be the provider's token endpoint.",
                    url=url,
                    http_status=status,
                )
                return TokenOutcome(None, _result([found], "no access token", started))
            if status != 200 or "error" in body:
                found = _refusal(status, body, scrub, url)
                return TokenOutcome(None, _result([found], "the refresh was refused", started))
            token = body.get("access_token")
            if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token):
                found = finding(
                    "oauth.token.rejected",
                    Severity.FAIL,
                    "The token endpoint's reply has no usable access_token.",
                    fix="Check --oauth-token-url: it must be the provider's token endpoint.",
                    url=url,
                    http_status=status,
                )
                return TokenOutcome(None, _result([found], "no access token", started))
            return _granted(request, body, token, started)
    assert last is not None
    return TokenOutcome(None, _result([last], "could not get an access token", started))


def _granted(request: RefreshRequest, body: Mapping[str, Any], token: str, started: float) -> TokenOutcome:
    scope = body.get("scope")
    granted = scope.split() if isinstance(scope, str) else None
    findings: list[Finding] = []
    details: dict[str, JsonValue] = {"provider": request.provider, "url": request.url}
    if granted is not None:
        details["scope"] = list[JsonValue](granted)
        # Google names the mail scope; Microsoft may name it with or without its resource prefix.
        missing = [
            s for s in request.facts.mail_scopes if s not in granted and s.rsplit("/", 1)[-1] not in granted
        ]
        if missing:
            findings.append(
                finding(
                    "oauth.token.scope_missing",
                    Severity.FAIL,
                    f"The access token does not carry the mail scope ({', '.join(missing)}), so the "
                    "server will refuse it.",
                    fix="Add the mail scope to the app's consent screen or API permissions and have the user "
                    "sign in again to grant it.",
                    granted=list[JsonValue](granted),
                    missing=list[JsonValue](missing),
                )
            )
    expires = body.get("expires_in")
    if isinstance(expires, int | str) and str(expires).isdigit():
        details["expires_in"] = int(expires)
    issued = body.get("refresh_token")
    rotated = (
        SecretStr(issued)
        if isinstance(issued, str)
        and issued.strip()
        and not any(c.isspace() or not c.isprintable() for c in issued)
        and issued != request.refresh_token.get_secret_value()
        else None
    )
    details["new_refresh_token"] = rotated is not None
    return TokenOutcome(
        SecretStr(token),
        _result(findings, "got an access token by refresh", started, **details),
        refresh_token=rotated,
    )
