"""Signal rules: pure functions over a rep's recent calls (oldest first), no clock, no database."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.config import CriterionConfig, MetricRuleConfig


@dataclass(frozen=True)
class ScorePoint:
    """One call's value for one rule: a criterion score in percent, or a conversation metric."""

    call_pk: int
    call_id: str
    started_at: datetime
    value: float
    evidence: tuple[dict, ...] = ()
    recording_url: str | None = None
    title: str | None = None
    call_type: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """A stored call as the rules see it: scores in percent (with evidence) and conversation metrics."""

    call_pk: int
    call_id: str
    started_at: datetime
    scores: Mapping[str, tuple[float, tuple[dict, ...]]] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    call_type: str | None = None
    recording_url: str | None = None
    title: str | None = None

    def point(self, value: float, evidence: tuple[dict, ...] = ()) -> ScorePoint:
        return ScorePoint(call_pk=self.call_pk, call_id=self.call_id, started_at=self.started_at, value=value,
                          evidence=evidence, recording_url=self.recording_url, title=self.title,
                          call_type=self.call_type)


@dataclass(frozen=True)
class Finding:
    """A rule that fired: which, against what limit, on which calls (oldest first)."""

    criterion: str
    rule: str  # below_threshold, metric_above, metric_below
    threshold: float
    points: tuple[ScorePoint, ...]

    @property
    def trigger(self) -> ScorePoint:
        return self.points[-1]

    @property
    def mean(self) -> float:
        return sum(p.value for p in self.points) / len(self.points)

    @property
    def gap(self) -> float:
        """How far past the limit, as a share of the limit (0 at the limit, capped at 1)."""
        if self.rule == "metric_above":
            distance = self.mean - self.threshold
        else:
            distance = self.threshold - self.mean
        return max(0.0, min(1.0, distance / self.threshold)) if self.threshold else 1.0


def _latest(history: Sequence[ScorePoint], n: int) -> list[ScorePoint]:
    return sorted(history, key=lambda p: (p.started_at, p.call_pk))[-n:]


def below_threshold(
    criterion: str, history: Sequence[ScorePoint], *, threshold: float, consecutive: int
) -> Finding | None:
    """The last `consecutive` calls all scored under `threshold` percent."""
    recent = _latest(history, consecutive)
    if len(recent) < consecutive or any(p.value >= threshold for p in recent):
        return None
    return Finding(criterion=criterion, rule="below_threshold", threshold=threshold, points=tuple(recent))


def metric_past_limit(
    name: str, history: Sequence[ScorePoint], *, above: float | None = None, below: float | None = None,
    consecutive: int, call_types: Sequence[str] = (),
) -> Finding | None:
    """The last `consecutive` calls (of `call_types`, when given) all had the metric above/below the limit."""
    eligible = [p for p in history if not call_types or p.call_type in call_types]
    recent = _latest(eligible, consecutive)
    if len(recent) < consecutive:
        return None
    if above is not None and all(p.value > above for p in recent):
        return Finding(criterion=name, rule="metric_above", threshold=above, points=tuple(recent))
    if below is not None and all(p.value < below for p in recent):
        return Finding(criterion=name, rule="metric_below", threshold=below, points=tuple(recent))
    return None


def team_baseline(percents: Sequence[float], percentile: float) -> float:
    """The team's `percentile` (0-100) of trailing scores, by linear interpolation between ranks."""
    if not percents:
        raise ValueError("no scores to take a baseline from")
    ordered = sorted(percents)
    rank = (len(ordered) - 1) * percentile / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def evaluate(
    history: Sequence[CallRecord], *, criteria: Mapping[str, CriterionConfig],
    metric_rules: Mapping[str, MetricRuleConfig], thresholds: Mapping[str, float] | None = None,
) -> list[Finding]:
    """Every configured rule that fires on this rep's calls. `thresholds` overrides a criterion's fixed one
    (the team-calibrated baseline); criteria the configuration does not know are ignored."""
    thresholds = thresholds or {}
    findings = []
    for name, rule in criteria.items():
        points = [c.point(*c.scores[name]) for c in history if name in c.scores]
        found = below_threshold(name, points, threshold=thresholds.get(name, rule.threshold),
                                consecutive=rule.consecutive_calls)
        findings += [found] if found else []
    for name, rule in metric_rules.items():
        points = [c.point(c.metrics[rule.metric]) for c in history if rule.metric in c.metrics]
        found = metric_past_limit(name, points, above=rule.above, below=rule.below,
                                  consecutive=rule.consecutive_calls, call_types=rule.call_types)
        findings += [found] if found else []
    return findings
