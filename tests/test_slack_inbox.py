"""The Slack inbox: events and clicks are answered once stored, handled after, in order per conversation, once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt import App
from slack_bolt.request.internals import parse_body
from slack_sdk import WebClient
from sqlalchemy.exc import OperationalError
from sqlmodel import func, select

from bot.demo.slack_standin import SlackStandIn
from bot.handlers import note_failure
from bot.handlers.inbox import LEASE, InboxDispatcher
from bot.slack.payloads import form_fields, read_body, unquote_plus
from storage import inbox
from storage.models import AuditEntry, SlackInboxItem
from tests.conftest import REP

POINTER = "That thread has no practice running"
ROOT = Path(__file__).resolve().parents[1]


def stored(app) -> list[SlackInboxItem]:  # noqa: ANN001
    with app.coach.db.inbox.reading() as session:
        return list(session.exec(select(SlackInboxItem).order_by(SlackInboxItem.id)))


def test_events_and_clicks_are_answered_once_stored_and_handled_by_the_worker_later(start_app, standin):
    receiver = start_app(background=False)  # the web process alone: its worker is down
    answers = [receiver.slack.dm(user=REP, channel="D0ALEX", text=f"hello {i}") for i in range(5)]
    assert [(r.status_code, r.text) for r in answers] == [(200, "")] * 5, "Slack's answer, nothing for the rep yet"
    rows = stored(receiver.app)
    assert [json.loads(r.body)["event"]["text"] for r in rows] == [f"hello {i}" for i in range(5)]
    assert {r.lane for r in rows} == {"D0ALEX"}, "one rep's DM is one lane"
    assert rows[0].headers["x-request-id"] == answers[0].headers["x-request-id"], "the request id follows the work"
    time.sleep(1.1)
    assert standin.messages_in("D0ALEX") == [], "nothing is handled while no worker runs"
    metrics = receiver.http.get(f"{receiver.url}/metrics").text
    assert "rehearse_slack_inbox_pending 5.0" in metrics, "what the engineer on call sees"
    age = next(line for line in metrics.splitlines() if line.startswith("rehearse_slack_inbox_oldest_age_seconds "))
    assert float(age.split()[1]) >= 1

    worker = start_app()  # the worker comes up on the same database: it handles all of them, once each
    standin.wait_for(lambda: len(standin.messages_in("D0ALEX")) >= 5, timeout=10)
    time.sleep(0.3)
    assert [POINTER in m["text"] for m in standin.messages_in("D0ALEX")] == [True] * 5
    assert stored(worker.app) == [], "handled requests are deleted"


def test_messages_the_roleplay_never_answers_are_acknowledged_without_being_stored(start_app):
    """The bot's own posts in a DM, its edits of them and channel chatter come back as message events: Slack gets
    its 200, the inbox stays empty (three events a roleplay turn would be stored otherwise, two of them for
    nothing)."""
    h = start_app(background=False)  # no worker: what is stored stays visible
    ts = f"{time.time():.6f}"
    ignored = [
        {"type": "message", "channel_type": "im", "channel": "D0ALEX", "user": "U0BOT", "bot_id": "B0REHEARSE",
         "text": "Dana is typing…", "ts": ts},
        {"type": "message", "subtype": "message_changed", "channel_type": "im", "channel": "D0ALEX", "ts": ts,
         "message": {"user": "U0BOT", "bot_id": "B0REHEARSE", "text": "Fine. What would it cost us?"}},
        {"type": "message", "channel_type": "channel", "channel": "C0GENERAL", "user": REP, "text": "lunch?",
         "ts": ts},
    ]
    assert [h.slack.event(e).status_code for e in ignored] == [200] * 3
    assert stored(h.app) == []
    assert h.slack.dm(user=REP, channel="D0ALEX", text="What are you comparing us against?").status_code == 200
    assert [json.loads(r.body)["event"]["text"] for r in stored(h.app)] == ["What are you comparing us against?"]


def test_an_event_is_left_out_only_when_every_listener_of_its_type_would_ignore_it():
    """A second `message` listener that takes every message (or acts on others) keeps them coming."""
    from bot.handlers import Listened

    in_dm = lambda e: e.get("channel_type") == "im"  # noqa: E731
    in_channel = lambda e: e.get("channel_type") == "channel"  # noqa: E731
    dm, channel, group = ({"event": {"type": "message", "channel_type": kind}} for kind in ("im", "channel", "group"))
    only_dm = Listened(frozenset({"message"}), frozenset(), {"message": (in_dm,)})
    assert (only_dm.ignores(dm), only_dm.ignores(channel)) == (False, True)
    both = Listened(frozenset({"message"}), frozenset(), {"message": (in_dm, in_channel)})
    assert (both.ignores(dm), both.ignores(channel), both.ignores(group)) == (False, False, True)
    with_a_catch_all = Listened(frozenset({"message"}), frozenset(), {"message": (in_dm, None)})
    assert not with_a_catch_all.ignores(group)
    assert not only_dm.ignores({"event": {"type": "app_home_opened"}}), "no check: never left out"


def test_a_bad_signature_is_refused_before_anything_is_stored(harness):
    body = json.dumps({"type": "event_callback", "team_id": "T0", "event_id": "EvBAD",
                       "event": {"type": "message", "channel_type": "im", "channel": "D0ALEX", "user": REP,
                                 "text": "hi", "ts": "1.1"}})
    forged = harness.http.post(f"{harness.url}/slack/events", content=body.encode(), headers={
        "Content-Type": "application/json", "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": "v0=" + "0" * 64})
    stale = harness.slack.post(body, "application/json", timestamp=int(time.time()) - 600)
    assert (forged.status_code, stale.status_code) == (401, 401)
    assert stored(harness.app) == []


def test_what_needs_bolts_own_answer_is_answered_before_the_ack(harness):
    """A command's answer is its content; an event nothing listens to is Bolt's 404 (Slack only sends what the
    manifest subscribes to); neither is stored."""
    drill = harness.slack.command("/drill", user=REP, text="")
    assert drill.status_code == 200 and drill.text.strip(), "the picker or a hint, in the answer itself"
    assert harness.slack.event({"type": "reaction_added", "user": REP}).status_code == 404
    assert stored(harness.app) == []


def test_the_worker_failing_on_the_database_leaves_the_request_to_be_handled_again(db, standin):
    """A listener that hit a database outage has not had its effect: the request is taken again after its lease,
    not dropped. Any other failure is a bug, logged, and the request is done."""
    calls: list[str] = []
    bolt = _stored_requests_bolt(standin)

    @bolt.event("message")
    def flaky(event) -> None:  # noqa: ANN001
        calls.append(event["text"])
        if event["text"] == "outage" and calls.count("outage") == 1:
            raise OperationalError("INSERT", None, Exception("could not connect to server"))
        if event["text"] == "bug":
            raise ValueError("a bug, not an outage")

    bolt.error(lambda error: note_failure(error))  # as `handlers.register` does
    now = datetime(2026, 11, 30, 9, tzinfo=UTC)
    clock = [now]
    dispatcher = InboxDispatcher(db, bolt, threads=4, clock=lambda: clock[0], sweep_s=0.05)
    with db.session() as session:
        inbox.record(session, [(f"D{i}", _event_body(text), {"content-type": "application/json"})
                               for i, text in enumerate(["outage", "bug"])], now=now)
    _settle(dispatcher)
    assert sorted(calls) == ["bug", "outage"]
    with db.reading() as session:
        left = list(session.exec(select(SlackInboxItem)))
    assert [json.loads(r.body)["event"]["text"] for r in left] == ["outage"], "the bug is done, the outage waits"
    assert left[0].lease_until > now

    _settle(dispatcher)
    assert sorted(calls) == ["bug", "outage"], "not taken again while its lease runs"
    clock[0] = now + LEASE + timedelta(seconds=1)
    _settle(dispatcher)
    assert sorted(calls) == ["bug", "outage", "outage"]
    with db.reading() as session:
        assert session.exec(select(func.count()).select_from(SlackInboxItem)).one() == 0
    dispatcher.stop()


def test_a_lanes_requests_run_one_at_a_time_in_order_and_each_once_with_two_workers(db, standin):
    """Two workers (replicas) take from one inbox: every request is handled once, and each conversation's requests
    in the order they came, even while a slow one holds its lane."""
    lanes, per_lane = 12, 6
    handled: list[tuple[str, int]] = []
    running: dict[str, int] = {}
    overlaps: list[str] = []
    guard = threading.Lock()

    def make_bolt() -> App:
        bolt = _stored_requests_bolt(standin)

        @bolt.event("message")
        def record(event) -> None:  # noqa: ANN001
            lane, seq = event["channel"], int(event["text"])
            with guard:
                running[lane] = running.get(lane, 0) + 1
                if running[lane] > 1:
                    overlaps.append(lane)
            time.sleep(0.03 if seq % 2 == 0 else 0.001)
            with guard:
                running[lane] -= 1
                handled.append((lane, seq))

        return bolt

    with db.session() as session:
        inbox.record(session, [(f"D{lane:02d}", _event_body(str(seq), channel=f"D{lane:02d}"),
                                {"content-type": "application/json"})
                               for seq in range(per_lane) for lane in range(lanes)], now=datetime.now(UTC))
    second = db if not db.is_postgres else type(db)(db.url)  # a replica has its own connections
    workers = [InboxDispatcher(d, make_bolt(), threads=8, clock=lambda: datetime.now(UTC), sweep_s=0.02)
               for d in (db, second)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while len(handled) < lanes * per_lane and time.monotonic() < deadline:
        time.sleep(0.05)
    for worker in workers:
        worker.stop()
    assert len(handled) == lanes * per_lane and len(set(handled)) == len(handled), "each once"
    for lane in range(lanes):
        assert [s for name, s in handled if name == f"D{lane:02d}"] == list(range(per_lane)), "in order"
    assert overlaps == [], "one request of a lane at a time"
    with db.reading() as session:
        assert session.exec(select(func.count()).select_from(SlackInboxItem)).one() == 0


def test_a_worker_renews_or_deletes_only_a_request_it_still_holds(db):
    """Worker A's lease lapsed (its database was away) and worker B took the request again: A's late renewal and
    A's "done" leave it to B, whose own renewal and "done" count."""
    now = datetime.now(UTC)
    with db.session() as session:
        inbox.record(session, [("D1", _event_body("slow"), {"content-type": "application/json"})], now=now)
    with db.session() as session:
        [a] = inbox.claim(session, now=now, lease=LEASE, limit=10)
        a_claim = (a.id, a.attempts)
    later = now + LEASE + timedelta(seconds=1)
    with db.session() as session:
        [b] = inbox.claim(session, now=later, lease=LEASE, limit=10)
        b_claim = (b.id, b.attempts)
    with db.session() as session:
        assert inbox.renew(session, [a_claim], until=later + LEASE * 2) == set(), "A no longer holds it"
        inbox.handled(session, [a_claim])
    with db.session() as session:
        [row] = session.exec(select(SlackInboxItem)).all()
        assert row.lease_until.replace(tzinfo=UTC) == (later + LEASE).replace(tzinfo=UTC), "B's lease, untouched"
        assert inbox.renew(session, [b_claim], until=later + LEASE * 2) == {b_claim}
        inbox.handled(session, [b_claim])
    with db.reading() as session:
        assert session.exec(select(func.count()).select_from(SlackInboxItem)).one() == 0


