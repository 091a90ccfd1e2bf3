"""Reading an account: a JSON file in the platform's payload format, or ``-`` for standard input.

Passwords may be left out of the file. They then come from ``INBOXCHECK_SMTP_PASSWORD`` and
``INBOXCHECK_IMAP_PASSWORD`` (IMAP falls back to the SMTP password, as most providers use one app
password for both), or from a prompt when a terminal is there to answer it. The command line never
carries them.

An OAuth2 access token replaces the passwords for the logins: from ``INBOXCHECK_SMTP_OAUTH_TOKEN`` /
``INBOXCHECK_IMAP_OAUTH_TOKEN`` (IMAP defaults to the SMTP token), or given by the caller (a token
file, a refresh: :mod:`inboxcheck._oauth`). The payload gains no field: a password the file leaves out
is the token, and the logins use :meth:`Account.with_credentials`.

Every problem is reported at once, one line per field: what is wrong and what is allowed. Values of
password fields are never echoed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from inboxcheck._credential import Credential
from inboxcheck._errors import AccountError, FieldProblem
from inboxcheck._models import Account, Finding, Severity, finding

__all__ = [
    "ENV_IMAP_OAUTH_TOKEN",
    "ENV_IMAP_PASSWORD",
    "ENV_SMTP_OAUTH_TOKEN",
    "ENV_SMTP_PASSWORD",
    "FIELD_RULES",
    "InputErrorDocument",
    "LongInteger",
    "OAuthTokens",
    "PasswordSource",
    "decode_json",
    "input_error_document",
    "load_account",
    "parse_account",
]

ENV_SMTP_PASSWORD: Final = "INBOXCHECK_SMTP_PASSWORD"
ENV_IMAP_PASSWORD: Final = "INBOXCHECK_IMAP_PASSWORD"
ENV_SMTP_OAUTH_TOKEN: Final = "INBOXCHECK_SMTP_OAUTH_TOKEN"
ENV_IMAP_OAUTH_TOKEN: Final = "INBOXCHECK_IMAP_OAUTH_TOKEN"
MAX_FILE_BYTES: Final = 1_000_000
PASSWORD_FIELDS: Final = frozenset({"smtp_password", "imap_password"})
# No field takes an integer this long; converting a longer one costs quadratic time, and Python
# refuses past 4,300 digits (a ValueError that no field name would explain).
MAX_INTEGER_DIGITS: Final = 100

# What the platform allows for each field, as a person would say it.
FIELD_RULES: Final[dict[str, str]] = {
    "email_address": "an email address of 5-255 characters",
    "display_name": "text of 1-255 characters, on one line, without control characters",
    "inbox_type": "one of GOOGLE_WORKSPACE, OUTLOOK_365, CUSTOM_SMTP",
    "smtp_host": "a host name of 1-255 characters, e.g. smtp.gmail.com",
    "smtp_port": "an integer from 1 to 65535 (587 for STARTTLS, 465 for implicit TLS)",
    "smtp_username": "text of 1-255 characters, usually the full address",
    "smtp_password": "text of 1-500 characters (an app password)",
    "imap_host": "a host name of 1-255 characters, e.g. imap.gmail.com",
    "imap_port": "an integer from 1 to 65535 (993 for implicit TLS, 143 for STARTTLS)",
    "imap_username": "text of 1-255 characters, usually the full address",
    "imap_password": "text of 1-500 characters (an app password)",
    "daily_limit": "an integer of at least 1",
    "smtp_use_tls": "true or false",
    "imap_use_ssl": "true or false",
}

Prompt = Callable[[str], str]


class LongInteger(str):
    """An integer literal too long to convert, kept as its digits so the field check can name it."""


def long_integer_or_int(digits: str) -> int | LongInteger:
    """``int(digits)``, or a :class:`LongInteger` past :data:`MAX_INTEGER_DIGITS` digits."""
    if len(digits.lstrip("+-")) > MAX_INTEGER_DIGITS:
        return LongInteger(digits)
    return int(digits)


class PasswordSource(dict[str, str]):
    """Where each password came from (file, environment, prompt): told to the user, never the value."""


# JSON's types as a person reads them; bool before int, which it subclasses.
_JSON_TYPES: Final[tuple[tuple[type, str], ...]] = (
    (type(None), "null"),
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number with a fraction"),
    (str, "a string"),
    (list, "a list"),
    (dict, "an object"),
)


def _json_type(value: object) -> str:
    if isinstance(value, LongInteger):
        return f"an integer of {len(value.lstrip('+-'))} digits"
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def _shown(field: str, value: object) -> str:
    if field in PASSWORD_FIELDS:
        return _json_type(value) if not isinstance(value, str) else f"{len(value)} characters"
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem_for(error: Mapping[str, Any], data: Mapping[str, Any]) -> FieldProblem:
    loc = error.get("loc") or ("(payload)",)
    field = str(loc[0])
    kind = error.get("type", "")
    rule = FIELD_RULES.get(field, "")
    allowed = f"; allowed: {rule}" if rule else ""
    present = field in data
    value = data.get(field)
    if kind == "missing":
        return FieldProblem(field, f"is missing{allowed}")
    if kind == "extra_forbidden":
        guess = difflib.get_close_matches(field, FIELD_RULES, n=1)
        hint = f"; did you mean {guess[0]}?" if guess else "; the platform's payload has no such field"
        return FieldProblem(field, f"is not a field of the account payload{hint}")
    if kind in ("string_too_short", "string_too_long", "too_short", "too_long") and isinstance(value, str):
        return FieldProblem(field, f"has {len(value)} characters{allowed}")
    if kind.endswith("_type") or kind in ("enum", "literal_error"):
        got = _shown(field, value) if present else "nothing"
        if kind == "enum" or kind == "literal_error":
            return FieldProblem(field, f"is {got}{allowed}")
        return FieldProblem(
            field,
            f"is {_json_type(value)} ({got}){allowed}"
            if field not in PASSWORD_FIELDS
            else f"is {got}{allowed}",
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return FieldProblem(field, f"is {_shown(field, value)}, out of range{allowed}")
    if kind == "value_error":
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        return FieldProblem(field, f"{message}; got {_shown(field, value)}")
    return FieldProblem(field, f"{error.get('msg', 'is not valid')}{allowed}")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    duplicates = []
    for key, value in pairs:
        if key in result:
            duplicates.append(key)
        result[key] = value
    if duplicates:
        result["\0duplicates"] = duplicates
    return result


def parse_account(
    data: object,
    *,
    source: str = "account",
    env: Mapping[str, str] | None = None,
    prompt: Prompt | None = None,
    sources: PasswordSource | None = None,
    tokens: OAuthTokens | None = None,
) -> Account:
    """Validate an account payload (already decoded from JSON), filling in passwords left out.

    ``tokens`` (else the environment's) log in instead of the passwords. Raises :class:`AccountError`
    listing every problem, one per field.
    """
    env = os.environ if env is None else env
    if tokens is None:
        tokens = OAuthTokens.from_env(env)
    if not isinstance(data, dict):
        raise AccountError(
            source, message=f"expected a JSON object with the account's fields, got {_json_type(data)}"
        )
    payload = dict(data)
    problems = [
        FieldProblem(key, "appears more than once; keep one") for key in payload.pop("\0duplicates", [])
    ]
    long = [key for key, value in payload.items() if isinstance(value, LongInteger) and key in FIELD_RULES]
    problems += [
        FieldProblem(key, f"is {_json_type(payload[key])}; allowed: {FIELD_RULES[key]}") for key in long
    ]
    sources = sources if sources is not None else PasswordSource()
    _fill_from_tokens(payload, tokens, sources)
    _fill_passwords(payload, env=env, prompt=prompt, sources=sources)
    try:
        account = Account.model_validate({k: v for k, v in payload.items() if k not in long})
    except ValidationError as exc:
        problems += [
            _problem_for(error, payload)
            for error in exc.errors()
            if not (error.get("loc") and error["loc"][0] in long)
        ]
        problems = [_with_password_hint(p) for p in problems]
        raise AccountError(source, problems) from None
    if problems:
        raise AccountError(source, problems)
    return tokens.apply(account)


@dataclasses.dataclass(frozen=True)
class OAuthTokens:
    """OAuth2 access tokens for the logins (None: that login uses its password). An empty token
    stands for one that could not be got (a refused refresh): that login is then skipped."""

    smtp: SecretStr | None = dataclasses.field(default=None, repr=False)
    imap: SecretStr | None = dataclasses.field(default=None, repr=False)
    origin: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OAuthTokens:
        smtp = env.get(ENV_SMTP_OAUTH_TOKEN, "").strip()
        imap = env.get(ENV_IMAP_OAUTH_TOKEN, "").strip() or smtp
        return cls(
            SecretStr(smtp) if smtp else None,
            SecretStr(imap) if imap else None,
            origin=ENV_SMTP_OAUTH_TOKEN if smtp else ENV_IMAP_OAUTH_TOKEN,
        )

    @classmethod
    def both(cls, token: SecretStr | None, origin: str) -> OAuthTokens:
        """One token for both logins; None (could not be got) skips both logins."""
        value = token if token is not None else SecretStr("")
        return cls(value, value, origin)

    def apply(self, account: Account) -> Account:
        # An empty token (one that could not be got) is still a token: its login is skipped, and the
        # payload's password (if any) is never sent in its place. SecretStr("") is falsy: test for None.
        smtp, imap = self.smtp, self.imap
        if smtp is None and imap is None:
            return account
        return account.with_credentials(
            smtp=None if smtp is None else Credential.bearer(account.smtp_username, smtp.get_secret_value()),
            imap=None if imap is None else Credential.bearer(account.imap_username, imap.get_secret_value()),
        )


# What a payload password left out holds when its login uses a token that could not be got: the
# login is skipped (nothing is sent), and a report with this account fails on the token's result.
_NO_TOKEN: Final = "(no OAuth2 access token)"


def _fill_from_tokens(payload: dict[str, Any], tokens: OAuthTokens, sources: PasswordSource) -> None:
    for field_name, token in (("smtp_password", tokens.smtp), ("imap_password", tokens.imap)):
        if token is None:
            continue
        if payload.get(field_name) in (None, ""):
            payload[field_name] = token.get_secret_value() or _NO_TOKEN
            sources[field_name] = f"the OAuth2 token ({tokens.origin})"


def _with_password_hint(problem: FieldProblem) -> FieldProblem:
    if problem.field == "smtp_password" and problem.problem.startswith("is missing"):
        return FieldProblem(
            problem.field,
            f"is missing: put it in the file, set {ENV_SMTP_PASSWORD}, or run on a terminal to be asked",
        )
    if problem.field == "imap_password" and problem.problem.startswith("is missing"):
        return FieldProblem(
            problem.field,
            f"is missing: put it in the file or set {ENV_IMAP_PASSWORD} (it defaults to the SMTP password)",
        )
    return problem


def _fill_passwords(
    payload: dict[str, Any], *, env: Mapping[str, str], prompt: Prompt | None, sources: PasswordSource
) -> None:
    for field in ("smtp_password", "imap_password"):
        if payload.get(field) not in (None, ""):
            sources[field] = "file"
    if payload.get("smtp_password") in (None, ""):
        payload.pop("smtp_password", None)
        if env.get(ENV_SMTP_PASSWORD):
            payload["smtp_password"] = env[ENV_SMTP_PASSWORD]
            sources["smtp_password"] = ENV_SMTP_PASSWORD
        elif prompt is not None:
            answer = prompt(f"SMTP password for {payload.get('smtp_username', 'the account')}")
            if answer:
                payload["smtp_password"] = answer
                sources["smtp_password"] = "prompt"
    if payload.get("imap_password") in (None, ""):
        payload.pop("imap_password", None)
        if env.get(ENV_IMAP_PASSWORD):
            payload["imap_password"] = env[ENV_IMAP_PASSWORD]
            sources["imap_password"] = ENV_IMAP_PASSWORD
        elif "smtp_password" in payload:
            payload["imap_password"] = payload["smtp_password"]
            sources["imap_password"] = "the SMTP password"
        elif prompt is not None:
            answer = prompt(f"IMAP password for {payload.get('imap_username', 'the account')}")
            if answer:
                payload["imap_password"] = answer
                sources["imap_password"] = "prompt"


def decode_json(text: str) -> object:
    """Decode one JSON document as an account payload is read: repeated keys are marked for
    :func:`parse_account` to refuse, and integers too long to convert are kept as :class:`LongInteger`.

    Raises ``json.JSONDecodeError``, or ``RecursionError`` for nesting too deep.
    """
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_int=long_integer_or_int)


def read_json(source: str | Path, *, stdin: IO[str] | None = None) -> tuple[object, str]:
    """Read and decode a JSON document from a path or ``-``; returns (data, name for messages)."""
    name = "<stdin>" if str(source) == "-" else str(source)
    try:
        if str(source) == "-":
            text = (stdin or sys.stdin).read(MAX_FILE_BYTES + 1)
        else:
            path = Path(source)
            if path.is_dir():
                raise AccountError(name, message="is a directory, not an account file")
            with path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
            text = raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise AccountError(name, message="no such file") from None
    except PermissionError:
        raise AccountError(name, message="permission denied: cannot read the file") from None
    except UnicodeDecodeError as exc:
        raise AccountError(name, message=f"not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise AccountError(name, message=f"cannot read: {exc.strerror or exc}") from None
    if len(text) > MAX_FILE_BYTES:
        raise AccountError(
            name, message=f"larger than {MAX_FILE_BYTES:,} bytes; an account payload is a few hundred"
        )
    if not text.strip():
        raise AccountError(name, message="is empty; expected a JSON object with the account's fields")
    try:
        return decode_json(text), name
    except json.JSONDecodeError as exc:
        raise AccountError(
            name, message=f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise AccountError(name, message="not valid JSON: nested too deeply") from None


def load_account(
    source: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    prompt: Prompt | None = None,
    stdin: IO[str] | None = None,
    sources: PasswordSource | None = None,
    tokens: OAuthTokens | None = None,
) -> Account:
    """Read an account from a JSON file (or ``-`` for standard input) and validate it."""
    data, name = read_json(source, stdin=stdin)
    return parse_account(data, source=name, env=env, prompt=prompt, sources=sources, tokens=tokens)


INPUT_INVALID: Final = "input.invalid"


class InputErrorDocument(BaseModel):
    """An unusable account as JSON (what ``--format json`` prints instead of a report): one
    ``input.invalid`` finding per field problem, so that a tool never has to parse the prose."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["input_error"] = "input_error"
    verdict: Literal["invalid"] = "invalid"
    exit_code: int
    source: str
    message: str
    findings: tuple[Finding, ...]


def input_error_document(error: AccountError) -> InputErrorDocument:
    """The JSON document of an unusable account."""
    findings = [
        finding(
            INPUT_INVALID,
            Severity.FAIL,
            str(problem),
            fix=f"Correct {problem.field} in the account payload (the README's field table lists "
            "what the platform accepts).",
            field=problem.field,
            problem=problem.problem,
        )
        for problem in error.problems
    ] or [
        finding(
            INPUT_INVALID,
            Severity.FAIL,
            error.message or str(error),
            fix="Give a JSON object in the platform's create-inbox format.",
            field=None,
        )
    ]
    return InputErrorDocument(
        exit_code=error.exit_code,
        source=error.source,
        message=error.message or "the account is not valid",
        findings=tuple(findings),
    )
