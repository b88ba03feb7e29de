"""One focus skill at a time, and the notification budget (pure decisions)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from bot.nudges.budget import Completed, RepBudget, budget_verdict, next_working_time
from bot.nudges.focus import choose_focus
from bot.nudges.signals import ScorePoint, below_threshold

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday


def _finding(name: str, *values: float, threshold: float = 60):
    points = [ScorePoint(call_pk=i, call_id=f"{name}{i}", started_at=NOW - timedelta(days=3 - i), value=v)
              for i, v in enumerate(values)]
    return below_threshold(name, points, threshold=threshold, consecutive=len(values))


@pytest.mark.parametrize(("weights", "boosts", "expected"), [
    ({"discovery": 1, "objection_handling": 1}, {}, "objection_handling"),   # the bigger gap wins
    ({"discovery": 3, "objection_handling": 1}, {}, "discovery"),            # weight outranks a bigger gap
    ({"discovery": 1, "objection_handling": 1}, {"discovery": 2.0}, "discovery"),  # a strategic priority
])
def test_choose_focus(weights, boosts, expected):
    findings = [_finding("discovery", 55, 55, 55), _finding("objection_handling", 30, 30, 30)]
    assert choose_focus(findings, weights=weights, boosts=boosts).criterion == expected


def test_no_findings_no_focus():
    assert choose_focus([], weights={}, boosts={}) is None


FRESH = RepBudget(open_nudge=False, nudges_last_7_days=0, completed={})


@pytest.mark.parametrize(("rep", "mean_now", "expected"), [
    (FRESH, 40, None),
    (RepBudget(open_nudge=True, nudges_last_7_days=1, completed={}), 40, "open nudge"),
    (RepBudget(open_nudge=False, nudges_last_7_days=2, completed={}), 40, "weekly cap of 2"),
    (RepBudget(False, 0, {"objection_handling": Completed(NOW - timedelta(days=5), mean_then=40)}), 45,
     "cooling down"),
    (RepBudget(False, 0, {"objection_handling": Completed(NOW - timedelta(days=5), mean_then=40)}), 30,
     None),  # scores got worse: the cooldown does not hold it back
    (RepBudget(False, 0, {"objection_handling": Completed(NOW - timedelta(days=30), mean_then=40)}), 45,
     None),  # the cooldown is over
])
def test_budget(rep, mean_now, expected):
    verdict = budget_verdict(criterion="objection_handling", mean_now=mean_now, worse_is_lower=True, rep=rep,
                             weekly_cap=2, cooldown_days=21, now=NOW)
    assert (verdict is None) if expected is None else (expected in verdict)


WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
HOURS = (time(8, 30), time(18, 0))


@pytest.mark.parametrize(("now", "zone", "expected"), [
    # 15:00 UTC is 07:00 in Los Angeles: wait for 08:30 local, the same day
    (datetime(2026, 11, 25, 15, 0, tzinfo=UTC), "America/Los_Angeles", datetime(2026, 11, 25, 16, 30, tzinfo=UTC)),
    # inside working hours: now
    (datetime(2026, 11, 25, 18, 0, tzinfo=UTC), "America/Los_Angeles", datetime(2026, 11, 25, 18, 0, tzinfo=UTC)),
    # Friday evening in Berlin: Monday 08:30 local
    (datetime(2026, 11, 27, 19, 0, tzinfo=UTC), "Europe/Berlin", datetime(2026, 11, 30, 7, 30, tzinfo=UTC)),
    # Saturday night before the spring-forward Sunday: Monday 08:30 is now UTC-7, not UTC-8
    (datetime(2026, 3, 7, 12, 0, tzinfo=UTC), "America/Los_Angeles", datetime(2026, 3, 9, 15, 30, tzinfo=UTC)),
    # the week before, on standard time: 08:30 is 16:30 UTC
    (datetime(2026, 2, 28, 12, 0, tzinfo=UTC), "America/Los_Angeles", datetime(2026, 3, 2, 16, 30, tzinfo=UTC)),
])
def test_next_working_time(now, zone, expected):
    assert next_working_time(now, timezone=zone, working_days=WEEKDAYS, hours=HOURS) == expected


def test_no_working_hours_means_any_time_of_a_working_day():
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert next_working_time(saturday, timezone="UTC", working_days=["sat"], hours=None) == saturday


def test_working_hours_between_skips_weekends_and_counts_real_hours_across_dst():
    from bot.nudges.budget import working_hours_between

    friday_noon = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)     # 12:00 in New York
    monday_noon = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    assert working_hours_between(friday_noon, monday_noon, timezone="America/New_York",
                                 working_days=WEEKDAYS) == pytest.approx(24)
    # Sunday 2026-03-08 springs forward in New York: that day has 23 real hours
    before, after = datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    assert working_hours_between(before, after, timezone="America/New_York",
                                 working_days=["sun"]) == pytest.approx(23)
