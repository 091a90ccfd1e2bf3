"""Reading a batch: JSONL or CSV in, one :class:`BatchItem` per line, lazily and with a bound.

A bad line becomes an item with its line number and its problem (a line that is no account at all is a
``bad_line``); the rest goes on. Lines are read with a bound (:data:`MAX_LINE_BYTES`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from inboxcheck._batch_results import FieldIssue
from inboxcheck._errors import AccountError, InboxcheckError
from inboxcheck._input import FIELD_RULES, decode_json, long_integer_or_int, parse_account
from inboxcheck._jsonl import Line, read_lines
from inboxcheck._models import Account, CheckResult

MAX_LINE_BYTES: Final = 1_000_000
STDIN: Final = Path("-")

_INT_FIELDS: Final = frozenset({"smtp_port", "imap_port", "daily_limit"})
_BOOL_FIELDS: Final = frozenset({"smtp_use_tls", "imap_use_ssl"})
_TRUE: Final = frozenset({"true", "1", "yes", "y", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "off"})


@dataclass
class BatchItem:
    line: int
    account: Account | None = None
    email: str | None = None
    error: str | None = None
    problems: tuple[FieldIssue, ...] = ()
    # The line is no account at all (not JSON, not UTF-8, too long, broken CSV): a bad line, not
    # counted among the accounts.
    bad_line: bool = False
    # A partial payload (email_address and what the user knows), completed by discovery when checked.
    partial: dict[str, Any] | None = None
    digest: str = ""
    # The line's `oauth` object as read (fleet add: read_batch(oauth=True)); checked by its reader.
    oauth: Any = None
    # Awaited inside the account's bounds, just before its checks (the fleet's OAuth2 refresh): the
    # account to check (its credentials) and results that lead its report.
    prepare: Callable[[Account], Awaitable[tuple[Account, tuple[CheckResult, ...]]]] | None = None


def _detect_format(path: Path, head: str) -> Literal["jsonl", "csv"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def _csv_value(name: str, text: str) -> object:
    """CSV cells are text; give them the JSON type the platform expects, or leave them to be refused."""
    value = text.strip()
    if name in _INT_FIELDS and value.lstrip("-").isdigit():
        return long_integer_or_int(value)
    if name in _BOOL_FIELDS and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    return text


def _bad_line(number: int, problem: str) -> BatchItem:
    return BatchItem(
        number, error=problem, problems=(FieldIssue(field=None, problem=problem),), bad_line=True
    )


def _issues(error: AccountError) -> tuple[FieldIssue, ...]:
    """The account's problems, one per field, with what the platform allows there."""
    issues = []
    for item in error.problems:
        allowed = FIELD_RULES.get(item.field)
        problem = item.problem.removesuffix(f"; allowed: {allowed}") if allowed else item.problem
        issues.append(FieldIssue(field=item.field, problem=problem, allowed=allowed))
    return tuple(issues) or (FieldIssue(field=None, problem=error.message or str(error)),)


def _one_line(error: AccountError) -> str:
    """The error on one line: a log line holds no line breaks."""
    return "; ".join(line.strip() for line in str(error).splitlines())


def _parse(line: int, data: object, env: dict[str, str], oauth: bool = False) -> BatchItem:
    from inboxcheck._input import OAuthTokens
    from inboxcheck.discovery.complete import is_partial

    email = data.get("email_address") if isinstance(data, dict) else None
    if oauth and isinstance(data, dict) and "oauth" in data:
        data = dict(data)
        raw = data.pop("oauth")
    else:
        raw = None
    if raw is not None:
        # An OAuth2 login (the fleet's): the refresh goes beside the payload, whose passwords may
        # then be left out; a token replaces them for the logins, as --oauth-* does for check.
        try:
            account = parse_account(
                data, source=f"line {line}", env=env, tokens=OAuthTokens.both(None, "an OAuth2 refresh")
            )
        except AccountError as exc:
            return BatchItem(
                line,
                email=email if isinstance(email, str) else None,
                error=_one_line(exc),
                problems=_issues(exc),
            )
        return BatchItem(line, account=account, email=account.email_address, oauth=raw)
    if is_partial(data):
        assert isinstance(data, dict) and isinstance(email, str)
        return BatchItem(line, email=email, partial=dict(data))
    try:
        account = parse_account(data, source=f"line {line}", env=env)
    except AccountError as exc:
        return BatchItem(
            line, email=email if isinstance(email, str) else None, error=_one_line(exc), problems=_issues(exc)
        )
    return BatchItem(line, account=account, email=account.email_address)


