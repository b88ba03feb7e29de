"""Fixtures: a fresh database (SQLite, or PostgreSQL with TEST_DATABASE_URL), the Slack stand-in, the app."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from bot.app import BackgroundServer, Rehearse, create_app
from bot.config import parse_config
from bot.demo.driver import SlackDriver, webhook_headers
from bot.demo.slack_standin import SlackStandIn
from bot.settings import Settings
from storage.db import Database

MANAGER, REP, OUTSIDER, EMAIL_REP = "U0DANA", "U0ALEX", "U0EVE", "U0SAM"
APPROVALS = "C0APPROVALS"
SIGNING_SECRET, WEBHOOK_SECRET = "test-signing-secret", "test-webhook-secret"

TEST_CONFIG = {
    "teams": [{"id": "west", "name": "West AEs", "managers": [MANAGER], "approvals_channel": APPROVALS,
               "timezone": "America/Los_Angeles", "reps": [REP, "sam@example.com"]}],
    "criteria": {
        "objection_handling": {"label": "Objection handling", "weight": 3, "threshold": 60,
                               "consecutive_calls": 3, "scenario": "price-objection"},
        "discovery": {"weight": 2, "scenario": "discovery-impact"},
    },
    # Tests run at any hour: no quiet hours unless a test sets them.
    "budget": {"working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "working_hours": None},
}
USERS = [
    {"id": MANAGER, "name": "dana", "real_name": "Dana Reyes", "email": "dana@example.com"},
    {"id": REP, "name": "alex", "real_name": "Alex Kim", "email": "alex@example.com"},
    {"id": OUTSIDER, "name": "eve", "real_name": "Eve Park", "email": "eve@example.com"},
    {"id": EMAIL_REP, "name": "sam", "real_name": "Sam Lee", "email": "sam@example.com"},
]


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """CLI tests install Rehearse's log handler on the captured stderr; a thread still running after the test
    must not write to that closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path / 'rehearse.db'}"
        return
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The migrated database alone, without the app."""
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def assert_valid_slack_ui(fake: SlackStandIn) -> None:
    """Everything the bot posted is Block Kit Slack would accept: slack_sdk's models validate the limits."""
    from slack_sdk.models.blocks import Block
    from slack_sdk.models.views import View

    for message in fake.messages:
        assert message.get("text") or message.get("files"), f"message without a text fallback: {message}"
        blocks = message.get("blocks") or []
        assert len(blocks) <= 50, f"{len(blocks)} blocks in one message"
        for block in Block.parse_all(blocks):
            block.to_dict()  # raises SlackObjectFormationError past a limit
    for view in [*fake.modals, *fake.views.values()]:
        fields = {k: v for k, v in view.items() if k not in ("id", "team_id")}
        View(**fields).to_dict()


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(users=[dict(u) for u in USERS]) as fake:
        yield fake
        assert_valid_slack_ui(fake)


def scored_call(call_id: str, score: float, *, rep: str = REP, days_ago: float = 1, quote: str | None = None,
                criterion: str = "objection_handling") -> dict:
    started = datetime.now(UTC) - timedelta(days=days_ago)
    evidence = [{"quote": quote, "at_s": 754}] if quote else []
    return {"call_id": call_id, "source": "generic", "rep": rep, "started_at": started.isoformat(),
            "duration_s": 1800, "title": f"Acme - {call_id}", "recording_url": f"https://ci.example.com/{call_id}",
            "scores": [{"criterion": criterion, "score": score, "max": 100, "evidence": evidence}]}


def low_calls(rep: str = REP, prefix: str = "c") -> list[dict]:
    """Three calls under the 60% threshold: enough for a signal."""
    return [scored_call(f"{prefix}-{i}", s, rep=rep, days_ago=5 - i, quote=f"I guess we could knock {i}0% off")
            for i, s in enumerate((42, 51, 38), start=1)]


@dataclass
class Harness:
    app: Rehearse
    url: str
    http: httpx.Client
    slack: SlackDriver
    standin: SlackStandIn

    def send_calls(self, body: object, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None,
                   raw: bytes | None = None) -> httpx.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        return self.http.post(f"{self.url}/webhooks/calls", content=data,
                              headers=webhook_headers(secret, data, timestamp))

    def approval_message(self) -> dict:
        return self.standin.wait_for(lambda: next(iter(self.standin.messages_in(APPROVALS)), None))

    def invite(self, user: str = REP, index: int = 0) -> dict:
        return self.standin.wait_for(
            lambda: (lambda ms: ms[index] if len(ms) > index else None)(
                [m for m in self.standin.messages_in(user) if not m.get("thread_ts") and m.get("blocks")]))

    def thread(self, message: dict) -> list[dict]:
        return self.standin.messages_in(message["channel"], thread_ts=message["ts"])

    def practise(self, invite: dict, lines: list[str]) -> dict:
        """Reply line by line in the invite's practice thread until the grade is posted; returns the grade."""
        for line in [*lines, "done"]:
            before = len(self.thread(invite))
            self.slack.dm(user=REP, channel=invite["channel"], text=line, thread_ts=invite["ts"])
            self.standin.wait_for(lambda b=before: len(self.thread(invite)) > b and
                                  "typing" not in self.thread(invite)[-1]["text"])
            if "Score" in self.thread(invite)[-1]["text"]:
                return self.thread(invite)[-1]
        raise AssertionError("no grade after the last line")

    def modal(self, index: int = 0) -> dict:
        return self.standin.wait_for(lambda: self.standin.modals[index] if len(self.standin.modals) > index else None)

    def skip(self, approval: dict, *, user: str = MANAGER, reason: str | None = None) -> None:
        """Click Skip and submit the modal it opens."""
        from bot.slack import ids

        opened = len(self.standin.modals)
        assert self.slack.click(approval, ids.SKIP, user=user).status_code == 200
        view = self.modal(opened)
        typed = {(ids.REASON_BLOCK, ids.REASON_INPUT): reason}
        assert self.slack.submit(view, user=user, values=typed).status_code == 200


def make_settings(database_url: str, standin: SlackStandIn) -> Settings:
    return Settings(SLACK_BOT_TOKEN=standin.bot_token, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                    SLACK_API_URL=standin.base_url, DATABASE_URL=database_url,
                    REHEARSE_WEBHOOK_SECRET=WEBHOOK_SECRET, REHEARSE_OUTBOX_SWEEP_SECONDS=0.2)


@pytest.fixture
def start_app(database_url: str, standin: SlackStandIn) -> Iterator:
    """Start Rehearse (web server, sender, jobs) against the stand-in; call again for a restart."""
    running: list[tuple[Rehearse, BackgroundServer, httpx.Client]] = []

    def start(*, config: dict | None = None, background: bool = True, buyer=None, clock=None) -> Harness:  # noqa: ANN001
        app = create_app(make_settings(database_url, standin), config=parse_config(config or TEST_CONFIG),
                         buyer=buyer, **({"clock": clock} if clock else {}))
        if background:
            app.start()
        server = BackgroundServer(app).__enter__()
        http = httpx.Client(timeout=10)
        running.append((app, server, http))
        return Harness(app, server.url, http, SlackDriver(server.url, SIGNING_SECRET, http), standin)

    yield start
    for app, server, http in reversed(running):
        http.close()
        server.__exit__(None, None, None)
        app.stop()


@pytest.fixture
def harness(start_app) -> Harness:
    return start_app()
