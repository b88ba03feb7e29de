"""The Slack inbox: events and clicks are answered as soon as they are stored, and handled after.

Slack gives up on a request after 3 seconds, and a burst (every rep replying to their buyer at once) must not
queue behind Bolt's dispatch and the listeners' database work. So `/slack/events` checks the signature, stores the
request (`InboxWriter`, many requests a transaction) and answers 200; the worker (`InboxDispatcher`, in its own
process under `rehearse serve`) hands each stored request to Bolt, oldest first per conversation, and deletes it
once its listener has run. A message event its listener would return early on (the bot's own posts, edits) is
answered without being stored. Slash commands, modal submissions, `url_verification`, events and clicks nothing
listens to, and clicks that open a modal need Bolt's own answer: they are handled before the ack, as always.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta

from slack_bolt import App, BoltContext, BoltRequest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import build_headers
from slack_bolt.request.internals import build_context
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response

from bot.coach import work_started
from bot.handlers import Listened, failures_noted
from bot.nudges.adapters import unstorable_text
from bot.slack.installation import InstalledApp
from bot.slack.payloads import SLACK_ID, read_body, unquote_plus
from bot.slack.sender import DATABASE_DOWN
from bot.telemetry import REQUEST_ID_HEADER, ContextThreadPool, bound, context
from storage import inbox
from storage.db import Database
from storage.inbox import Claim

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)  # renewed while a request's work runs; once it lapses, its worker is presumed dead
GIVE_UP_AFTER = 5  # attempts: a request whose handling kills the worker every time is dropped, and logged
BATCH = 500  # requests a transaction at most
KEPT_HEADERS = ("content-type", "x-slack-retry-num", "x-slack-retry-reason")
MAX_AGE_S = 300  # a signed request older (or newer) than this is a replay: Slack's own 5 minutes
# JSON's escapes of NUL and of a UTF-16 surrogate (all or half of a pair): where text no database stores may hide.
UNSTORABLE_ESCAPE = re.compile(r"\\u(0000|[dD][89a-fA-F])")
# What Bolt (and `lane_for`, reading the ids as Bolt does) raises on a payload not shaped as Slack's are.
UNREADABLE = (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError)


def lane_for(payload: dict, listened: Listened, where: BoltContext | None = None) -> str | None:
    """The conversation whose order a request keeps, when its listener may run after the ack; else None.

    Messages and clicks keep their channel's order (a DM's replies, one after the other). Other events have a lane
    of their own per person: opening the Home tab does not wait behind a buyer's reply being written in the DM.
    Raises as Bolt does (TypeError, KeyError, ...) on a payload whose ids it cannot read: the caller answers 400.
    """
    if where is None:
        where = build_context(BoltContext(), payload)  # Bolt's own reading of the ids, as BoltRequest does it
    if payload.get("type") == "event_callback":
        event = payload.get("event")
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str) or kind not in listened.events:
            return None
        if kind != "message":
            return f"{kind}:{where.user_id or where.team_id or '-'}"[:64]
    elif payload.get("type") == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not all(
                isinstance(a, dict) and isinstance(a.get("action_id"), str) and a["action_id"] in listened.actions
                for a in actions):
            return None
    else:
        return None
    return str(where.channel_id or where.user_id or where.team_id or "-")[:64]


def checked_request(body: str, headers: dict) -> BoltRequest:
    """The Bolt request for one the receiver has checked, stored or not. Its body is read here
    (`bot.slack.payloads`: about 1 ms less a click than Bolt's reading, and right about a command whose text holds
    "payload") and handed over read, as Socket Mode hands Bolt its requests: already read and already trusted,
    which is the only thing Bolt does differently for that mode (no signature check; the receiver made it)."""
    return BoltRequest(body=read_body(body, headers.get("content-type")), headers={k: v for k, v in headers.items()
                                                                       if k != REQUEST_ID_HEADER}, mode="socket_mode")


class InboxWriter:
    """Stores acknowledged requests from a thread of its own: whatever arrived while the last transaction committed
    goes in the next one, so a burst of requests costs a few commits, not one each."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime]):
        self._db, self._clock = db, clock
        self._on_commit: list[Callable[[], None]] = []
        self._queue: queue.SimpleQueue[tuple[tuple[str, str, dict], Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="slack-inbox-writer")
        self._thread.start()

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` after each commit of new requests (wakes the dispatcher)."""
        self._on_commit.append(callback)

    async def put(self, lane: str, body: str, headers: dict) -> None:
        """Returns once the request is committed; raises the database's error when it could not be."""
        await asyncio.wrap_future(self._submit(lane, body, headers))

    def put_now(self, lane: str, body: str, headers: dict) -> None:
        """`put` for a thread that may wait (Socket Mode's)."""
        self._submit(lane, body, headers).result()

    def _submit(self, lane: str, body: str, headers: dict) -> Future:
        done: Future = Future()
        self._queue.put(((lane, body, headers), done))
        return done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # close after this batch
                    break
                batch.append(nxt)
            try:
                with self._db.session() as session:
                    inbox.record(session, [request for request, _ in batch], now=self._clock())
            except Exception as exc:  # noqa: BLE001 - each waiting request answers with it (503 when the db is down)
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for _, done in batch:
                done.set_result(None)
            for callback in self._on_commit:
                callback()


class SlackReceiver:
    """The door of `/slack/events`: every request is checked here before Bolt or the inbox sees it.

    A request must carry Slack's signature over its body (401 otherwise: a timestamp that is not unix seconds or a
    signature with odd characters is simply not Slack's), be a payload Bolt can read with ids shaped as Slack's
    (400), and come from the workspace and app Rehearse is installed in (403). Then what the inbox takes is stored
    and answered 200; `take` returns None for what Bolt must answer now. It reads the body itself
    (`bot.slack.payloads`, faster than Bolt's reading for a click).
    """

    def __init__(self, writer: InboxWriter, listened: Listened, signing_secret: str,
                 installed: InstalledApp | None = None):
        self._writer, self._listened, self._installed = writer, listened, installed
        self._secret = signing_secret.encode()

    async def take(self, raw: bytes, headers: Headers) -> Response | None:
        if b"ssl_check=1" in raw and _ssl_check(raw, headers):
            return Response(status_code=200)  # Slack's certificate check is unsigned: 200, as Bolt answers it
        if not self.signed(raw, headers):
            return JSONResponse({"error": "invalid request"}, status_code=401)
        try:
            body = raw.decode("utf-8")
            payload = read_body(body, headers.get("content-type"))
            where = build_context(BoltContext(), payload)  # Bolt's own reading of the ids, as BoltRequest does it
        except UNREADABLE:
            return _refused(400, "not a Slack payload: Bolt cannot read it")
        # A click's JSON and a command's text arrive percent-encoded: NUL and `\ud800` are looked for once decoded.
        decoded = unquote_plus(body) if "%" in body else body
        if "\x00" in decoded or (UNSTORABLE_ESCAPE.search(decoded) and unstorable_text(payload)):
            return _refused(400, "not a Slack payload: it holds a NUL character or half of a UTF-16 surrogate pair, "
                                 "which no database stores")
        if problem := odd_shape(payload, where):
            return _refused(400, problem)
        installed = self._installed.get() if self._installed is not None else None
        if installed and (refusal := installed.refusal(team_id=where.team_id, enterprise_id=where.enterprise_id,
                                                       app_id=payload.get("api_app_id"))):
            return _refused(403, refusal)
        lane = lane_for(payload, self._listened, where)
        if lane is None:
            return None
        if self._listened.ignores(payload):
            return Response(status_code=200)  # the bot's own posts, edits: nothing to store, nothing to do
        kept = {k: headers[k] for k in KEPT_HEADERS if headers.get(k)}
        if request_id := context().get("request_id"):
            kept[REQUEST_ID_HEADER] = request_id
        await self._writer.put(lane, body, kept)
        return Response(status_code=200)

    def signed(self, raw: bytes, headers: Headers) -> bool:
        """Slack's v0 signature, `v0=` and the hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`, made in the last
        5 minutes. Computed over the raw bytes here (slack_sdk's verifier decodes the body first and fails on one
        that is not UTF-8), only for a timestamp of unix seconds, and compared in constant time."""
        timestamp, signature = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
        if not (timestamp and signature and len(timestamp) <= 12 and timestamp.isascii() and timestamp.isdigit()
                and abs(time.time() - int(timestamp)) <= MAX_AGE_S):
            return False
        expected = "v0=" + hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass"))


# The parts of a payload Bolt reads without checking their type (its listener matchers, its readers of ids, its
# warning about a request nothing listens to), and what Slack sends there; a list holds objects.
PARTS: dict[str, tuple[type, ...]] = {
    "event": (dict,), "view": (dict,), "actions": (list,), "container": (dict,), "message": (dict,),
    "channel": (dict,), "user": (dict,), "team": (dict, str, type(None)), "enterprise": (dict, str, type(None)),
    "authorizations": (list,), "response_urls": (list,), "state": (dict,)}


def odd_shape(payload: object, where: BoltContext) -> str | None:
    """Why a payload is not one Slack sends, judged by what Bolt and every listener read first: an object; an
    event, a click's actions, a submission's view as Slack shapes them; the ids Bolt reads shaped as Slack's ids;
    and a person for a click, a submission or a command."""
    if not isinstance(payload, dict):
        return "not a Slack payload: expected an object"
    for part, shapes in PARTS.items():
        value = payload.get(part, ...)
        if value is not ... and not (isinstance(value, shapes) and (
                not isinstance(value, list) or all(isinstance(item, dict) for item in value))):
            return f"not a Slack payload: {part} is not shaped as Slack sends it"
    kind = payload.get("type")
    if kind == "event_callback" and not (_has_text(payload.get("event"), "type")
                                         and isinstance(payload.get("event_id"), str)):
        return "not a Slack payload: an event callback without its event"
    if kind == "block_actions" and not (isinstance(payload.get("actions"), list) and payload["actions"]
                                        and all(_has_text(a, "action_id") for a in payload["actions"])):
        return "not a Slack payload: a click without its actions"
    if kind in ("view_submission", "view_closed") and not _has_text(payload.get("view"), "callback_id"):
        return "not a Slack payload: a submission without its view"
    if "command" in payload and not isinstance(payload["command"], str):
        return "not a Slack payload: a command that is not text"
    for name in ("user_id", "team_id", "enterprise_id", "channel_id", "actor_user_id", "actor_team_id"):
        value = where.get(name)
        if value is not None and not (isinstance(value, str) and SLACK_ID.fullmatch(value)):
            return f"not a Slack payload: {name.removesuffix('_id')} is not a Slack id"
    if (payload.get("type") in ("block_actions", "view_submission", "view_closed") or "command" in payload) \
            and where.user_id is None:
        return "not a Slack payload: no user"
    return None


def _ssl_check(raw: bytes, headers: Headers) -> bool:
    """Slack's certificate check (`ssl_check=1`), read as Bolt reads it: Bolt answers it before anything else."""
    try:
        payload = read_body(raw.decode("utf-8"), headers.get("content-type"))
    except UNREADABLE:
        return False
    return isinstance(payload, dict) and payload.get("ssl_check") == "1"


def _has_text(part: object, key: str) -> bool:
    """What Bolt's listener matchers read first: `part` is an object with text at `key`."""
    return isinstance(part, dict) and isinstance(part.get(key), str)


def _refused(status: int, message: str) -> Response:
    log.warning("refused a request to /slack/events (%d): %s", status, message)
    return JSONResponse({"error": message}, status_code=status)


class SocketModeInbox(SocketModeHandler):
    """Socket Mode with the Slack inbox: what the inbox takes over HTTP (events and clicks a listener handles after
    the ack) is stored and acknowledged here too, then handled by the dispatcher as over HTTP: in order per
    conversation, and again if its worker dies. Commands, modals and clicks that open one go to Bolt, as always.
    """

    def __init__(self, app: App, app_token: str, *, writer: InboxWriter, listened: Listened):
        super().__init__(app, app_token)
        self._writer, self._listened = writer, listened

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        payload = req.payload
        try:
            lane = lane_for(payload, self._listened) if isinstance(payload, dict) else None
        except UNREADABLE:
            lane = None  # Bolt's own reading of it tells what is wrong
        if lane is None:
            super().handle(client, req)
            return
        if not self._listened.ignores(payload):
            headers = {"content-type": "application/json", **(build_headers(req) or {})}
            self._writer.put_now(lane, json.dumps(payload), headers)  # raises: no ack, so Slack sends it again
        client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


class InboxDispatcher:
    """Hands stored requests to Bolt's listeners on a pool of threads, a lane's requests one at a time, oldest
    first; deletes each once its listener has run and the work it started (`Coach.run_later`: the buyer's reply,
    the grade) is done. Meanwhile the request keeps its lane and its lease is renewed; if the worker dies, the
    lease lapses and the request is handled again (the roleplay picks up what it still owes). A listener that
    failed because the database is away leaves its request to be taken again when the lease lapses; any other
    failure is logged (by the listener's error handler) and the request is done: running a bug again does not fix
    it."""

    def __init__(self, db: Database, bolt: App, *, threads: int, clock: Callable[[], datetime], sweep_s: float):
        self._db, self._bolt, self._clock = db, bolt, clock
        self._sweep_s = min(sweep_s, LEASE.total_seconds() / 4)  # a working request's lease is renewed in time
        self._threads = threads
        self._pool = ContextThreadPool(threads, thread_name_prefix="slack-inbox")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._finished: list[Claim] = []
        self._working: dict[Claim, datetime] = {}  # requests whose started work runs on: when their lease ends
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._loop: threading.Thread | None = None
        self._database_down = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._loop = threading.Thread(target=self._run, daemon=True, name="slack-inbox")
        self._loop.start()

    def stop(self, *, then: Callable[[], None] = lambda: None) -> None:
        """Take nothing more, let the listeners running finish, call `then` (which lets the work they started
        finish) while renewing their leases, and delete what was handled."""
        self._stopping.set()
        self._wake.set()
        if self._loop is not None:
            self._loop.join(timeout=30)
        self._pool.shutdown(wait=True)
        draining = threading.Thread(target=then, name="slack-inbox-drain")
        draining.start()
        while True:
            draining.join(timeout=1)
            try:
                self.dispatch_due(claim=False)
            except DATABASE_DOWN:
                pass  # their leases lapse and they are handled again
            if not draining.is_alive():
                return

    def dispatch_due(self, *, claim: bool = True) -> int:
        """Delete what was handled, renew the leases of requests whose work runs on, then hand the next requests
        to the pool; returns how many it took."""
        now = self._clock()
        with self._lock:
            finished, self._finished = self._finished, []
            free = self._threads - self._in_flight if claim else 0
            renew = [c for c, until in self._working.items() if until - now < LEASE / 2]
        rows, held = [], set()
        if not finished and not free and not renew:
            return 0  # nothing to delete, renew or hand to a thread: no transaction
        try:
            with self._db.session() as session:
                if finished:
                    inbox.handled(session, finished)
                if renew:
                    held = inbox.renew(session, renew, until=now + LEASE)
                if free > 0:
                    rows = inbox.claim(session, now=now, lease=LEASE, limit=free)
        except BaseException:
            with self._lock:
                self._finished[:0] = finished  # deleted with the next sweep that reaches the database
            raise
        with self._lock:
            for c in renew:
                if c not in self._working:
                    continue
                if c in held:
                    self._working[c] = now + LEASE
                else:  # taken again by another worker (this one was away past the lease): it finishes it
                    log.warning("a Slack request this worker was still handling was taken by another worker")
                    del self._working[c]
        for row in rows:
            if row.attempts > GIVE_UP_AFTER:
                log.error("dropped a Slack request (lane %s, received %s) after %d attempts: its worker died each "
                          "time", row.lane, row.received_at.isoformat(), row.attempts - 1)
                self._done((row.id, row.attempts))
                continue
            with self._lock:
                self._in_flight += 1
            self._pool.submit(self._handle, (row.id, row.attempts), row.body, row.headers, row.lease_until)
        return len(rows)

    def _handle(self, claim: Claim, body: str, headers: dict, lease_until: datetime) -> None:
        try:
            request_id = headers.get(REQUEST_ID_HEADER)
            with bound(request_id=request_id, path="/slack/events") if request_id else bound(), \
                    failures_noted() as failures, work_started() as started:
                try:
                    self._bolt.dispatch(checked_request(body, headers))
                except Exception as error:  # noqa: BLE001 - Bolt itself failed: logged, and judged as a listener's
                    log.error("Bolt failed on a stored Slack request: %s", error, exc_info=error)
                    failures.append(error)
            if started:
                self._when_done(claim, lease_until, started, failures)  # the thread is free; the lane waits
            else:
                self._settle(claim, failures)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._wake.set()

    def _when_done(self, claim: Claim, lease_until: datetime, started: list[Future],
                   failures: list[BaseException]) -> None:
        """Settle the request once every piece of work it started has ended (a failure counts as a listener's);
        until then the sweeps renew its lease."""
        with self._lock:
            self._working[claim] = lease_until
        left = [len(started)]

        def ended(future: Future) -> None:
            if (error := future.exception()) is not None:
                failures.append(error)
            with self._lock:
                left[0] -= 1
                if left[0]:
                    return
                self._working.pop(claim, None)
            self._settle(claim, failures)

        for future in started:
            future.add_done_callback(ended)

    def _settle(self, claim: Claim, failures: list[BaseException]) -> None:
        if any(isinstance(f, DATABASE_DOWN) for f in failures):
            log.warning("a stored Slack request waits for the database; it is handled again in %d s",
                        LEASE.total_seconds())
            return
        self._done(claim)

    def _done(self, claim: Claim) -> None:
        with self._lock:
            self._finished.append(claim)
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=self._sweep_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.dispatch_due()
            except DATABASE_DOWN as exc:
                if not self._database_down:
                    log.error("Slack inbox paused: database unavailable (%s)", type(getattr(exc, "orig", exc)).__name__)
                self._database_down = True
                continue
            except Exception:
                log.exception("Slack inbox sweep failed")
                continue
            if self._database_down:
                log.info("Slack inbox resumed")
                self._database_down = False
