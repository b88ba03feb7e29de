"""The follow-up ladder and the live-call evidence around it: pure functions of values, `now` passed in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


def followup_dates(completed_at: datetime, ladder_days: Sequence[int]) -> list[datetime]:
    """When each follow-up falls due, counted from the moment the nudge's practice completed."""
    return [completed_at + timedelta(days=d) for d in ladder_days]


def next_gap(previous_gap: timedelta, *, passed: bool, stretch: float, max_gap: timedelta,
             redrill: timedelta) -> timedelta:
    """After a follow-up drill: a pass stretches the next gap (capped); a miss brings a short re-drill.

    Spacing research backs expanding gaps after success and a quick retrieval after a lapse (DOMAIN_NOTES)."""
    if not passed:
        return redrill
    return min(previous_gap * stretch, max_gap)


@dataclass(frozen=True)
class Transfer:
    """Did the practised skill carry over to live calls?"""

    status: str  # improved, held, slipped, not enough calls yet
    before: float
    after: float | None
    calls_after: int

    def describe(self, label: str) -> str:
        if self.after is None:
            return f"{label} on calls: {self.before:.0f} before practice; no scored calls since yet"
        return (f"{label} on calls: {self.before:.0f} → {self.after:.0f}, average of {self.calls_after} "
                f"call{'s' if self.calls_after != 1 else ''} since practice ({self.status})")


def transfer_status(before: Sequence[float], after: Sequence[float], *, threshold: float,
                    min_calls: int = 3, margin: float = 5.0, higher_is_better: bool = True) -> Transfer:
    """Live-call values after practice against before: improved (clearly better, or now past the threshold), held
    (no worse), slipped (worse), or not enough calls yet. For a metric where lower is better (talk ratio), pass
    `higher_is_better=False` and a margin in the metric's own units."""
    base = sum(before) / len(before) if before else 0.0
    if len(after) < min_calls:
        mean_after = sum(after) / len(after) if after else None
        return Transfer("not enough calls yet", base, mean_after, len(after))
    mean_after = sum(after) / len(after)
    sign = 1 if higher_is_better else -1
    gain, past = sign * (mean_after - base), sign * (mean_after - threshold) >= 0
    if gain >= margin or (past and sign * (base - threshold) < 0):
        status = "improved"
    elif gain >= -margin:
        status = "held"
    else:
        status = "slipped"
    return Transfer(status, base, mean_after, len(after))
