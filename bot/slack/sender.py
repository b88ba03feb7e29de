"""The one outbox sender: delivers committed Slack writes in order, paced, retried, never twice."""

from __future__ import annotations

import base64
import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy.exc import InterfaceError, OperationalError

from bot.slack.pacing import ChannelPacer, MethodPacer
from bot.telemetry import about_outbox_row
from storage.db import Database
from storage.installation import app_removed, record_removed
from storage.models import OutboxMessage, OutboxStatus
from storage.outbox import ANSWER_BELOW, DELETE, POST, UPDATE, claim_due, enqueue, settle, still_mine

log = logging.getLogger(__name__)

# Errors that will not fix themselves by retrying: the row fails and the reason is kept.
PERMANENT_ERRORS = {
    "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
    "user_not_found", "cant_update_message", "message_not_found", "msg_too_long", "no_text",
    "missing_scope", "invalid_arguments", "user_disabled", "cannot_dm_bot",
}
# The bot's token stopped working (revoked, app removed, workspace gone): nothing is sent until Slack accepts it
# again, and the row waits rather than failing, as after `app_uninstalled` (the event may come after the error).
TOKEN_REFUSED = {"token_revoked", "invalid_auth", "account_inactive", "not_authed", "team_access_not_granted"}
MAX_ATTEMPTS = 8
UPLOAD = "files_upload_v2"  # an outbox row holding a file (base64) for WebClient.files_upload_v2
# Every post carries its outbox id as message metadata, so a post that may have reached Slack before the sender
# died (or before a 5xx or a timeout) is looked for in the channel before it is sent again.
METADATA_TYPE = "rehearse_outbox"
DATABASE_DOWN = (OperationalError, InterfaceError)


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter after a failed attempt: 1, 2, 4 ... 300 s, each between half and all of it,
    so rows that failed together (a Slack outage) do not all come back in the same second."""
    ceiling = min(300.0, 2.0 ** max(attempts - 1, 0))
    return timedelta(seconds=ceiling * (0.5 + 0.5 * (rng or random).random()))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxSender:
    """Sends due outbox rows; `drain()` runs until nothing is due. Safe to call from any thread."""

    def __init__(
        self,
        db: Database,
        client: WebClient,
        *,
        clock: Callable[[], datetime] = _utcnow,
        lease: timedelta = timedelta(seconds=120),
        pacer: ChannelPacer | None = None,
        on_failed: Callable[[OutboxMessage, str], None] | None = None,
        method_pacer: MethodPacer | None = None,
        linger: timedelta = timedelta(0),
    ):
        self.db = db
        self.client = client
        self.clock = clock
        self.lease = lease
        self.pacer = pacer or ChannelPacer()
        self.on_failed = on_failed
        # --- rate limits (fan-out benchmark): tier pacing per method, and `linger`: how far ahead a drain waits
        # for rows it deferred itself (pacing, Retry-After) instead of leaving them to the next sweep.
        self.method_pacer = method_pacer or MethodPacer()
        self.linger = linger
        self._deferred: list[datetime] = []  # a heap: when the rows this sender deferred come due
        # --- end rate limits
        self._lock = threading.Lock()
        self._again = threading.Event()
        self._stopping = threading.Event()
        self._database_down = False

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def request_drain(self) -> None:
        """Ask for another pass; a drain already running makes it before returning."""
        self._again.set()

    def stop(self) -> None:
        """Claim nothing more: a drain running finishes the batch it holds and returns (rows still due wait in the
        database for the next start; none is lost)."""
        self._stopping.set()
        self._again.set()

    def drain(self) -> int:
        """Send every due row; returns how many were sent. Concurrent calls collapse into one."""
        self._again.set()
        if not self._lock.acquire(blocking=False):
            return 0  # the running drain sees `_again` and loops once more
        sent = 0
        try:
            while self._again.is_set() and not self._stopping.is_set():
                self._again.clear()
                while not self._stopping.is_set() and (batch := self._claim()):
                    sent += sum(self._deliver(row) for row in batch)
                    self._again.clear()
                self._linger()
        except DATABASE_DOWN as exc:
            # Paused until the next sweep. A row claimed before the outage keeps its lease; once the lease lapses it
            # is claimed again and looked for in Slack before being sent again.
            if not self._database_down:
                self._database_down = True
                log.error("outbox: the database is unreachable; sending paused until it is back (%s)",
                          type(exc.orig).__name__ if getattr(exc, "orig", None) else type(exc).__name__)
        finally:
            self._lock.release()
        return sent

    def _linger(self) -> None:
        """If a row deferred by this drain comes due within `linger`, wait for it (a new commit wakes us sooner)."""
        now = self.clock()
        while self._deferred and self._deferred[0] <= now:
            heapq.heappop(self._deferred)  # come due: the claims just made took those rows
        soonest = min([*self._deferred[:1], *filter(None, [self.pacer.next_ready()])], default=None)
        if soonest is None or self.linger <= timedelta(0):
            return
        wait = soonest - now
        if wait <= self.linger:  # (+10 ms: waking a hair early would find nothing due and end the drain)
            self._again.wait(max(wait.total_seconds(), 0.0) + 0.01)
            self._again.set()

    def _claim(self) -> list[OutboxMessage]:
        with self.db.reading() as session:  # app uninstalled / bot token revoked: rows stay pending (security.md)
            if app_removed(session):
                return []
        with self.db.session() as session:
            now = self.clock()
            claimed = claim_due(session, now=now, lease=self.lease, paced=self.pacer.paced(now))
        if self._database_down:
            self._database_down = False
            log.warning("outbox: the database is back; sending resumed")
        return claimed

    @about_outbox_row  # its outbox id and nudge id on the log lines
    def _deliver(self, row: OutboxMessage) -> bool:
        now = self.clock()
        with self.db.session() as session:
            anchor = session.get(OutboxMessage, row.anchor_id) if row.anchor_id else None
        if anchor is not None and anchor.status != OutboxStatus.SENT:
            if anchor.status == OutboxStatus.FAILED:
                return self._finish(row, error=f"anchor message {anchor.id} failed: {anchor.error}")
            return self._retry(row, now + timedelta(seconds=1), attempt_used=False)
        method = row.method
        wait_until = self._pace_until(row, now)
        if wait_until is not None:
            if not self._may_answer_below(row, anchor, wait_until - now, now):
                return self._retry(row, wait_until, attempt_used=False)
            method = POST  # the edit would wait for Slack's edit budget: post the text below the placeholder
        with self.db.session() as session:
            if not still_mine(session, row, now=now, lease=self.lease):
                log.warning("outbox %s: claim lapsed and was taken over; not sending it again", row.id)
                return False

        payload = {key: value for key, value in row.payload.items() if not key.startswith("_")}
        if anchor is not None and row.method != UPLOAD:
            payload["channel"] = anchor.sent_channel
            if method != row.method:
                payload["thread_ts"] = row.payload[ANSWER_BELOW]
            else:
                payload["thread_ts" if row.method == POST else "ts"] = anchor.ts
        if method == POST:
            payload["metadata"] = {"event_type": METADATA_TYPE, "event_payload": {"outbox_id": row.id}}
            try:
                posted = self._find_posted(row, payload) if row.attempts > 1 else None
            except SlackApiError as exc:  # rate limited while checking: check again after Retry-After
                return self._failed_call(row, exc)
            if posted is not None:
                log.warning("outbox %s: already in Slack from an earlier attempt; not posting it again", row.id)
                return self._finish(row, channel=posted[0], ts=posted[1])
        try:
            if row.method == UPLOAD:  # a file (the digest chart): three Web API calls, made by slack_sdk
                response = self.client.files_upload_v2(
                    channel=anchor.sent_channel if anchor else row.channel, thread_ts=anchor.ts if anchor else None,
                    content=base64.b64decode(payload["png_b64"]), filename=payload["filename"], title=payload["title"])
            else:
                response = self.client.api_call(method, json=payload)
        except SlackApiError as exc:
            return self._failed_call(row, exc)
        except (SlackClientError, OSError) as exc:
            log.warning("outbox %s: %s failed to connect: %s", row.id, row.method, exc)
            return self._retry(row, now + self._backoff(row), error=str(exc))
        if row.channel and method == POST:
            self.pacer.spend(row.channel, self.clock())
        if method != row.method:
            return self._answered_below(row, anchor, ts=response.get("ts"), channel=response.get("channel"))
        return self._finish(row, ts=response.get("ts") or response.get("message_ts"),
                            channel=response.get("channel") or payload.get("channel"))

    def _may_answer_below(self, row: OutboxMessage, anchor: OutboxMessage | None, wait: timedelta,
                          now: datetime) -> bool:
        """An edit marked `answer_below` that Slack's edit budget holds up at all, in a channel where a post may go
        now. (Edits wait in one queue per method: even a short wait is a long one at the back of that queue.)"""
        return (row.method == UPDATE and ANSWER_BELOW in row.payload and anchor is not None
                and wait > timedelta(0) and not self.pacer.wait(row.channel, now))

    def _answered_below(self, row: OutboxMessage, placeholder: OutboxMessage, *, ts: str | None,
                        channel: str | None) -> bool:
        """The edit went out as a reply: record it, and delete the placeholder when Slack's budget allows (a delete
        does not queue in front of the channel's next edit, as a tidying edit would)."""
        with self.db.session() as session:
            if settle(session, row, status=OutboxStatus.SENT, ts=ts, sent_channel=channel, sent_at=self.clock()):
                enqueue(session, method=DELETE, channel=row.channel, anchor=placeholder, now=self.clock(),
                        payload={})
        log.info("outbox %s: Slack's edit budget is spent; answered below the placeholder instead", row.id)
        return True

    def _find_posted(self, row: OutboxMessage, payload: dict) -> tuple[str, str] | None:
        """(channel, ts) of this row's post if an earlier attempt reached Slack, found by its metadata.

        None when it is not there or cannot be checked (no history scope for the channel, an error): then the
        post is sent, and at worst the one message that was in flight appears twice. A 429 is raised, so the row
        waits out Retry-After and is checked again.
        """
        channel = payload["channel"]
        try:
            if channel.startswith(("U", "W")):  # a DM addressed to the person: history needs the conversation id
                channel = self.client.conversations_open(users=channel)["channel"]["id"]
            window = {"channel": channel, "include_all_metadata": True, "limit": 200,
                      "oldest": f"{row.created_at.replace(tzinfo=UTC).timestamp() - 300:.6f}"}
            if payload.get("thread_ts"):
                messages = self.client.conversations_replies(ts=payload["thread_ts"], **window)["messages"]
            else:
                messages = self.client.conversations_history(**window)["messages"]
        except (SlackApiError, SlackClientError, OSError) as exc:
            if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
                raise
            log.info("outbox %s: cannot check %s for an earlier attempt (%s); posting", row.id, channel, exc)
            return None
        for message in messages:
            metadata = message.get("metadata") or {}
            if (metadata.get("event_type") == METADATA_TYPE
                    and (metadata.get("event_payload") or {}).get("outbox_id") == row.id):
                return channel, message["ts"]
        return None

    def _failed_call(self, row: OutboxMessage, exc: SlackApiError) -> bool:
        error = exc.response.get("error", "unknown_error")
        if exc.response.status_code == 429 or error == "ratelimited":
            headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()}
            retry_after = int(headers.get("retry-after", 1))
            log.info("outbox %s: rate limited on %s, retrying in %ss", row.id, row.method, retry_after)
            self.method_pacer.hold(row.method, self.clock() + timedelta(seconds=retry_after))  # tiered methods only
            return self._retry(row, self.clock() + timedelta(seconds=retry_after), error=error, attempt_used=False)
        if error in TOKEN_REFUSED:
            log.error("outbox: Slack refused the bot token (%s); sending paused until Slack accepts it again", error)
            with self.db.session() as session:
                record_removed(session, team_id="(bot token)", reason=error, now=self.clock())
            return self._retry(row, self.clock(), error=error, attempt_used=False)
        if error in PERMANENT_ERRORS or row.attempts >= MAX_ATTEMPTS:
            # An edit of a message someone deleted in Slack has nothing left to edit: worth a line, not a page.
            gone = error == "message_not_found" and row.method in ("chat.update", "chat.delete")
            log.log(logging.WARNING if gone else logging.ERROR, "outbox %s: %s to %s failed for good: %s", row.id,
                    row.method, row.channel, error)
            return self._finish(row, error=error)
        return self._retry(row, self.clock() + self._backoff(row), error=error)

    def _pace_until(self, row: OutboxMessage, now: datetime) -> datetime | None:
        """When the row may go (None: now). Tiered methods take their token here; posts spend theirs once sent."""
        if row.method != POST:
            wait = self.method_pacer.reserve(row.method, now)
            return now + wait if wait else None
        if not row.channel:
            return None
        wait = self.pacer.wait(row.channel, now)
        return now + wait if wait else None

    def _backoff(self, row: OutboxMessage) -> timedelta:
        return retry_delay(row.attempts)

    def _retry(self, row: OutboxMessage, when: datetime, *, error: str | None = None,
               attempt_used: bool = True) -> bool:
        heapq.heappush(self._deferred, when)
        with self.db.session() as session:
            settle(session, row, status=OutboxStatus.PENDING, next_attempt_at=when, error=error or row.error,
                   attempts=row.attempts if attempt_used else row.attempts - 1)
        return False

    def _finish(self, row: OutboxMessage, *, ts: str | None = None, channel: str | None = None,
                error: str | None = None) -> bool:
        with self.db.session() as session:
            settled = settle(session, row, status=OutboxStatus.FAILED if error else OutboxStatus.SENT, error=error,
                             ts=ts, sent_channel=channel, sent_at=self.clock())
        if settled and error and self.on_failed is not None:
            self.on_failed(row, error)
        return error is None


def wait_until_sent(db: Database, sender: OutboxSender, timeout: float = 10.0) -> None:
    """Drain until no row is pending (for the demo and tests); raises TimeoutError otherwise."""
    from storage.outbox import pending_count

    deadline = time.monotonic() + timeout
    while True:
        sender.drain()
        with db.session() as session:
            if pending_count(session, due_by=datetime.now(UTC) + timedelta(seconds=5)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError("outbox still has unsent messages")
        time.sleep(0.05)
