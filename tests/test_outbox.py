"""The outbox: committed with the state change, delivered in order, paced, retried, never twice."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot.app import slack_client
from bot.demo.slack_standin import SlackStandIn
from bot.slack import ids
from bot.slack.pacing import ChannelPacer, MethodPacer
from bot.slack.sender import OutboxSender
from storage.models import FollowUp, OutboxMessage, OutboxStatus
from storage.outbox import answer_below, claim_due, enqueue
from tests.conftest import APPROVALS, MANAGER, REP, low_calls, make_settings
from tests.transcripts import TRANSCRIPTS


def _sender(db, standin, database_url, **kw) -> OutboxSender:
    return OutboxSender(db, slack_client(make_settings(database_url, standin), wait_on_rate_limit=False), **kw)


def _post(db, channel: str, text: str, **kw) -> int:
    with db.session() as session:
        return enqueue(session, method="chat.postMessage", channel=channel,
                       payload={"channel": channel, "text": text}, now=datetime.now(UTC), **kw).id


def test_rows_are_sent_once_in_order_with_the_ts_recorded(db, standin, database_url):
    ids_ = [_post(db, "C0ONE", f"message {i}") for i in range(4)]
    sender = _sender(db, standin, database_url)
    assert sender.drain() == 3, "a burst of three, then the channel is paced"
    assert sender.drain() == 0
    with db.session() as session:
        rows = [session.get(OutboxMessage, i) for i in ids_]
    assert [r.status for r in rows[:3]] == [OutboxStatus.SENT] * 3 and rows[3].status == OutboxStatus.PENDING
    assert sender.pacer.paced(datetime.now(UTC)) == {"C0ONE"}, "left unclaimed until the channel has a token"
    assert [m["text"] for m in standin.messages_in("C0ONE")] == ["message 0", "message 1", "message 2"]
    assert rows[0].ts == standin.messages_in("C0ONE")[0]["ts"]


def test_rate_limit_is_retried_after_retry_after(db, standin, database_url):
    standin.fail_next("chat.postMessage", status=429, retry_after=30)
    row_id = _post(db, "C0ONE", "hello")
    sender = _sender(db, standin, database_url)
    assert sender.drain() == 0
    with db.session() as session:
        row = session.get(OutboxMessage, row_id)
    assert row.status == OutboxStatus.PENDING and row.error == "ratelimited"
    assert row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=25), "Retry-After honoured"
    later = _sender(db, standin, database_url, clock=lambda: datetime.now(UTC) + timedelta(seconds=31))
    assert later.drain() == 1
    assert [m["text"] for m in standin.messages_in("C0ONE")] == ["hello"]


def test_a_permanent_error_fails_the_row_with_the_reason(db, standin, database_url):
    standin.fail_next("chat.postMessage", status=200, error="channel_not_found")
    row_id = _post(db, "C0GONE", "hello")
    _sender(db, standin, database_url).drain()
    with db.session() as session:
        row = session.get(OutboxMessage, row_id)
    assert (row.status, row.error) == (OutboxStatus.FAILED, "channel_not_found")


def test_thread_reply_waits_for_its_anchor_and_uses_its_ts(db, standin, database_url):
    with db.session() as session:
        now = datetime.now(UTC)
        root = enqueue(session, method="chat.postMessage", channel=REP, payload={"channel": REP, "text": "root"},
                       now=now)
        enqueue(session, method="chat.postMessage", channel=REP, payload={"text": "in thread"}, now=now,
                anchor=root)
    _sender(db, standin, database_url).drain()
    root_msg, reply = standin.messages_in(REP)
    assert reply["thread_ts"] == root_msg["ts"] and reply["channel"] == root_msg["channel"].replace("U", "D")


def test_a_crashed_senders_claim_is_sent_after_its_lease(db, standin, database_url):
    row_id = _post(db, "C0ONE", "in flight when the process died")
    with db.session() as session:
        claim_due(session, now=datetime.now(UTC), lease=timedelta(seconds=30))
    assert _sender(db, standin, database_url).drain() == 0, "still leased"
    after = _sender(db, standin, database_url, clock=lambda: datetime.now(UTC) + timedelta(seconds=31))
    assert after.drain() == 1
    with db.session() as session:
        assert session.get(OutboxMessage, row_id).status == OutboxStatus.SENT


def test_restart_mid_loop_delivers_the_pending_outbox_and_keeps_followups_due(start_app, standin):
    first = start_app(background=False)  # jobs not running: the process "dies" before sending
    assert first.send_calls(low_calls()).status_code == 202
    with first.app.coach.db.session() as session:
        pending = session.exec(select(OutboxMessage)).all()
    assert [r.status for r in pending] == [OutboxStatus.PENDING]
    assert standin.messages_in(APPROVALS) == []

    second = start_app()  # new process, same database
    approval = second.approval_message()
    second.slack.click(approval, ids.APPROVE, user=MANAGER)
    invite = second.invite()
    second.slack.click(invite, ids.START_PRACTICE, user=REP)
    second.standin.wait_for(lambda: len(second.thread(invite)) >= 2)
    second.practise(invite, TRANSCRIPTS["price-objection"]["strong"])  # proficient: the nudge completes
    with second.app.coach.db.session() as session:
        first_due = min(f.due_at for f in session.exec(select(FollowUp)))

    third = start_app()  # and again: the follow-ups are still on the calendar
    assert third.app.run_due_jobs(first_due - timedelta(minutes=1)) == 0
    assert third.app.run_due_jobs(first_due + timedelta(minutes=1)) == 1
    assert "Start refresher" in str(third.invite(index=1)["blocks"])
    assert len(standin.messages_in(APPROVALS)) == 1, "nothing sent twice"


def test_two_claimers_never_take_the_same_row(db):
    if not db.is_postgres:
        pytest.skip("row claiming across replicas is a PostgreSQL matter (SKIP LOCKED)")
    for i in range(6):
        _post(db, f"C0CH{i}", "x")
    now = datetime.now(UTC)
    with db.session() as first:
        mine = {r.id for r in claim_due(first, now=now, lease=timedelta(seconds=30), limit=3)}
        with db.session() as second:
            theirs = {r.id for r in claim_due(second, now=now, lease=timedelta(seconds=30), limit=6)}
    assert len(mine) == 3 and len(theirs) == 3 and not mine & theirs


def test_a_rate_limited_channel_does_not_hold_up_the_others(db, standin, database_url):
    standin.fail_next("chat.postMessage", status=429, retry_after=30)
    _post(db, "C0BUSY", "first")
    _post(db, "C0BUSY", "second")
    _post(db, "C0QUIET", "elsewhere")
    assert _sender(db, standin, database_url).drain() == 1
    assert [m["text"] for m in standin.messages] == ["elsewhere"], "C0BUSY waits, in order"


def test_a_sender_that_stalled_past_its_lease_does_not_send_again(db, standin, database_url):
    _post(db, "C0ONE", "once")
    stalled = _sender(db, standin, database_url)
    with db.session() as session:
        [claimed] = claim_due(session, now=datetime.now(UTC), lease=stalled.lease)
    later = _sender(db, standin, database_url, clock=lambda: datetime.now(UTC) + timedelta(seconds=121))
    assert later.drain() == 1, "the lapsed claim is taken over and sent"
    assert stalled._deliver(claimed) is False, "the stalled sender wakes up and finds the row is not its own"
    assert [m["text"] for m in standin.messages_in("C0ONE")] == ["once"]


def test_a_message_held_for_working_hours_holds_up_nothing(db, standin, database_url):
    later = datetime.now(UTC) + timedelta(hours=10)
    _post(db, REP, "the drill, at 08:30 tomorrow", not_before=later)
    _post(db, REP, "an on-demand drill, now")
    assert _sender(db, standin, database_url).drain() == 1
    assert [m["text"] for m in standin.messages_in(REP)] == ["an on-demand drill, now"]


def _publish(db, user: str) -> int:
    with db.session() as session:
        return enqueue(session, method="views.publish", channel=None, now=datetime.now(UTC),
                       payload={"user_id": user, "view": {"type": "home", "blocks": []}}).id


def test_tiered_methods_are_paced_to_their_tier_without_holding_up_posts(db, database_url):
    with SlackStandIn(enforce_tiers=True) as slack:  # views.publish is Tier 4: 100 a minute
        for i in range(103):
            _publish(db, f"U{i:04d}")
        _post(db, "C0ONE", "a drill")
        frozen = datetime.now(UTC)  # the sender's minute does not move on; Slack's (the stand-in's) does
        sender = _sender(db, slack, database_url, clock=lambda: frozen)
        assert sender.drain() == 101, "100 Home tabs and the post; 3 wait for the tier"
        assert slack.rate_limited == [], "the sender stayed inside the tier: Slack never had to say 429"
        assert [m["text"] for m in slack.messages_in("C0ONE")] == ["a drill"]
        with db.session() as session:
            waiting = session.exec(select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING)).all()
        assert len(waiting) == 3 and all(r.next_attempt_at > frozen for r in waiting)


def test_a_429_on_a_tiered_method_shuts_that_method_until_retry_after(db, standin, database_url):
    standin.fail_next("views.publish", status=429, retry_after=30)
    _publish(db, REP)
    _publish(db, MANAGER)
    _post(db, "C0ONE", "a drill")
    assert _sender(db, standin, database_url).drain() == 1
    assert len(standin.calls_to("views.publish")) == 1, "the second Home tab waits out the Retry-After too"
    assert [m["text"] for m in standin.messages_in("C0ONE")] == ["a drill"]


def test_a_lingering_drain_sends_what_pacing_deferred_without_waiting_for_the_next_sweep(db, standin, database_url):
    for i in range(5):
        _post(db, "C0ONE", f"message {i}")
    started = time.monotonic()
    assert _sender(db, standin, database_url, linger=timedelta(seconds=2)).drain() == 5
    assert 1.5 < time.monotonic() - started < 4, "a burst of three, then one a second"
    assert [m["text"] for m in standin.messages_in("C0ONE")] == [f"message {i}" for i in range(5)]


def test_an_edit_held_up_by_slacks_edit_budget_is_answered_below_the_placeholder(db, standin, database_url):
    """Many roleplays at once: chat.update's Tier 3 budget (here one a minute) must not make a buyer wait."""
    edits = MethodPacer(tiers={"chat.update": 1, "chat.delete": 1})  # Tier 1: one a minute each
    edits.reserve("chat.delete", datetime.now(UTC))  # and this minute's delete already spent
    sender = _sender(db, standin, database_url, pacer=ChannelPacer(burst=10), method_pacer=edits)
    _post(db, REP, "Your drill: the price objection")
    sender.drain()
    root = standin.messages_in(REP)[0]
    with db.session() as session:
        now = datetime.now(UTC)
        for text in ("Fair. What does it save us?", "And compared to the spreadsheet?"):
            typing = enqueue(session, method="chat.postMessage", channel=REP, now=now,
                             payload={"channel": REP, "thread_ts": root["ts"], "text": "_Dana is typing…_"})
            enqueue(session, method="chat.update", channel=REP, anchor=typing, now=now,
                    payload=answer_below({"text": f"Dana: {text}"}, root["ts"]))
    sender.drain()

    thread = [m["text"] for m in standin.messages_in(REP, thread_ts=root["ts"])]
    assert thread == ["Dana: Fair. What does it save us?", "_Dana is typing…_",
                      "Dana: And compared to the spreadsheet?"], "the first edited, the second answered below"
    assert all("_answer_below" not in json.dumps(c.params) for c in standin.calls), "the marker stays with us"
    with db.session() as session:
        tidy = session.exec(select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING)).all()
    assert [r.method for r in tidy] == ["chat.delete"], "the placeholder goes when Slack's budget allows"

    later = _sender(db, standin, database_url, clock=lambda: datetime.now(UTC) + timedelta(seconds=61))
    later.drain()
    assert [m["text"] for m in standin.messages_in(REP, thread_ts=root["ts"])] == [
        "Dana: Fair. What does it save us?", "Dana: And compared to the spreadsheet?"]
