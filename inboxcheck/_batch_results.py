"""What a batch writes: one line per account (:class:`BatchLine`) and, at the end, its summary
(:class:`BatchSummary`, as JSON :class:`BatchSummaryDocument`). Their schemas are committed as
``batch-line.schema.json`` and ``batch-summary.schema.json``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from inboxcheck._models import Report, Verdict

__all__ = ["BatchLine", "BatchSummary", "BatchSummaryDocument", "FieldIssue"]


class FieldIssue(BaseModel):
    """One thing wrong with an input line: the field (none when the line itself is unusable), the
    problem, and what the platform allows there."""

    model_config = ConfigDict(frozen=True)

    field: str | None
    problem: str
    allowed: str | None = None


class BatchLine(BaseModel):
    """One line of the output file: an account's report, or why its input line was unusable.

    ``error`` says it on one line; ``problems`` lists it per field, for programs."""

    model_config = ConfigDict(frozen=True)

    line: int
    email_address: str | None = None
    verdict: Verdict | Literal["invalid"]
    error: str | None = None
    problems: tuple[FieldIssue, ...] = ()
    report: Report | None = None


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
        if self.invalid_lines:
            shown = ", ".join(map(str, self.invalid_lines[:10]))
            more = "" if len(self.invalid_lines) <= 10 else f" and {len(self.invalid_lines) - 10} more"
            lines.append(f"unusable input lines: {shown}{more}")
        if self.codes:
            common = ", ".join(f"{code} ({n})" for code, n in self.codes.most_common(top))
            lines.append(f"most frequent findings: {common}")
        return "\n".join(lines)
