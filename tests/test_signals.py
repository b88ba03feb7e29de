"""The signal rule: below the threshold on N consecutive calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.nudges.signals import ScorePoint, below_threshold

START = datetime(2026, 11, 1, tzinfo=UTC)


def _history(*percents: float) -> list[ScorePoint]:
    return [ScorePoint(call_pk=i, call_id=f"c{i}", started_at=START + timedelta(days=i), value=p)
            for i, p in enumerate(percents)]


@pytest.mark.parametrize(("percents", "fires"), [
    ((42, 51, 38), True),
    ((42, 51), False),                 # not enough calls yet
    ((42, 60, 38), False),             # 60 is not below 60
    ((80, 42, 51, 38), True),          # an old good call does not matter
    ((42, 51, 38, 75), False),         # the latest call recovered
    ((59.9, 59.9, 59.9), True),
])
def test_below_threshold_on_consecutive_calls(percents, fires):
    finding = below_threshold("objection_handling", _history(*percents), threshold=60, consecutive=3)
    assert (finding is not None) == fires
    if finding:
        assert [p.value for p in finding.points] == list(percents[-3:])


def test_calls_are_ordered_by_when_they_happened_not_when_they_arrived():
    late_arrival = _history(42, 51, 38)
    late_arrival.append(ScorePoint(call_pk=99, call_id="old", started_at=START - timedelta(days=3), value=90))
    assert below_threshold("x", late_arrival, threshold=60, consecutive=3) is not None
    assert below_threshold("x", late_arrival, threshold=60, consecutive=4) is None
