"""Signal rules: pure functions over a rep's recent scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ScorePoint:
    """One call's score on one criterion, as a percentage, with its evidence."""

    call_pk: int
    call_id: str
    started_at: datetime
    percent: float
    evidence: tuple[dict, ...] = ()
    recording_url: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class Finding:
    criterion: str
    rule: str
    threshold: float
    points: tuple[ScorePoint, ...]

    @property
    def trigger(self) -> ScorePoint:
        return self.points[-1]


def below_threshold(
    criterion: str, history: Sequence[ScorePoint], *, threshold: float, consecutive: int
) -> Finding | None:
    """The last `consecutive` calls (oldest first in `history`) all scored under `threshold`."""
    recent = sorted(history, key=lambda p: (p.started_at, p.call_pk))[-consecutive:]
    if len(recent) < consecutive or any(p.percent >= threshold for p in recent):
        return None
    return Finding(criterion=criterion, rule="below_threshold", threshold=threshold, points=tuple(recent))
