"""The lab's OAuth2 authorization server double: token introspection for Dovecot, and a token endpoint.

Dovecot's ``oauth2`` passdb (``introspection_mode = post``) asks ``POST /introspect`` with
``token=<access token>`` whether a token is active and whose it is (RFC 7662); Postfix authenticates
through Dovecot, so XOAUTH2 and OAUTHBEARER work for real on both. Access tokens are minted per lab user
at every start (:meth:`OAuthDouble.access_token`); anything else is inactive.

``POST /token`` is a refresh endpoint (RFC 6749 section 6) whose answer depends on the refresh token
sent, so a test picks the behaviour by the token it writes to the refresh-token file:

- :meth:`OAuthDouble.refresh_token` of a user: a good refresh, an access token that logs in;
- ``expired``: Microsoft's ``invalid_grant`` with AADSTS700082 (refresh token expired for inactivity);
- ``revoked``: Google's ``invalid_grant`` ("Token has been expired or revoked.");
- ``no-consent``: ``invalid_grant`` with AADSTS65001 (consent missing);
- ``narrow-scope:<user>``: a token that logs in, but whose ``scope`` lacks the mail scope;
- ``flaky:<user>``: HTTP 503 on the first request, then a good refresh;
- ``bad-scope``: ``invalid_scope``;
- ``mfa``: Microsoft's ``interaction_required`` with AADSTS50076 (MFA needed), which has no code of its own;
- a client id of ``wrong-client``: ``invalid_client``;
- :meth:`OAuthDouble.rotating_refresh_token` of a user: a good refresh that also issues a new refresh
  token and retires the one sent (strict rotation: sent again, it is ``invalid_grant``);
- a token given to :meth:`OAuthDouble.revoke`: Google's ``invalid_grant``, as ``revoked``.

Runs in a thread of the process that owns the lab, on a free loopback port.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs

__all__ = ["GOOGLE_SCOPE", "OAuthDouble"]

GOOGLE_SCOPE: Final = "https://mail.google.com/"
_MAX_BODY: Final = 64 * 1024


class OAuthDouble:
    """Introspection and token endpoint on ``127.0.0.1:port`` for the lab's users."""

    def __init__(self, users: Iterable[str]) -> None:
        self._tokens = {f"lab-at-{secrets.token_urlsafe(24)}": user for user in users}
        self._refresh = {f"lab-rt-{secrets.token_urlsafe(24)}": user for user in self._tokens.values()}
        self._lock = threading.Lock()
        self._flaky_seen: set[str] = set()
        self._rotating: dict[str, str] = {}
        self._revoked: set[str] = set()
        #: Every refresh token issued by a rotation, in order (for tests: none may leak).
        self.issued_refresh_tokens: list[str] = []
        #: Every token-endpoint request's form, in order (secrets included: for tests only).
        self.token_requests: list[dict[str, str]] = []
        self.introspections = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what tests use ---------------------------------------------------------------------------

    def access_token(self, user: str) -> str:
        return next(token for token, owner in self._tokens.items() if owner == user)

    def refresh_token(self, user: str) -> str:
        return next(token for token, owner in self._refresh.items() if owner == user)

    def rotating_refresh_token(self, user: str) -> str:
        """A new refresh token of ``user`` that the endpoint rotates at each use."""
        token = f"lab-rrt-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._rotating[token] = user
        return token

    def revoke(self, refresh_token: str) -> None:
        """From now on, ``refresh_token`` is refused as revoked (the user withdrew the app's access)."""
        with self._lock:
            self._revoked.add(refresh_token)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/introspect"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # tokens would reach stderr

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {
                    k: v[0] for k, v in parse_qs(self.rfile.read(min(length, _MAX_BODY)).decode()).items()
                }
                status, body = double._answer(self.path, form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="lab-oauth", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    # --- answers ----------------------------------------------------------------------------------

    def _answer(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path == "/introspect":
            with self._lock:
                self.introspections += 1
            user = self._tokens.get(form.get("token", ""))
            if user is None:
                return 200, {"active": False}
            return 200, {"active": True, "username": user, "scope": GOOGLE_SCOPE}
        if path == "/token":
            with self._lock:
                self.token_requests.append(dict(form))
            return self._refresh_answer(form)
        return 404, {"error": "not_found"}

    def _granted(self, user: str, scope: str = GOOGLE_SCOPE) -> tuple[int, dict[str, Any]]:
        return 200, {
            "access_token": self.access_token(user),
            "token_type": "Bearer",
            "expires_in": 3599,
            "scope": scope,
        }

    def _refresh_answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_id") == "wrong-client":
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        refresh = form.get("refresh_token", "")
        kind, _, user = refresh.partition(":")
        if refresh in self._revoked:
            refresh = "revoked"
        with self._lock:
            rotated_user = self._rotating.pop(refresh, None)
            if rotated_user is not None:
                issued = f"lab-rrt-{secrets.token_urlsafe(24)}"
                self._rotating[issued] = rotated_user
                self.issued_refresh_tokens.append(issued)
        if rotated_user is not None:
            status, body = self._granted(rotated_user)
            return status, {**body, "refresh_token": issued}
        if refresh in self._refresh:
            return self._granted(self._refresh[refresh])
        if refresh == "expired":
            return 400, {
                "error": "invalid_grant",
                "error_description": "AADSTS700082: The refresh token has expired due to inactivity. The "
                "token was issued on 2026-08-01T10:00:00Z and was inactive for 90.00:00:00.",
                "error_codes": [700082],
            }
        if refresh == "revoked":
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        if refresh == "no-consent":
            return 400, {
                "error": "invalid_grant",
                "error_description": "AADSTS65001: The user or administrator has not consented to use the "
                "application with ID 'lab-client'.",
                "error_codes": [65001],
            }
        if refresh == "bad-scope":
            return 400, {"error": "invalid_scope", "error_description": "The requested scope is invalid."}
        if refresh == "mfa":
            return 400, {
                "error": "interaction_required",
                "error_description": "AADSTS50076: Due to a configuration change made by your administrator, "
                "you must use multi-factor authentication.",
                "error_codes": [50076],
            }
        if kind == "narrow-scope" and user in self._tokens.values():
            return self._granted(user, "openid email")
        if kind == "flaky" and user in self._tokens.values():
            with self._lock:
                first = refresh not in self._flaky_seen
                self._flaky_seen.add(refresh)
            if first:
                return 503, {"error": "temporarily_unavailable"}
            return self._granted(user)
        return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
