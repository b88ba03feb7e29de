"""App Home and app lifecycle events."""

from __future__ import annotations

import logging

from slack_bolt import App

from bot.coach import Coach
from bot.nudges import progress

log = logging.getLogger(__name__)


def home_opened(event, coach: Coach) -> None:
    if event.get("tab") == "home":
        progress.publish_home(coach, user_id=event["user"])


def app_removed(event) -> None:
    log.warning("Slack says the app was removed or its tokens revoked: %s", event.get("type"))


def register(app: App) -> None:
    app.event("app_home_opened")(home_opened)
    app.event("app_uninstalled")(app_removed)
    app.event("tokens_revoked")(app_removed)
