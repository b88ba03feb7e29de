"""The app removed from Slack (`app_uninstalled`, the bot's `tokens_revoked`) and back again.

While removed, the outbox sender sends nothing (see `OutboxSender.drain`): rows stay pending, nothing is lost.
Rehearse counts the app as back once Slack answers `auth.test` with its token: at start, or when a request from
Slack arrives again after the reinstall.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from storage import queries
from storage.db import Database
from storage.installation import app_removed, record_back, record_removed

log = logging.getLogger(__name__)
REMOVAL_EVENTS = ("app_uninstalled", "tokens_revoked")


@dataclass(frozen=True)
class Installed:
    """Where Rehearse is installed, as Slack's `auth.test` answers for its bot token."""

    team_id: str | None
    enterprise_id: str | None = None
    app_id: str | None = None
    org_wide: bool = False

    def refusal(self, *, team_id: str | None, enterprise_id: str | None, app_id: object) -> str | None:
        """Why a signed request is not for this installation, or None. A request names its workspace as Bolt reads
        it (`team.id`, or the event's `authorizations`) and its app (`api_app_id`); what it leaves out is not
        held against it."""
        if app_id is not None and self.app_id and app_id != self.app_id:
            return "the request is for another Slack app"
        if self.org_wide:
            if enterprise_id is not None and enterprise_id != self.enterprise_id:
                return "the request is from another Slack organization"
        elif team_id is not None and self.team_id and team_id != self.team_id:
            return "the request is from another Slack workspace"
        return None


class InstalledApp:
    """`Installed`, asked of Slack (`auth.test`) in a thread of its own, never on a request's path: until Slack has
    answered, requests are checked for their signature and the shape of their ids only. While Slack does not
    answer, it is asked again at most every `retry_s`."""

    def __init__(self, client: WebClient, retry_s: float = 30.0):
        self._client, self._retry_s = client, retry_s
        self._lock = threading.Lock()
        self._known: Installed | None = None
        self._next_try = 0.0

    def get(self) -> Installed | None:
        """What Slack answered, or None (and, when it is time, a question to Slack in the background)."""
        if self._known is None and time.monotonic() >= self._next_try:
            with self._lock:
                if time.monotonic() >= self._next_try:
                    self._next_try = time.monotonic() + self._retry_s
                    threading.Thread(target=self._ask, daemon=True, name="auth-test").start()
        return self._known

    def _ask(self) -> None:
        try:
            answer = self._client.auth_test()
        except (SlackApiError, SlackClientError, OSError) as exc:
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
            log.warning("auth.test did not answer (%s): the workspace of Slack requests is checked later", error)
            return
        self._known = Installed(team_id=answer.get("team_id"), enterprise_id=answer.get("enterprise_id"),
                                app_id=answer.get("app_id"), org_wide=bool(answer.get("is_enterprise_install")))


def removes_the_bot(event: dict) -> bool:
    """`app_uninstalled` always; `tokens_revoked` only when the bot's token is among those revoked (a person
    revoking their own user token leaves the bot working)."""
    if event.get("type") == "app_uninstalled":
        return True
    return event.get("type") == "tokens_revoked" and bool((event.get("tokens") or {}).get("bot"))


def note_removal(db: Database, *, team_id: str, event: dict, now: datetime) -> bool:
    """Record the removal (and an audit entry); False when the event leaves the bot working."""
    if not removes_the_bot(event):
        log.info("Slack revoked user tokens only; the bot keeps working")
        return False
    with db.session() as session:
        record_removed(session, team_id=team_id, reason=event["type"], now=now)
        queries.audit(session, at=now, actor="slack", action=event["type"], subject=f"workspace:{team_id}")
    log.warning("Slack says the app was removed (%s) from %s: sending nothing until Slack answers again",
                event["type"], team_id)
    return True


def is_removed(db: Database) -> bool:
    with db.reading() as session:
        return app_removed(session)


class RemovalWatch:
    """The removed flag as one process sees it. The middleware asks on every request from Slack, so the database is
    read at most once per `ttl` seconds, and while removed Slack is asked (`auth.test`) at most once per `ttl`."""

    def __init__(self, ttl: float = 5.0):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._removed = False
        self._read_until = 0.0
        self._asked_until = 0.0

    def time_to_ask_slack(self, db: Database) -> bool:
        now = time.monotonic()
        with self._lock:
            if now >= self._read_until:
                self._removed, self._read_until = is_removed(db), now + self.ttl
            if not self._removed or now < self._asked_until:
                return False
            self._asked_until = now + self.ttl
            return True

    def changed(self) -> None:
        """Removed or back: read the database again on the next request."""
        with self._lock:
            self._read_until = self._asked_until = 0.0


def resume_if_slack_answers(db: Database, client: WebClient, *, now: datetime) -> bool:
    """When the app is marked removed, ask Slack `auth.test`; if it answers, the outbox sends again. True when
    the app is (now) active."""
    if not is_removed(db):
        return True
    try:
        client.auth_test()
    except (SlackApiError, SlackClientError, OSError) as exc:
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else exc
        log.warning("the app is still removed from Slack (auth.test: %s); the outbox waits", error)
        return False
    with db.session() as session:
        if record_back(session, now=now):
            queries.audit(session, at=now, actor="slack", action="app_back", subject="workspace")
    log.warning("Slack answers again: the outbox sends what waited")
    return True
