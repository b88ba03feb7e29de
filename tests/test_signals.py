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


def _record(i: int, *, scores: dict | None = None, metrics: dict | None = None, call_type: str | None = None):
    from bot.nudges.signals import CallRecord

    return CallRecord(call_pk=i, call_id=f"c{i}", started_at=START + timedelta(days=i),
                      scores={k: (v, ()) for k, v in (scores or {}).items()}, metrics=metrics or {},
                      call_type=call_type)


@pytest.mark.parametrize(("values", "above", "below", "call_types", "types", "fires"), [
    ((0.72, 0.70, 0.68), 0.65, None, (), (None,) * 3, True),
    ((0.72, 0.60, 0.68), 0.65, None, (), (None,) * 3, False),
    ((0.65, 0.70, 0.68), 0.65, None, (), (None,) * 3, False),          # at the limit is not past it
    ((4, 3, 5), None, 6, ("discovery",), ("discovery",) * 3, True),    # too few questions on discovery calls
    ((4, 3, 5), None, 6, ("discovery",), ("demo", "discovery", "discovery"), False),  # only two discovery calls
    ((0, 0, 0), None, 1, (), (None,) * 3, True),                       # no next step three times
])
def test_metric_rules(values, above, below, call_types, types, fires):
    from bot.config import MetricRuleConfig
    from bot.nudges.signals import evaluate

    rule = MetricRuleConfig(metric="talk_ratio", above=above, below=below, call_types=list(call_types),
                            scenario="active-listening")
    pairs = enumerate(zip(values, types, strict=True))
    history = [_record(i, metrics={"talk_ratio": v}, call_type=t) for i, (v, t) in pairs]
    findings = evaluate(history, criteria={}, metric_rules={"over_talking": rule})
    assert bool(findings) == fires


def test_evaluate_ignores_criteria_the_configuration_does_not_know():
    from bot.config import CriterionConfig
    from bot.nudges.signals import evaluate

    history = [_record(i, scores={"objection_handling": 40, "mystery": 10}) for i in range(3)]
    found = evaluate(history, criteria={"objection_handling": CriterionConfig(scenario="price-objection")},
                     metric_rules={})
    assert [f.criterion for f in found] == ["objection_handling"]


def test_a_calibrated_threshold_replaces_the_fixed_one():
    from bot.config import CriterionConfig
    from bot.nudges.signals import evaluate

    history = [_record(i, scores={"discovery": 55}) for i in range(3)]
    rule = {"discovery": CriterionConfig(scenario="discovery-impact", threshold=60)}
    assert evaluate(history, criteria=rule, metric_rules={})
    assert not evaluate(history, criteria=rule, metric_rules={}, thresholds={"discovery": 50})


@pytest.mark.parametrize(("scores", "percentile", "expected"), [
    ([10, 20, 30, 40, 50], 50, 30),
    ([10, 20, 30, 40, 50], 25, 20),
    ([10, 20], 50, 15),
    ([70], 20, 70),
])
def test_team_baseline(scores, percentile, expected):
    from bot.nudges.signals import team_baseline

    assert team_baseline(scores, percentile) == pytest.approx(expected)


def test_gap_grows_with_the_distance_past_the_limit():
    near = below_threshold("x", _history(58, 58, 58), threshold=60, consecutive=3)
    far = below_threshold("x", _history(20, 20, 20), threshold=60, consecutive=3)
    assert 0 < near.gap < far.gap <= 1
