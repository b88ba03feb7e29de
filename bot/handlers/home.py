"""App Home and app lifecycle events."""

from __future__ import annotations

import logging

from slack_bolt import App

from bot.coach import Coach
from bot.nudges import home, practice
from bot.slack import ids, installation
from bot.slack.payloads import OddPayload, id_at, text_at

log = logging.getLogger(__name__)


def home_opened(event, coach: Coach) -> None:
    if event.get("tab") == "home":
        home.publish_home(coach, user_id=id_at(event, "user"))


def start_from_home(ack, body, coach: Coach) -> None:
    ack()
    practice.start_nudge_from_home(coach, user_id=body["user"]["id"],
                                   nudge_id=ids.clicked_id(body))


def turn_page(ack, body, coach: Coach) -> None:
    ack()
    page = text_at(body, "actions", 0, "value", max_length=6)
    if not (page.isascii() and page.isdigit()):
        raise OddPayload(f"not a page of the Home tab: {page!r}")
    home.publish_home(coach, user_id=body["user"]["id"], page=int(page))


def register(app: App) -> None:
    watch = installation.RemovalWatch()

    def app_removed(body, event, coach: Coach) -> None:
        """The outbox holds its rows from now on (see `bot/slack/installation.py`)."""
        installation.note_removal(coach.db, team_id=body.get("team_id") or "workspace", event=event,
                                  now=coach.clock())
        watch.changed()

    def slack_is_back(body, client, context, next) -> None:  # noqa: A002 - Bolt injects `next` by name
        """Any other signed request from Slack while the app is marked removed: check (off the ack path) that Slack
        answers our token again, and if so let the outbox send."""
        coach: Coach = context["coach"]
        event = body.get("event") if isinstance(body, dict) else None
        removal = isinstance(event, dict) and event.get("type") in installation.REMOVAL_EVENTS
        if not removal and watch.time_to_ask_slack(coach.db):
            coach.run_later(lambda: installation.resume_if_slack_answers(coach.db, client, now=coach.clock())
                            and watch.changed())
        next()

    app.use(slack_is_back)
    app.event("app_home_opened")(home_opened)
    app.action(ids.HOME_START)(start_from_home)
    app.action(ids.HOME_PAGE)(turn_page)
    app.event("app_uninstalled")(app_removed)
    app.event("tokens_revoked")(app_removed)