def read_batch(path: Path, *, env: dict[str, str] | None = None, oauth: bool = False) -> Iterator[BatchItem]:
    """Yield each account of a JSONL or CSV file lazily, with its line number, or the line's problem.

    With ``oauth`` (``fleet add``), a JSONL line's ``oauth`` object is taken out of the payload into
    :attr:`BatchItem.oauth`, and the payload's passwords may be left out.

    Lines are read with a bound (:data:`MAX_LINE_BYTES`): a longer one is that line's problem, and is
    never held whole.
    """
    env = env if env is not None else dict(os.environ)
    try:
        # `-` is standard input, read as it comes (a pipe cannot be counted or rewound).
        handle = (
            io.BufferedReader(cast("io.RawIOBase", sys.stdin.buffer)) if path == STDIN else path.open("rb")
        )
    except OSError as exc:
        raise InboxcheckError(f"{path}: cannot read the batch file: {exc.strerror or exc}") from None
    with handle:
        head = handle.peek(4096)[:4096].decode("utf-8", errors="replace").removeprefix("\ufeff")
        lines = read_lines(handle, limit=MAX_LINE_BYTES)
        if _detect_format(path, head) == "jsonl":
            yield from _read_jsonl(lines, env, oauth)
        else:
            yield from _read_csv(lines, env)


def _text(line: Line) -> tuple[str, str | None]:
    """The line's text, or why it has none."""
    if line.data is None:
        return "", f"line {line.number}: longer than {MAX_LINE_BYTES:,} bytes"
    try:
        text = line.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", f"line {line.number}: not UTF-8 text (bad byte at column {exc.start + 1})"
    return (text.removeprefix("\ufeff") if line.number == 1 else text), None


def _read_jsonl(lines: Iterator[Line], env: dict[str, str], oauth: bool = False) -> Iterator[BatchItem]:
    for line in lines:
        number = line.number
        text, problem = _text(line)
        if problem is not None:
            yield _bad_line(number, problem)
            continue
        if not text.strip():
            continue
        try:
            data = decode_json(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            yield _bad_line(number, f"line {number}: not valid JSON: {reason}")
            continue
        yield _parse(number, data, env, oauth)


def _read_csv(lines: Iterator[Line], env: dict[str, str]) -> Iterator[BatchItem]:
    # The csv module reads text lines; a line that has none (too long, not UTF-8) reaches it as an
    # empty line, which keeps its numbering, and comes out here as that line's problem.
    problems: dict[int, str] = {}

    def texts() -> Iterator[str]:
        for line in lines:
            text, problem = _text(line)
            if problem is not None:
                problems[line.number] = problem
                text = "\n"
            yield text

    def pending(upto: int | None) -> Iterator[BatchItem]:
        for number in sorted(n for n in problems if upto is None or n <= upto):
            yield _bad_line(number, problems.pop(number))

    reader = csv.reader(texts())
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise InboxcheckError(f"the CSV header cannot be read: {exc}") from None
    if problems:
        raise InboxcheckError(f"the CSV header cannot be read: {problems.popitem()[1]}")
    names = [name.strip() for name in header]
    unknown = [name for name in names if name and name not in FIELD_RULES]
    if unknown:
        raise InboxcheckError(
            f"the CSV header has columns that are not account fields: {', '.join(unknown)}; "
            f"expected the platform's field names ({', '.join(FIELD_RULES)})"
        )
    while True:
        try:
            row = next(reader)
        except StopIteration:
            yield from pending(None)
            return
        except csv.Error as exc:
            yield from pending(reader.line_num)
            yield _bad_line(reader.line_num, f"line {reader.line_num}: not valid CSV: {exc}")
            continue
        yield from pending(reader.line_num)
        if not any(cell.strip() for cell in row):
            continue
        number = reader.line_num
        if len(row) != len(names):
            yield _bad_line(number, f"line {number}: {len(row)} columns, the header has {len(names)}")
            continue
        data = {name: _csv_value(name, cell) for name, cell in zip(names, row, strict=True) if cell != ""}
        yield _parse(number, data, env)


def count_accounts(path: Path) -> int | None:
    """How many accounts ``path`` holds (its non-blank lines, less a CSV header), for a progress
    display; ``None`` for standard input. Counting is a read of the file: cheap next to one login."""
    if path == STDIN:
        return None
    try:
        with path.open("rb") as handle:
            head = handle.peek(4096)[:4096].decode("utf-8", errors="replace").removeprefix("\ufeff")
            count = sum(
                1
                for line in read_lines(handle, limit=MAX_LINE_BYTES)
                if line.data is None or line.data.strip()
            )
    except OSError:
        return None
    return max(count - (_detect_format(path, head) == "csv"), 0)
