"""The service's counters in the Prometheus text format (version 0.0.4), written here.

Four families and no labels beyond verdict, code and route: about sixty lines, where
``prometheus_client`` would bring a process-wide default registry (global state that two apps in
one process, as in the tests, would share) and a dependency for the same text.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Final

from inboxcheck._models import Report

__all__ = ["Metrics"]

#: Seconds; a lab check takes 0.1-0.5 s, a provider's 1-5 s, a send test up to minutes.
BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """What one app has done: checks by verdict and by finding code, latency, in flight, refusals."""

    def __init__(self) -> None:
        self.verdicts: Counter[str] = Counter()
        self.codes: Counter[tuple[str, str]] = Counter()
        self.refused: Counter[str] = Counter()
        self.bucket_counts = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.in_flight = 0
        self.waiting = 0

    def observe(self, report: Report | None, seconds: float, *, outcome: str | None = None) -> None:
        """A check that finished (its report) or ended without one (``outcome``: cancelled, ...)."""
        self.verdicts[str(report.verdict) if report is not None else (outcome or "unknown")] += 1
        if report is not None:
            for item in report.findings():
                self.codes[(item.code, str(item.severity))] += 1
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            self.bucket_counts[index] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def render(self) -> str:
        lines = [
            "# HELP inboxcheck_checks_total Checks finished, by verdict (or how they ended without one).",
            "# TYPE inboxcheck_checks_total counter",
            *(f'inboxcheck_checks_total{{verdict="{v}"}} {n}' for v, n in sorted(self.verdicts.items())),
            "# HELP inboxcheck_findings_total Findings in finished checks, by code and severity.",
            "# TYPE inboxcheck_findings_total counter",
            *(
                f'inboxcheck_findings_total{{code="{code}",severity="{severity}"}} {n}'
                for (code, severity), n in sorted(self.codes.items())
            ),
            "# HELP inboxcheck_check_seconds Time from a check's start to its report.",
            "# TYPE inboxcheck_check_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(BUCKETS, self.bucket_counts, strict=True):
            cumulative += count
            lines.append(f'inboxcheck_check_seconds_bucket{{le="{bound:g}"}} {cumulative}')
        lines += [
            f'inboxcheck_check_seconds_bucket{{le="+Inf"}} {self.latency_count}',
            f"inboxcheck_check_seconds_sum {self.latency_sum:.6f}",
            f"inboxcheck_check_seconds_count {self.latency_count}",
            "# HELP inboxcheck_checks_in_flight Checks running now.",
            "# TYPE inboxcheck_checks_in_flight gauge",
            f"inboxcheck_checks_in_flight {self.in_flight}",
            "# HELP inboxcheck_checks_waiting Checks waiting for a slot now.",
            "# TYPE inboxcheck_checks_waiting gauge",
            f"inboxcheck_checks_waiting {self.waiting}",
            "# HELP inboxcheck_refused_total Requests refused before a check started, by reason.",
            "# TYPE inboxcheck_refused_total counter",
            *(f'inboxcheck_refused_total{{reason="{r}"}} {n}' for r, n in sorted(self.refused.items())),
        ]
        return "\n".join(lines) + "\n"
