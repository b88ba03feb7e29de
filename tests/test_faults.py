"""Faults: a killed process, an unreachable database, a failing Slack. Nothing lost, nothing sent twice.

The `kill -9` tests run `rehearse serve` as a child process and kill it with SIGKILL; the Slack stand-in runs in
the test, so it sees exactly what reached "Slack". Every post carries its outbox id as message metadata, which is
how duplicates are counted here and how the sender itself checks, after a crash, whether the post in flight had
arrived.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from slack_sdk import WebClient
from sqlalchemy import create_engine, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bot.app import BackgroundServer, create_app, free_port, slack_client
from bot.config import parse_config
from bot.demo.driver import SlackDriver, webhook_headers
from bot.demo.slack_standin import SlackStandIn
from bot.slack import ids
from bot.slack.sender import METADATA_TYPE, OutboxSender, retry_delay
from storage.db import Database
from storage.installation import app_removed, record_back
from storage.models import FollowUp, Nudge, NudgeState, OutboxMessage, OutboxStatus, Rep
from storage.outbox import claim_due, enqueue
from tests.conftest import (
    APPROVALS,
    REP,
    SIGNING_SECRET,
    TEST_CONFIG,
    WEBHOOK_SECRET,
    low_calls,
    make_settings,
)
from tests.fault_proxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[1]


def _outbox_ids(standin: SlackStandIn) -> Counter:
    """How many times each outbox row's post reached the stand-in."""
    return Counter(m["metadata"]["event_payload"]["outbox_id"] for m in standin.messages
                   if (m.get("metadata") or {}).get("event_type") == METADATA_TYPE)


# ---------------------------------------------------------------- the sender, in process

def _dm(db: Database, user: str, text: str) -> int:
    with db.session() as session:
        return enqueue(session, method="chat.postMessage", channel=user, payload={"channel": user, "text": text},
                       now=datetime.now(UTC)).id


def test_a_post_slack_got_before_the_sender_died_is_not_posted_again(db, standin, database_url):
    row_id = _dm(db, REP, "Your drill is ready")
    with db.session() as session:  # a sender claims the row, posts it, and dies before recording that it did
        claim_due(session, now=datetime.now(UTC), lease=timedelta(seconds=30))
    WebClient(token=standin.bot_token, base_url=standin.base_url).chat_postMessage(
        channel=REP, text="Your drill is ready",
        metadata={"event_type": METADATA_TYPE, "event_payload": {"outbox_id": row_id}})

    settings = make_settings(database_url, standin)
    later = OutboxSender(db, slack_client(settings, wait_on_rate_limit=False),
                         clock=lambda: datetime.now(UTC) + timedelta(seconds=31))
    later.drain()

    assert [m["text"] for m in standin.messages_in(REP)] == ["Your drill is ready"], "posted once, not twice"
    with db.session() as session:
        row = session.get(OutboxMessage, row_id)
    assert row.status == OutboxStatus.SENT and row.ts == standin.messages_in(REP)[0]["ts"]


def test_a_post_that_never_arrived_is_sent_after_the_lease(db, standin, database_url):
    row_id = _dm(db, REP, "Your drill is ready")
    with db.session() as session:
        claim_due(session, now=datetime.now(UTC), lease=timedelta(seconds=30))  # died before reaching Slack
    settings = make_settings(database_url, standin)
    OutboxSender(db, slack_client(settings, wait_on_rate_limit=False),
                 clock=lambda: datetime.now(UTC) + timedelta(seconds=31)).drain()
    assert _outbox_ids(standin) == {row_id: 1}
    assert standin.calls_to("conversations.history"), "it looked before posting again"


def test_a_rate_limited_check_waits_and_checks_again_rather_than_posting_blind(db, standin, database_url):
    row_id = _dm(db, REP, "Your drill is ready")
    with db.session() as session:  # posted by a sender that died before recording it
        claim_due(session, now=datetime.now(UTC), lease=timedelta(seconds=30))
    WebClient(token=standin.bot_token, base_url=standin.base_url).chat_postMessage(
        channel=REP, text="Your drill is ready",
        metadata={"event_type": METADATA_TYPE, "event_payload": {"outbox_id": row_id}})
    standin.fail_next("conversations.history", status=429, retry_after=20)
    settings = make_settings(database_url, standin)
    after_lease = datetime.now(UTC) + timedelta(seconds=31)
    OutboxSender(db, slack_client(settings, wait_on_rate_limit=False), clock=lambda: after_lease).drain()
    with db.session() as session:
        row = session.get(OutboxMessage, row_id)
    assert row.status == OutboxStatus.PENDING and row.next_attempt_at.replace(tzinfo=UTC) >= after_lease + \
        timedelta(seconds=19), "waits out Retry-After"
    OutboxSender(db, slack_client(settings, wait_on_rate_limit=False),
                 clock=lambda: after_lease + timedelta(seconds=21)).drain()
    assert len(standin.messages_in(REP)) == 1, "found on the second look, never posted twice"


