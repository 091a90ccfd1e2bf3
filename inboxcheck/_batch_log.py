"""The results log's state: what each record says of the account it judged, by digest.

Each record names the exact account it judged by its digest (:func:`item_digest`, keyed with the
random key in the log's header): a resume matches by digest, never by line number alone, so a line
edited since its check is checked again; the same account on two lines is checked once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, model_validator

from inboxcheck._batch_input import BatchItem
from inboxcheck._batch_results import Hex64, LogHeader, SendTestLine
from inboxcheck._check import SentTest
from inboxcheck._jsonl import Line
from inboxcheck._models import Status, Verdict

_CASELESS: Final = ("email_address", "smtp_host", "imap_host", "smtp_username", "imap_username")


def _canonical(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Addresses, host names and usernames compare without case (an address typed twice with a
    different case is the same account; the platform refuses it as a duplicate either way)."""
    return {
        name: value.lower().rstrip(".") if name in _CASELESS and isinstance(value, str) else value
        for name, value in fields.items()
    }


def item_digest(key: bytes, item: BatchItem) -> str:
    """HMAC-SHA256 of the line's canonical account, passwords included: what exactly was judged.

    A full account digests its create payload (so a changed password, host or daily_limit is
    another account); a partial one its fields; an unusable line its problem."""
    if item.account is not None:
        text = "account\n" + json.dumps(
            _canonical(item.account.api_payload()), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
    elif item.partial is not None:
        text = "partial\n" + json.dumps(
            _canonical(item.partial), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
        )
    else:
        text = f"invalid\n{item.line}\n{item.error}"
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def short(digest: str) -> bytes:
    """What a run keeps of a digest in memory: 16 bytes tell a file's accounts apart (a collision
    is a 1 in 2**64 chance at 2**32 accounts), and keep the state of a large log small."""
    return bytes.fromhex(digest[:32])


def digested(items: Iterator[BatchItem], key: bytes) -> Iterator[tuple[BatchItem, int | None]]:
    """Each item with its digest set, and the line of an earlier item holding the same account."""
    first: dict[bytes, int] = {}
    for item in items:
        item.digest = item_digest(key, item)
        line = first.setdefault(short(item.digest), item.line)
        yield item, (line if line != item.line else None)


class _LoggedCheckResult(BaseModel):
    name: str
    status: Status


class _LoggedLimit(BaseModel):
    value: int


class LoggedReport(BaseModel):
    """The parts of a logged report that the gate reads (and, for a line whose partial payload
    discovery completed, the account that was checked: ``connect --batch`` creates exactly that)."""

    checks: tuple[_LoggedCheckResult, ...]
    recommended_daily_limit: _LoggedLimit
    account: dict[str, Any] | None = None

    @property
    def discovered(self) -> bool:
        return any(check.name == "account.discovered" for check in self.checks)


class LoggedCheck(BaseModel):
    """What a resume reads back of a check line: enough to skip it, gate it and limit it, no more
    (a whole report per line would make a resume of a large log slow)."""

    model_config = ConfigDict(frozen=True)

    line: int
    digest: Hex64 | None = None
    verdict: Verdict | Literal["invalid", "duplicate"]
    duplicate_of: int | None = None
    report: LoggedReport | None = None

    @model_validator(mode="after")
    def _checked_lines_have_a_report(self) -> LoggedCheck:
        if self.verdict not in ("invalid", "duplicate") and self.report is None:
            raise ValueError("a checked account's line has no report")
        return self

    @property
    def send_answered(self) -> bool:
        """The server answered this check's test message (accepted or refused it): its outcome is known."""
        return self.report is not None and any(
            check.name == "send.message" and check.status in (Status.PASS, Status.WARN, Status.FAIL)
            for check in self.report.checks
        )


class LoggedCreate(BaseModel):
    """What a resume reads back of a ``create`` line (written by ``connect --batch``).

    ``state`` ``sent`` is written (and on disk) before the request leaves; ``answered`` after, with
    the outcome. A line of an older inboxcheck has neither ``digest`` nor ``state``: it was answered.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["create"]
    line: int
    digest: Hex64 | None = None
    state: Literal["sent", "answered"] = "answered"
    email_address: str | None = None
    outcome: str | None = None
    idempotency_key: str | None = None
    sent_at: datetime | None = None


Logged = LogHeader | LoggedCreate | SendTestLine | LoggedCheck
_LOGGED: Final = TypeAdapter[Logged](Logged)


def parse_logged(raw: bytes) -> Logged:
    """One line of a results log; raises ValueError for a line that is not one inboxcheck wrote."""
    return _LOGGED.validate_json(raw)


@dataclass
class LogState:
    """What a results log holds, by account digest: the key, the checks, and the duplicates logged.

    ``legacy`` counts check lines with no digest the key can vouch for (a log of an older
    inboxcheck, or one whose header was lost): their accounts are checked again. ``key_lost``: the
    log holds digests but no readable header (their key is gone)."""

    header: LogHeader | None = None
    # By :func:`short` digest.
    checks: dict[bytes, str] = field(default_factory=dict)
    duplicates: set[tuple[int, bytes]] = field(default_factory=set)
    legacy: int = 0
    key_lost: bool = False
    # Test messages handed to a server with no check line after them (by :func:`short` digest): an
    # earlier run was killed in between, so each may have been delivered.
    sent_tests: dict[bytes, SentTest] = field(default_factory=dict)

    @property
    def key(self) -> bytes:
        assert self.header is not None
        return self.header.key

    def describe_legacy(self) -> str | None:
        if not self.legacy:
            return None
        why = (
            "its header, which holds the key of its account digests, could not be read"
            if self.key_lost
            else "it was written by an older inboxcheck, with no account digests"
        )
        return (
            f"the output file's {self.legacy} earlier result(s) cannot be matched to the accounts "
            f"now in the input ({why}): those accounts are checked again"
        )

    def add(self, record: Logged) -> None:
        """Take in the log's next record."""
        if isinstance(record, LogHeader):
            self.header = self.header or record
            return
        if record.digest is not None and self.header is None:
            self.key_lost = True
        if isinstance(record, LoggedCreate):
            return
        if isinstance(record, SendTestLine):
            if self.header is not None:
                sent = SentTest(record.token, record.message_id, record.recipient, record.sent_at)
                self.sent_tests[short(record.digest)] = sent
            return
        if record.digest is None or self.header is None:
            self.legacy += record.verdict != "duplicate"
        elif record.verdict == "duplicate":
            self.duplicates.add((record.line, short(record.digest)))
        else:
            self.checks[short(record.digest)] = str(record.verdict)
            self.sent_tests.pop(short(record.digest), None)

    def add_damaged(self, data: bytes | None) -> None:
        """Take in a damaged line: one that was a send test's, and still names its account, may
        have sent a message (what is left of it says which); any other is only checked again."""
        damaged = damaged_send_test(data)
        if damaged is not None and self.header is not None:
            self.sent_tests[short(damaged[0])] = damaged[1]


_SEND_TEST: Final = b'"kind":"send_test"'
_DIGEST: Final = re.compile(rb'"digest":"([0-9a-f]{64})"')


def _field(data: bytes, name: str) -> str:
    match = re.search(rb'"' + name.encode() + rb'":"([^"\\]{1,998})"', data)
    return match.group(1).decode("utf-8", "replace") if match else ""


def damaged_send_test(data: bytes | None) -> tuple[str, SentTest] | None:
    """The digest and the message of a damaged ``send_test`` line, as far as it still says them."""
    if data is None or _SEND_TEST not in data or (digest := _DIGEST.search(data)) is None:
        return None
    return digest.group(1).decode(), SentTest(
        _field(data, "token"), _field(data, "message_id"), _field(data, "recipient"), None
    )


def read_state(entries: Iterator[tuple[Line, Logged | None]]) -> LogState:
    """What the log's lines say, by digest (see :class:`LogState`)."""
    state = LogState()
    for line, record in entries:
        if record is None:
            state.add_damaged(line.data)
        else:
            state.add(record)
    return state


def read_results(path: Path) -> list[dict[str, Any]]:
    """The complete, readable lines of a results file, less its header (for tests and tools)."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    results = []
    for line in io.StringIO(text):
        if line.endswith("\n"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if not (isinstance(record, dict) and record.get("kind") == "header"):
                    results.append(record)
    return results