def test_a_request_whose_worker_keeps_dying_is_dropped_after_five_attempts_and_logged(db, standin, caplog):
    bolt = _stored_requests_bolt(standin)
    seen: list[str] = []
    bolt.event("message")(lambda event: seen.append(event["text"]))
    now = datetime(2026, 11, 30, 9, tzinfo=UTC)
    with db.session() as session:
        inbox.record(session, [("D1", _event_body("poison"), {"content-type": "application/json"})], now=now)
        for attempt in range(5):  # five workers died holding it
            inbox.claim(session, now=now + attempt * (LEASE + timedelta(seconds=1)), lease=LEASE, limit=10)
    dispatcher = InboxDispatcher(db, bolt, threads=2, clock=lambda: now + 6 * LEASE, sweep_s=0.05)
    _settle(dispatcher)
    dispatcher.stop()
    assert seen == []
    assert "dropped a Slack request (lane D1" in caplog.text and "after 5 attempts" in caplog.text
    with db.reading() as session:
        assert session.exec(select(func.count()).select_from(SlackInboxItem)).one() == 0


def test_a_burst_of_replies_is_stored_in_fewer_transactions_than_requests(start_app):
    """Whatever arrives while one transaction commits goes into the next: a burst is not one commit per request."""
    h, replies = start_app(background=False), 40
    commits: list[int] = []
    h.app.inbox.on_commit(lambda: commits.append(1))

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as http:
            bodies = [_event_body(f"r{i}", channel=f"D{i:03d}") for i in range(replies)]
            signed = [h.slack.signed_headers(b, "application/json") for b in bodies]
            answers = await asyncio.gather(*(http.post(f"{h.url}/slack/events", content=b.encode(), headers=s)
                                             for b, s in zip(bodies, signed, strict=True)))
            return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * replies
    assert len(stored(h.app)) == replies
    assert len(commits) < replies


