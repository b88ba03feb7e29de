"""The follow-up ladder adapts to the drill; transfer to live calls is measured against before."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.practice.schedule import next_gap, transfer_status

DAY = timedelta(days=1)


@pytest.mark.parametrize(("gap", "passed", "expected"), [
    (14 * DAY, True, 35 * DAY),      # a pass stretches the gap 2.5 times
    (100 * DAY, True, 180 * DAY),    # up to the cap
    (14 * DAY, False, 3 * DAY),      # a miss brings a short re-drill
])
def test_next_gap(gap, passed, expected):
    assert next_gap(gap, passed=passed, stretch=2.5, max_gap=180 * DAY, redrill=3 * DAY) == expected


@pytest.mark.parametrize(("before", "after", "status"), [
    ([42, 51, 38], [66, 70, 61], "improved"),
    ([42, 51, 38], [45, 44, 46], "held"),
    ([55, 58, 50], [35, 38, 30], "slipped"),
    ([42, 51, 38], [70, 72], "not enough calls yet"),
    ([42, 51, 38], [], "not enough calls yet"),
    ([55, 56, 57], [61, 62, 60], "improved"),   # small gain, but now at the threshold
])
def test_transfer_status(before, after, status):
    transfer = transfer_status(before, after, threshold=60)
    assert transfer.status == status


def test_the_trend_reads_like_a_sentence():
    line = transfer_status([42, 40, 41], [66, 70, 68, 64, 72], threshold=60).describe("Objection handling")
    assert line == "Objection handling on calls: 41 → 68, average of 5 calls since practice (improved)"


@pytest.mark.parametrize(("before", "after", "status"), [
    ([0.72, 0.70, 0.74], [0.55, 0.58, 0.60], "improved"),   # talking less is better
    ([0.72, 0.70, 0.74], [0.71, 0.73, 0.72], "held"),
    ([0.60, 0.62, 0.61], [0.80, 0.78, 0.82], "slipped"),
])
def test_transfer_on_a_metric_where_lower_is_better(before, after, status):
    assert transfer_status(before, after, threshold=0.65, margin=0.065, higher_is_better=False).status == status
