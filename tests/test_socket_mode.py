"""With SLACK_APP_TOKEN set, Slack traffic uses Socket Mode and the webhook server still runs."""

from __future__ import annotations

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