def test_slack_5xx_is_retried_with_jittered_backoff_then_delivered_once(db, standin, database_url):
    standin.fail_next("chat.postMessage", status=503, times=4)  # the client's own 2 retries, then the sender's
    row_id = _dm(db, REP, "Your drill is ready")
    settings = make_settings(database_url, standin)
    sender = OutboxSender(db, slack_client(settings, wait_on_rate_limit=False))
    assert sender.drain() == 0
    failed_at = datetime.now(UTC)
    with db.session() as session:
        row = session.get(OutboxMessage, row_id)
    assert (row.status, row.error) == (OutboxStatus.PENDING, "internal_error")
    wait = (row.next_attempt_at.replace(tzinfo=UTC) - failed_at).total_seconds()
    assert 0.3 <= wait <= 1.0, f"first backoff is 0.5-1 s after the failure, got {wait:.2f}"

    later = OutboxSender(db, slack_client(settings, wait_on_rate_limit=False),
                         clock=lambda: datetime.now(UTC) + timedelta(seconds=2))
    assert later.drain() == 1
    assert _outbox_ids(standin) == {row_id: 1}
    assert len(standin.calls_to("chat.postMessage")) == 5


def test_a_refused_token_pauses_sending_and_the_message_waits_for_slack_to_accept_it(db, standin, database_url):
    standin.fail_next("chat.postMessage", status=200, error="token_revoked")  # before the tokens_revoked event
    row_id = _dm(db, REP, "Your drill is ready")
    sender = OutboxSender(db, slack_client(make_settings(database_url, standin), wait_on_rate_limit=False))
    assert sender.drain() == 0
    with db.session() as session:
        row = session.get(OutboxMessage, row_id)
        assert row.status == OutboxStatus.PENDING, "not failed: the rep's drill is not lost"
        assert app_removed(session)
    calls = len(standin.calls)
    assert sender.drain() == 0 and len(standin.calls) == calls, "nothing is sent with a refused token"
    with db.session() as session:  # Slack answers again (auth.test at start, or a new request from Slack)
        record_back(session, now=datetime.now(UTC))
    assert sender.drain() == 1
    assert _outbox_ids(standin) == {row_id: 1}


