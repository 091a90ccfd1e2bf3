"""What a batch writes: one line per account (:class:`BatchLine`) and, at the end, its summary
(:class:`BatchSummary`, as JSON :class:`BatchSummaryDocument`). Their schemas are committed as
``batch-line.schema.json`` and ``batch-summary.schema.json``."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from inboxcheck._models import Report, Verdict

__all__ = [
    "BatchLine",
    "BatchSummary",
    "BatchSummaryDocument",
    "FieldIssue",
    "Hex64",
    "LogHeader",
    "SendTestLine",
]


class FieldIssue(BaseModel):
    """One thing wrong with an input line: the field (none when the line itself is unusable), the
    problem, and what the platform allows there."""

    model_config = ConfigDict(frozen=True)

    field: str | None
    problem: str
    allowed: str | None = None


class BatchLine(BaseModel):
    """One line of the output file: an account's report, or why its input line was unusable.

    ``error`` says it on one line; ``problems`` lists it per field, for programs. ``digest``
    identifies the exact account judged (``_batch.item_digest``); a line holding the same account
    as an earlier line is not checked again but logged as ``duplicate`` of that line."""

    model_config = ConfigDict(frozen=True)

    line: int
    digest: str | None = None
    email_address: str | None = None
    verdict: Verdict | Literal["invalid", "duplicate"]
    duplicate_of: int | None = None
    error: str | None = None
    problems: tuple[FieldIssue, ...] = ()
    report: Report | None = None


Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class LogHeader(BaseModel):
    """The first record of a results log: the key of its account digests (random, one per log).

    The digests are keyed so that the log alone never lets anyone test a password guess against
    them; the key is kept here, so it is no secret beyond the log itself."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["header"] = "header"
    version: int = 2
    digest_key: Hex64

    @classmethod
    def new(cls) -> LogHeader:
        return cls(digest_key=secrets.token_hex(32))

    @property
    def key(self) -> bytes:
        return bytes.fromhex(self.digest_key)


class SendTestLine(BaseModel):
    """A send test's message about to be handed to the server (``--send-test`` with ``--output``).

    Written, and on disk, before DATA: a run killed after the message left but before the account's
    check line was written leaves this line alone, and the resume sends no second message (the
    account's ``send.message`` says ``send.message.outcome_unknown``, with this line's token).
    A check line for the same digest after it means the outcome was recorded."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["send_test"] = "send_test"
    state: Literal["sent"] = "sent"
    line: int
    digest: Hex64
    email_address: str
    recipient: str
    token: str
    message_id: str
    sent_at: datetime


class BatchSummaryDocument(BaseModel):
    """A batch's summary as JSON: the last line ``check --batch --format json`` prints on stdout
    (without ``--output``)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["summary"] = "summary"
    accounts: int
    verdicts: dict[str, int]
    resumed: int
    invalid_lines: tuple[int, ...]
    damaged_log_lines: tuple[int, ...]
    duplicate_lines: dict[int, int] = Field(
        default_factory=dict,
        description="Each line that holds the same account as an earlier one: line -> that line.",
    )
    most_frequent_findings: dict[str, int]
    exit_code: int


@dataclass
class BatchSummary:
    """What a batch did: accounts per verdict, the most frequent finding codes, bad lines."""

    verdicts: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    skipped_done: int = 0
    invalid_lines: list[int] = field(default_factory=list)
    damaged_log_lines: list[int] = field(default_factory=list)
    # (line, the earlier line holding the same account)
    duplicates: list[tuple[int, int]] = field(default_factory=list)
    legacy_note: str | None = None
    # Lines whose test message an earlier run may have delivered: not sent again (no --resend-test).
    send_unknown: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.verdicts.values())

    @property
    def exit_code(self) -> int:
        """1 if an account failed, else 2 if a line was unusable, else 3 if a check could not tell."""
        if self.verdicts.get(Verdict.FAIL.value):
            return 1
        if self.invalid_lines:
            return 2
        if self.verdicts.get(Verdict.ERROR.value):
            return 3
        return 0

    def document(self, *, top: int = 10) -> BatchSummaryDocument:
        return BatchSummaryDocument(
            accounts=self.total,
            verdicts=dict(sorted(self.verdicts.items())),
            resumed=self.skipped_done,
            invalid_lines=tuple(self.invalid_lines),
            damaged_log_lines=tuple(self.damaged_log_lines),
            duplicate_lines=dict(sorted(self.duplicates)),
            most_frequent_findings=dict(self.codes.most_common(top)),
            exit_code=self.exit_code,
        )

    def describe(self, *, top: int = 5) -> str:
        parts = [f"{count} {verdict}" for verdict, count in sorted(self.verdicts.items())]
        lines = [f"{self.total} accounts: " + (", ".join(parts) or "none")]
        if self.skipped_done:
            lines.append(f"{self.skipped_done} of them were already in the output file (resumed)")
        if self.damaged_log_lines:
            damaged = self.damaged_log_lines
            shown = ", ".join(map(str, damaged[:10]))
            more = "" if len(damaged) <= 10 else f" and {len(damaged) - 10} more"
            lines.append(
                f"the output file's line(s) {shown}{more} could not be read and were skipped "
                "(kept as they are; the accounts they held were checked again)"
            )
        if self.legacy_note:
            lines.append(self.legacy_note)
        if self.duplicates:
            pairs = sorted(self.duplicates)
            shown = ", ".join(f"line {line} = line {first}" for line, first in pairs[:10])
            more = "" if len(pairs) <= 10 else f" and {len(pairs) - 10} more"
            lines.append(f"the same account on more than one line (checked once): {shown}{more}")
        if self.send_unknown:
            shown = ", ".join(map(str, self.send_unknown[:10]))
            more = "" if len(self.send_unknown) <= 10 else f" and {len(self.send_unknown) - 10} more"
            lines.append(
                f"{len(self.send_unknown)} test message(s) sent by an earlier, interrupted run may "
                f"have been delivered and were not sent again (line(s) {shown}{more}): look in those "
                "mailboxes for them (their tokens are in the results); --resume --resend-test sends "
                "them again"
            )
        if self.invalid_lines:
            shown = ", ".join(map(str, self.invalid_lines[:10]))
            more = "" if len(self.invalid_lines) <= 10 else f" and {len(self.invalid_lines) - 10} more"
            lines.append(f"unusable input lines: {shown}{more}")
        if self.codes:
            common = ", ".join(f"{code} ({n})" for code, n in self.codes.most_common(top))
            lines.append(f"most frequent findings: {common}")
        return "\n".join(lines)