def _stored_requests_bolt(standin: SlackStandIn) -> App:
    """A Bolt app as the worker's: no signature check (the receiver made it), listeners run before `dispatch` ends."""
    return App(client=WebClient(token=standin.bot_token, base_url=standin.base_url),
               request_verification_enabled=False, token_verification_enabled=False, process_before_response=True)


def _event_body(text: str, *, channel: str = "D0ALEX") -> str:
    return json.dumps({"type": "event_callback", "team_id": "T0REHEARSE", "event_id": f"Ev{time.time_ns()}{text}",
                       "event": {"type": "message", "channel_type": "im", "channel": channel, "user": REP,
                                 "text": text, "ts": f"{time.time():.6f}"}})


def _settle(dispatcher: InboxDispatcher) -> None:
    """Sweep until nothing more is taken and nothing is running."""
    for _ in range(100):
        taken = dispatcher.dispatch_due()
        time.sleep(0.05)
        if not taken and dispatcher.dispatch_due() == 0:
            break
    dispatcher.dispatch_due(claim=False)



# --- reading a click's body: the same result as Bolt's reading, faster ---------------------------------------------

form_text = st.lists(st.sampled_from([*"%=&+abcAF09 \t_\r\n;{}\":,", "%2", "%3D", "%zz", "é", "%C3%A9", "%FF", "%0A",
                                      "%0D%0A", "= ", "=\n", "payload", "payload="])).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=st.text() | form_text)
