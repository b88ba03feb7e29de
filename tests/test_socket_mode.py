"""With SLACK_APP_TOKEN set, Slack traffic uses Socket Mode and the webhook server still runs."""

from __future__ import annotations

import json
import time

import pytest
from slack_sdk.errors import SlackApiError
from starlette.testclient import TestClient

from bot.app import create_app
from bot.config import parse_config
from tests.conftest import TEST_CONFIG, make_settings


def test_socket_mode_opens_a_connection_with_the_app_token_and_keeps_the_webhook(database_url, standin):
    settings = make_settings(database_url, standin).model_copy(
        update={"slack_app_token": "xapp-1-A0-socket", "slack_signing_secret": None})
    assert settings.serve_problems() == []
    app = create_app(settings, config=parse_config(TEST_CONFIG))
    try:
        with TestClient(app.web) as client:
            assert client.post("/slack/events", content=b"{}").status_code == 404, "no public Slack endpoint"
            answer = client.post("/webhooks/calls", content=b"{}")
            assert answer.status_code == 401, "the webhook is served and still checks its signature"
        with pytest.raises(SlackApiError):  # the stand-in has no WebSocket server to hand out
            app.start()
        assert standin.calls_to("apps.connections.open"), "Socket Mode asked SLACK_API_URL for a WebSocket URL"
    finally:
        app.stop()


@pytest.fixture
def over_socket_mode(database_url, standin):
    """Rehearse connected over Socket Mode to a fake of Slack's WebSocket, with a buyer that takes 0.5 s."""
    from tests.fake_socket_mode import FakeSocketMode
    from tests.test_practice_lab import SlowBuyer

    with FakeSocketMode() as socket_mode:
        standin.socket_mode_url = socket_mode.url
        settings = make_settings(database_url, standin).model_copy(
            update={"slack_app_token": "xapp-1-A0-socket", "slack_signing_secret": None})
        app = create_app(settings, config=parse_config(TEST_CONFIG), buyer=SlowBuyer(0.5))
        app.start()
        try:
            yield app, socket_mode
        finally:
            app.stop()


def test_over_socket_mode_replies_are_acknowledged_at_once_and_answered_in_order_once_each(over_socket_mode,
                                                                                         standin):
    """Socket Mode goes through the Slack inbox as HTTP does: a DM reply is acknowledged once stored, and a
    conversation's replies are answered one after the other; the bot's own posts are acknowledged, not stored."""
    from sqlmodel import select

    from storage.models import SlackInboxItem
    from tests.conftest import REP

    app, socket_mode = over_socket_mode
    command = socket_mode.send("slash_commands", {"command": "/drill", "text": "price-objection", "user_id": REP,
                                                  "channel_id": "D0ALEX", "team_id": "T0REHEARSE",
                                                  "trigger_id": "1.2.3", "response_url": "https://example.com/r"})
    socket_mode.wait_for_ack(command)
    assert "starting in your DM" in socket_mode.answers[command]["text"], "a command's answer is Bolt's, as ever"
    drill = standin.wait_for(lambda: next((m for m in standin.messages_in(REP) if not m.get("thread_ts")), None))
    thread = lambda: standin.messages_in(drill["channel"], thread_ts=drill["ts"])  # noqa: E731
    standin.wait_for(lambda: len(thread()) >= 2)

    questions = ("What is the budget compared against?", "And who else weighs in?")
    sent = [socket_mode.event({"type": "message", "channel_type": "im", "channel": drill["channel"], "user": REP,
                               "text": text, "ts": f"{time.time():.6f}", "thread_ts": drill["ts"]})
            for text in questions]
    echo = socket_mode.event({"type": "message", "channel_type": "im", "channel": drill["channel"],
                              "user": "U0BOT", "bot_id": "B0REHEARSE", "text": "_Dana Whitfield is typing…_",
                              "ts": f"{time.time():.6f}", "thread_ts": drill["ts"]})
    assert max(socket_mode.wait_for_ack(e) for e in (*sent, echo)) < 0.5, "acknowledged before the buyer answers"
    with app.coach.db.inbox.reading() as session:  # the echo would wait behind both replies, had it been stored
        waiting = [json.loads(row.body)["event"]["text"] for row in session.exec(select(SlackInboxItem))]
    assert waiting and set(waiting) <= set(questions), "the replies wait in the inbox, the echo is not there"
    standin.wait_for(lambda: len(thread()) == 4 and all("typing" not in m["text"] for m in thread()), timeout=10)
    assert [m["text"] for m in thread()[2:]] == [f"Dana Whitfield: (answering) {q}" for q in questions]
