"""App Home and app lifecycle events."""

from __future__ import annotations

import logging

from slack_bolt import App

from bot.coach import Coach
from bot.nudges import home, practice
from bot.slack import ids

log = logging.getLogger(__name__)


def home_opened(event, coach: Coach) -> None:
    if event.get("tab") == "home":
        home.publish_home(coach, user_id=event["user"])


def start_from_home(ack, body, coach: Coach) -> None:
    ack()
    practice.start_nudge_from_home(coach, user_id=body["user"]["id"], nudge_id=int(body["actions"][0]["value"]))


def turn_page(ack, body, coach: Coach) -> None:
    ack()
    home.publish_home(coach, user_id=body["user"]["id"], page=int(body["actions"][0]["value"]))


def app_removed(event) -> None:
    log.warning("Slack says the app was removed or its tokens revoked: %s", event.get("type"))


def register(app: App) -> None:
    app.event("app_home_opened")(home_opened)
    app.action(ids.HOME_START)(start_from_home)
    app.action(ids.HOME_PAGE)(turn_page)
    app.event("app_uninstalled")(app_removed)
    app.event("tokens_revoked")(app_removed)