def test_backoff_grows_is_capped_and_is_spread_by_jitter():
    rng = random.Random(7)
    for attempts, ceiling in ((1, 1), (2, 2), (5, 16), (12, 300), (30, 300)):
        delays = [retry_delay(attempts, rng).total_seconds() for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempts, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4, "rows failing together come back at different times"


# ---------------------------------------------------------------- kill -9 of `rehearse serve`

class ServeProcess:
    """`rehearse serve` in a child process against the stand-in, restartable on the same database."""

    def __init__(self, tmp: Path, database_url: str, standin: SlackStandIn, config: dict, **env: str):
        config_path = tmp / "coach.yaml"
        config_path.write_text(json.dumps(config))  # JSON is YAML
        self.env = {**os.environ, "SLACK_BOT_TOKEN": standin.bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "SLACK_API_URL": standin.base_url, "DATABASE_URL": database_url,
                    "REHEARSE_CONFIG": str(config_path), "REHEARSE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "REHEARSE_OUTBOX_SWEEP_SECONDS": "0.2", "REHEARSE_OUTBOX_LEASE_SECONDS": "2", **env}
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, *, wait: bool = True) -> ServeProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--no-verbose"], cwd=ROOT,
                                        env={**self.env, "PORT": str(port)}, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait:
            return self
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "rehearse serve exited at start"
            time.sleep(0.1)
        raise AssertionError("rehearse serve did not come up")

    def kill_9(self) -> None:
        """Both processes at once, as when the machine or the container dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def worker_pid(self) -> int | None:
        """The `rehearse worker` process serve started (its one child, started by whichever of its threads)."""
        children = [int(pid) for task in Path(f"/proc/{self.process.pid}/task").iterdir()
                    for pid in (task / "children").read_text().split()]
        return children[0] if children else None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


_engines: dict[str, object] = {}


def _count(url: str, query) -> int:  # noqa: ANN001
    engine = _engines.get(url) or _engines.setdefault(url, create_engine(url, poolclass=NullPool))
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def _wait(predicate, timeout: float, what: str, every: float = 0.1) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


class KillingStandIn(SlackStandIn):
    """Holds posts until `release()`, then kills the server right after Slack has taken the `kill_at`-th post and
    before the server hears back: that post is in flight when the process dies."""

    def __init__(self, **kw):  # noqa: ANN003
        super().__init__(**kw)
        self.gate = threading.Event()
        self.kill_at: int | None = None
        self.victim: subprocess.Popen | None = None

    def _handle(self, method, params, token):  # noqa: ANN001, ANN202
        if method == "chat.postMessage" and self.victim is not None:
            self.gate.wait(30)
        reply = super()._handle(method, params, token)
        if (method == "chat.postMessage" and self.victim is not None and self.kill_at is not None
                and len(self.messages) >= self.kill_at):
            os.killpg(self.victim.pid, signal.SIGKILL)  # the web process and the worker that sends
            self.victim = None
        return reply


@pytest.mark.slow
def test_kill_9_while_sending_then_restart_loses_nothing_and_sends_nothing_twice(database_url, tmp_path):
    reps = [f"U0REP{i:03d}" for i in range(40)]
    config = {**TEST_CONFIG, "teams": [{**TEST_CONFIG["teams"][0], "reps": reps}]}
    with KillingStandIn(users=[{"id": u} for u in reps]) as slack:
        serve = ServeProcess(tmp_path, database_url, slack, config).start()
        try:
            slack.victim = serve.process
            driver = SlackDriver(serve.url, SIGNING_SECRET, httpx.Client(timeout=30))
            for rep in reps:  # each drill is a DM plus its thread (brief, buyer's opening line)
                assert driver.command(ids.DRILL_COMMAND, user=rep, text="price-objection").status_code == 200
            posts = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.method == "chat.postMessage")
            _wait(lambda: _count(database_url, posts) >= 3 * len(reps), 30, "every drill's posts committed")
            total = _count(database_url, posts)
            slack.kill_at = total // 2
            slack.gate.set()
            serve.process.wait(timeout=30)
            assert serve.process.returncode == -signal.SIGKILL
            assert 0 < len(_outbox_ids(slack)) < total, "killed halfway through sending"

            serve.start()  # the same database: what was unsent, and the post in flight, go out now
            unsent = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != OutboxStatus.SENT)
            _wait(lambda: _count(database_url, unsent) == 0, 60, "every outbox row sent")
        finally:
            serve.stop()
        delivered = _outbox_ids(slack)
        assert len(delivered) == total, "nothing lost"
        assert set(delivered.values()) == {1}, f"nothing twice: {[i for i, n in delivered.items() if n > 1]}"
        for rep in reps:  # and each rep's drill reads in order: brief first, thread below it
            top = [m for m in slack.messages_in(rep) if not m.get("thread_ts")]
            assert len(top) == 1 and len(slack.messages_in(rep, thread_ts=top[0]["ts"])) >= 2


def _fill_due_followups(url: str, count: int) -> None:
    now = datetime.now(UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Rep.__table__), [{"id": 1000 + i, "slack_user_id": f"U9{i:06d}", "team_id": "west",
                                             "created_at": now} for i in range(count)])
        conn.execute(insert(Nudge.__table__), [{
            "id": 1000 + i, "rep_id": 1000 + i, "team_id": "west", "criterion": "objection_handling",
            "scenario_id": "price-objection", "state": str(NudgeState.COMPLETED), "policy": "manual",
            "created_at": now - timedelta(days=20), "completed_at": now - timedelta(days=15)} for i in range(count)])
        conn.execute(insert(FollowUp.__table__), [{"nudge_id": 1000 + i, "rep_id": 1000 + i, "step": 1,
                                                  "due_at": now - timedelta(minutes=1), "status": "scheduled"}
                                                 for i in range(count)])
    engine.dispose()


@pytest.mark.slow
def test_kill_9_during_followup_dispatch_then_restart_sends_each_refresher_once(database_url, tmp_path, standin):
    due = 3000
    serve = ServeProcess(tmp_path, database_url, standin, TEST_CONFIG, REHEARSE_FOLLOWUP_SWEEP_SECONDS="3600")
    serve.start()  # migrates and creates the team; the follow-up sweep does not run for an hour
    serve.stop()
    _fill_due_followups(database_url, due)
    sent = select(func.count()).select_from(FollowUp).where(FollowUp.status == "sent")
    serve.env["REHEARSE_FOLLOWUP_SWEEP_SECONDS"] = "0.2"
    try:
        serve.start(wait=False)  # the jobs start before the web server: dispatch begins within a second
        _wait(lambda: _count(database_url, sent) > 0, 60, "dispatch under way", every=0.01)
        serve.kill_9()
        dispatched_before_kill = _count(database_url, sent)
        assert dispatched_before_kill < due, "killed in the middle of dispatch"

        serve.start()
        _wait(lambda: _count(database_url, sent) == due, 120, "every follow-up dispatched")
        unsent = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != OutboxStatus.SENT)
        _wait(lambda: _count(database_url, unsent) == 0, 120, "every refresher DM sent")
    finally:
        serve.stop()
    invites = Counter(m["channel"] for m in standin.messages if "Refresher" in m["text"])
    assert len(invites) == due, "every rep got their refresher"
    assert set(invites.values()) == {1}, "and nobody got it twice"
    assert set(_outbox_ids(standin).values()) == {1}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_serve_runs_its_worker_apart_restarts_it_after_kill_9_and_it_stops_with_serve(database_url, tmp_path,
                                                                                      standin):
    """Slack's answers come from the web process; the work behind them from a worker process serve watches. A
    request answered while the worker is dead is handled by the next one; a worker without its web process stops."""
    pointer = "That thread has no practice running"
    serve = ServeProcess(tmp_path, database_url, standin, TEST_CONFIG).start()
    try:
        driver = SlackDriver(serve.url, SIGNING_SECRET, httpx.Client(timeout=10))
        _wait(lambda: serve.worker_pid() is not None, 10, "the worker process")
        first = serve.worker_pid()
        _wait(lambda: os.getpriority(os.PRIO_PROCESS, first) > os.getpriority(os.PRIO_PROCESS, serve.process.pid),
              10, "the worker to yield the CPU to Slack's answers")
        assert driver.dm(user=REP, channel="D0ALEX", text="hello").status_code == 200
        standin.wait_for(lambda: len(standin.messages_in("D0ALEX")) == 1, timeout=10)

        os.kill(first, signal.SIGKILL)
        answered = driver.dm(user=REP, channel="D0ALEX", text="still there?")
        assert answered.status_code == 200 and answered.elapsed.total_seconds() < 1, "answered with no worker"
        standin.wait_for(lambda: len(standin.messages_in("D0ALEX")) == 2, timeout=20)
        assert pointer in standin.messages_in("D0ALEX")[1]["text"], "handled by the worker started in its place"
        second = serve.worker_pid()
        assert second not in (None, first)

        # The worker's counters reach the web process's /metrics: a Slack error the worker's sender met.
        standin.fail_next("chat.postMessage", status=200, error="channel_not_found")
        assert driver.dm(user=REP, channel="D0ALEX", text="anyone?").status_code == 200
        counted = 'rehearse_slack_api_errors_total{error="channel_not_found",method="chat.postMessage"} 1.0'
        _wait(lambda: counted in httpx.get(f"{serve.url}/metrics").text, 10, "the worker's error in /metrics")

        os.kill(serve.process.pid, signal.SIGKILL)  # the web process alone
        serve.process.wait(timeout=10)
        _wait(lambda: not _alive(second), 15, "the orphaned worker to stop")
    finally:
        serve.stop()


def test_sigterm_stops_serve_and_its_worker_with_exit_code_0(database_url, tmp_path, standin):
    """A process manager's SIGTERM (a deploy, a scale-down): serve stops its worker, then itself, cleanly. uvicorn
    raises SIGTERM again once shut down; with Python's default handler the web process died there, before it
    stopped the worker."""
    serve = ServeProcess(tmp_path, database_url, standin, TEST_CONFIG).start()
    try:
        _wait(lambda: serve.worker_pid() is not None, 10, "the worker process")
        worker = serve.worker_pid()
        serve.process.send_signal(signal.SIGTERM)
        assert serve.process.wait(timeout=40) == 0
        assert not _alive(worker), "the worker outlived serve"
    finally:
        serve.stop()


# ---------------------------------------------------------------- the database unreachable for 30 seconds

class SqliteLockOutage:
    """Another process holds SQLite's write lock: writers wait out the busy timeout (30 s), then fail.

    Held for 40 s, so that every writer that started waiting early gives up before it is released."""

    seconds = 40

    def __init__(self, url: str):
        self.path = make_url(url).database
        self._conn = None

    def cut(self) -> None:
        import sqlite3  # the stdlib driver, as any other process on the machine would use it

        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.execute("BEGIN EXCLUSIVE")

    def restore(self) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


def test_on_sqlite_a_writer_waits_at_most_write_wait_s_for_its_turn_and_the_lock_together(tmp_path, monkeypatch):
    """While another process holds SQLite's lock, two writers of this process wait: the one holding the turn in
    SQLite's busy handler, the other for the turn. Both give up within WRITE_WAIT_S, not the second after twice that."""
    import sqlite3

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    import storage.db

    monkeypatch.setattr(storage.db, "WRITE_WAIT_S", 2)
    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}")
    with db.session() as session:
        session.exec(text("CREATE TABLE t (x INTEGER)"))
    holder = sqlite3.connect(path, isolation_level=None)  # another process, as far as SQLite can tell
    holder.execute("BEGIN EXCLUSIVE")
    waited: dict[str, float] = {}

    def write(name: str) -> None:
        begun = time.monotonic()
        try:
            with db.session() as session:
                session.exec(text("INSERT INTO t VALUES (1)"))
        except OperationalError as exc:
            assert "locked" in str(exc)
            waited[name] = time.monotonic() - begun

    writers = [threading.Thread(target=write, args=(n,)) for n in ("first", "second")]
    try:
        for w in writers:
            w.start()
            time.sleep(1)  # the second gets its turn when the first gives up, with 1 s of its 2 left
        for w in writers:
            w.join(timeout=10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sorted(waited) == ["first", "second"], waited
    assert max(waited.values()) < 2.5, f"a writer waited past WRITE_WAIT_S (2 s): {waited}"
    with db.session() as session:  # the lock is back: writing works, with the full wait again
        session.exec(text("INSERT INTO t VALUES (2)"))
    db.dispose()


@pytest.mark.slow
def test_database_unreachable_for_30_seconds_webhook_says_503_and_everything_recovers(database_url, standin, caplog):
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 5432)).__enter__()
        app_url, outage = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    else:
        proxy, app_url, outage = None, database_url, SqliteLockOutage(database_url)
    # If the outage begins while the sender is recording an attempt, that row keeps its claim until the lease ends.
    settings = make_settings(app_url, standin).model_copy(update={"outbox_lease_seconds": 10})
    app = create_app(settings, config=parse_config(TEST_CONFIG))
    app.start()
    server = BackgroundServer(app).__enter__()
    http = httpx.Client(timeout=60)

    def send(calls: list[dict]) -> httpx.Response:
        body = json.dumps(calls).encode()
        return http.post(f"{server.url}/webhooks/calls", content=body, headers=webhook_headers(WEBHOOK_SECRET, body))

    try:
        assert send(low_calls()).status_code == 202
        standin.wait_for(lambda: standin.messages_in(APPROVALS), timeout=10)
        # Slack is busy when the database goes: the second approval waits 5 s and is still unsent at the cut.
        standin.fail_next("chat.postMessage", status=429, retry_after=5)
        assert send(low_calls(rep="sam@example.com", prefix="s")).status_code == 202
        caplog.set_level(logging.WARNING)

        outage.cut()
        cut_at = time.monotonic()
        during = send(low_calls(prefix="late"))
        assert during.status_code == 503, during.text
        assert during.headers["retry-after"] == "30" and "retry" in during.json()["error"]
        assert "Traceback" not in during.text
        if proxy is not None:
            assert http.get(f"{server.url}/healthz").status_code == 503
        time.sleep(max(0.0, getattr(outage, "seconds", 30) - (time.monotonic() - cut_at)))
        assert len(standin.messages_in(APPROVALS)) == 1, "nothing could be claimed while the database was away"
        outage.restore()

        # Both recover without help: the waiting approval goes out, and the webhook accepts the calls again.
        standin.wait_for(lambda: len(standin.messages_in(APPROVALS)) == 2, timeout=30)
        again = send(low_calls(prefix="late"))
        assert again.status_code == 202 and again.json()["accepted"] == 3, "the refused calls had left no trace"
        assert "database is unreachable; sending paused" in caplog.text
        assert caplog.text.count("sending paused") == 1, "one line for the outage, not one per sweep"
        assert "sending resumed" in caplog.text
        assert _outbox_ids(standin) and set(_outbox_ids(standin).values()) == {1}
    finally:
        http.close()
        server.__exit__(None, None, None)
        app.stop()
        if proxy is not None:
            proxy.__exit__(None, None, None)
    unsent = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != OutboxStatus.SENT)
    assert _count(database_url, unsent) == 0
