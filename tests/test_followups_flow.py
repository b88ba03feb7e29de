"""Spaced follow-ups end to end: the live-call trend, the two-turn retention drill, the adaptive ladder."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot.nudges.followups import send_due_followups
from bot.slack import ids
from storage.models import FollowUp, Nudge
from tests.conftest import MANAGER, REP, low_calls, scored_call
from tests.transcripts import TRANSCRIPTS

STRONG = TRANSCRIPTS["price-objection"]["strong"]


def _completed(harness, calls: list[dict] | None = None) -> tuple[Nudge, list[FollowUp]]:
    harness.send_calls(calls or low_calls())
    harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER)
    invite = harness.invite()
    harness.slack.click(invite, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    harness.practise(invite, STRONG)
    with harness.app.coach.db.session() as session:
        return session.exec(select(Nudge)).one(), list(session.exec(select(FollowUp).order_by(FollowUp.step)))


def _refreshers(harness) -> list[dict]:
    return [m for m in harness.standin.messages_in(REP) if m["text"].startswith("Refresher")]


def test_two_weeks_later_one_refresher_with_the_live_call_trend_and_never_twice(harness):
    nudge, followups = _completed(harness)
    for i, score in enumerate((66, 70, 68)):
        call = scored_call(f"after-{i}", score)
        call["started_at"] = (nudge.completed_at + timedelta(days=2 + i)).isoformat()
        harness.send_calls(call)
    due = followups[0].due_at
    assert harness.app.run_due_jobs(due + timedelta(hours=1)) == 1
    [refresher] = harness.standin.wait_for(lambda: _refreshers(harness) or None)
    assert "Objection handling on calls: 44 → 68, average of 3 calls since practice (improved)" in refresher["text"]
    assert harness.app.run_due_jobs(due + timedelta(hours=2)) == 0
    harness.app.sender.drain()
    assert len(_refreshers(harness)) == 1


def test_a_passed_refresher_stretches_the_next_gap_a_missed_one_brings_a_redrill(harness):
    nudge, followups = _completed(harness)
    harness.app.run_due_jobs(followups[0].due_at + timedelta(minutes=1))
    refresher = harness.standin.wait_for(lambda: (_refreshers(harness) or [None])[0])
    harness.slack.click(refresher, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(refresher)) >= 2)
    weak = harness.practise(refresher, ["ok", "sure, 10% off then"])  # two turns, and the grade
    assert "Not there yet" in weak["text"]
    with harness.app.coach.db.session() as session:
        rows = list(session.exec(select(FollowUp).order_by(FollowUp.step)))
    assert [r.status for r in rows] == ["done", "scheduled", "scheduled"], "a re-drill was added"
    assert rows[2].due_at - datetime.now(UTC) < timedelta(days=6)
    note = harness.standin.wait_for(lambda: next((m for m in harness.standin.messages
                                                  if "missed the refresher" in m["text"]), None))
    assert note["thread_ts"], "told to the manager in the approval thread"


def test_a_late_follow_up_says_it_is_late(harness):
    _, followups = _completed(harness)
    harness.app.run_due_jobs(followups[0].due_at + timedelta(days=5))
    [refresher] = harness.standin.wait_for(lambda: _refreshers(harness) or None)
    assert "sorry it is late" in refresher["text"]


def test_two_dispatchers_deliver_each_of_1000_follow_ups_exactly_once(harness):
    if not harness.app.coach.db.is_postgres:
        pytest.skip("claiming due rows across replicas is a PostgreSQL matter (SKIP LOCKED)")
    nudge, _ = _completed(harness)
    due = datetime.now(UTC) - timedelta(minutes=1)
    with harness.app.coach.db.session() as session:
        for step in range(3, 1003):
            session.add(FollowUp(nudge_id=nudge.id, rep_id=nudge.rep_id, step=step, due_at=due))
    counts: list[int] = []
    go = threading.Barrier(2)

    def dispatch():
        go.wait()
        sent = 0
        while batch := send_due_followups(harness.app.coach, now=datetime.now(UTC), limit=50):
            sent += batch
        counts.append(sent)

    workers = [threading.Thread(target=dispatch) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sum(counts) == 1000 and all(c > 0 for c in counts), counts
    with harness.app.coach.db.session() as session:
        from storage.models import OutboxMessage

        keys = session.exec(select(OutboxMessage.dedupe_key).where(
            OutboxMessage.dedupe_key.like("followup:%:invite"))).all()
    assert len(keys) == len(set(keys)) == 1000


def test_a_skill_that_slips_after_practice_reopens_a_signal(start_app):
    import copy

    from tests.conftest import TEST_CONFIG

    config = copy.deepcopy(TEST_CONFIG)
    config["criteria"]["objection_handling"]["threshold"] = 30  # the slip, not the threshold, is what fires
    config["budget"]["weekly_cap"] = 5
    harness = start_app(config=config)
    calls = low_calls()
    for call in calls:
        call["scores"][0]["score"] = 25
    nudge, _ = _completed(harness, calls)
    slipping = []
    for i, score in enumerate((10, 35, 5)):  # not three in a row under 30, but worse than before
        call = scored_call(f"slip-{i}", score)
        call["started_at"] = (nudge.completed_at + timedelta(days=2 + i)).isoformat()
        slipping.append(call)
    harness.send_calls(slipping)  # one batch: reviewed once, with all three calls in
    with harness.app.coach.db.session() as session:
        nudges = session.exec(select(Nudge).order_by(Nudge.id)).all()
    assert [n.criterion for n in nudges] == ["objection_handling", "objection_handling"]
    messages = harness.standin.wait_for(lambda: (lambda m: m if len(m) == 2 else None)(
        harness.standin.messages_in("C0APPROVALS")))
    assert "slipped since practice" in str(messages[1]["blocks"])