def test_percent_decoding_reads_any_text_as_urllib_does(text):
    assert unquote_plus(text) == urllib.parse.unquote_plus(text)
    assert unquote_plus(urllib.parse.quote_plus(text)) == text
    assert form_fields(text) == dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


@settings(max_examples=200, deadline=None)
@given(payload=st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)),
       extra=st.dictionaries(st.text(min_size=1), st.text(), max_size=3))
def test_a_form_encoded_payload_is_read_as_bolt_reads_it(payload, extra):
    body = urllib.parse.urlencode({**extra, "payload": json.dumps(payload)})
    content_type = "application/x-www-form-urlencoded"
    assert read_body(body, content_type) == parse_body(body, content_type)


def test_sqlite_writers_of_two_processes_take_turns(db, database_url):
    """`serve`'s web process and its worker write to one SQLite file: a writer waits for the other process's turn to
    end (a file lock beside the database, free at once on release, unlike SQLite's own sleeping retries)."""
    if db.is_postgres:
        pytest.skip("PostgreSQL has no single writer")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from storage.db import Database\n"
        f"db = Database({database_url!r})\n"
        "with db.writer_turn():\n"
        "    print('holding', flush=True)\n"
        "    time.sleep(1.0)\n"
        "    released = time.time()\n"
        "print(released, flush=True)\n")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    with db.session() as session:
        session.add(AuditEntry(at=datetime.now(UTC), actor="us", action="waited", subject="turn"))
    wrote = time.time()
    released = float(holder.stdout.readline())
    assert holder.wait(timeout=10) == 0
    assert wrote >= released, "we wrote only once the other process's turn had ended"
    with db.reading() as session:
        assert [e.actor for e in session.exec(select(AuditEntry))] == ["us"]


def test_a_body_no_slack_payload_looks_like_is_a_400_before_anything_is_stored(harness):
    deep = '{"type": "event_callback", "event": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with_nul = json.dumps({"type": "event_callback", "event": {"type": "message"}}) + "\x00"
    for body in (deep, with_nul, "payload=%7Bnot json"):
        r = harness.slack.post(body, "application/json" if body.startswith("{") else
                               "application/x-www-form-urlencoded")
        assert r.status_code == 400 and "not a Slack payload" in r.json()["error"], (body[:40], r.text)
    assert stored(harness.app) == []
