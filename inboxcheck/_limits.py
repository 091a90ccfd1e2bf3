"""The daily sending limit inboxcheck recommends, and the warm-up ramp towards it.

The platform's guidance is 20-30 a day for a new mailbox, 50-80 while warming, 80-100 once
established, "start low and increase gradually". Cold-email practice adds: ramp by about two a day and
never go past about 100 a day per address. A domain missing DKIM or DMARC lands more mail in spam, so
the recommendation drops until they are fixed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from inboxcheck._models import DailyLimitRecommendation, Finding, RampStep, Severity, Stage
from inboxcheck._presets import Preset

__all__ = ["EVIDENCE_CHECKS", "RECOMMENDATION_FACT", "STAGE_RANGES", "recommend_daily_limit"]

STAGE_RANGES: Final[dict[Stage, tuple[int, int]]] = {
    Stage.NEW: (20, 30),
    Stage.WARMING: (50, 80),
    Stage.ESTABLISHED: (80, 100),
}
RAMP_START: Final = 10
RAMP_STEP: Final = 2

#: The checks whose findings can lower the recommendation: the daily-limit check waits for them.
EVIDENCE_CHECKS: Final = ("dns.spf", "dns.dkim", "dns.dmarc")
#: Where the daily-limit check leaves the run's recommendation (``ctx.facts``), so that the report
#: carries the very recommendation the check judged the limit by.
RECOMMENDATION_FACT: Final = "daily_limit.recommendation"

# Findings that mean receivers will trust the domain less; each lowers the recommendation.
_PENALTIES: Final[dict[str, tuple[float, str]]] = {
    "dns.dkim.missing": (0.5, "no DKIM key was found: unsigned mail is filtered harder"),
    "dns.dmarc.missing": (0.75, "no DMARC record: Gmail and Yahoo expect one from bulk senders"),
    "dns.spf.missing": (0.75, "no SPF record: receivers cannot tell the sending hosts are authorised"),
}


def recommend_daily_limit(
    *,
    stage: Stage,
    preset: Preset | None,
    findings: Iterable[Finding] = (),
    domain: str | None = None,
    caveats: Iterable[str] = (),
) -> DailyLimitRecommendation:
    """The recommended limit for a mailbox at ``stage``, given its provider and what checks found.

    Its ``reasons`` are the stage's guidance first, then each adjustment (lowered, capped) in turn;
    ``caveats`` (what the limit assumes, e.g. a password login the provider is retiring) are told
    with it and change no number.
    """
    low, high = STAGE_RANGES[stage]
    value = high if stage is Stage.NEW else (low + high) // 2
    reasons = [f"{stage.value} mailboxes should send {low}-{high} a day (the platform's guidance)"]
    codes = {f.code for f in findings if f.severity in (Severity.FAIL, Severity.WARN)}
    for code, (factor, why) in _PENALTIES.items():
        if code in codes:
            value = max(1, int(value * factor))
            reasons.append(f"lowered: {why}")
    cap = _provider_cap(preset, domain)
    if cap is not None and value > cap:
        value = cap
        reasons.append(f"capped at the provider's limit of {cap} a day")
    return DailyLimitRecommendation(
        value=value,
        stage=stage,
        stage_range=(low, high),
        provider_cap=cap,
        reasons=tuple(reasons),
        ramp=warmup_ramp(value) if stage is not Stage.ESTABLISHED else (),
        caveats=tuple(caveats),
    )


def _provider_cap(preset: Preset | None, domain: str | None = None) -> int | None:
    if preset is None:
        return None
    caps = [c for c in (preset.daily_cap(domain), preset.limits.platform_max) if c is not None]
    return min(caps) if caps else None


def warmup_ramp(target: int, *, start: int = RAMP_START, step: int = RAMP_STEP) -> tuple[RampStep, ...]:
    """A target per day, from ``start`` up by ``step`` a day until ``target`` is reached."""
    steps: list[RampStep] = []
    day, limit = 1, min(start, target)
    while True:
        steps.append(RampStep(day=day, daily_limit=limit))
        if limit >= target:
            return tuple(steps)
        day, limit = day + 1, min(target, limit + step)
