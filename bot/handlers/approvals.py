"""Approve / Skip clicks on the approval message."""

from __future__ import annotations

from slack_bolt import App

from bot.coach import Coach
from bot.nudges import approval
from bot.slack import ids


def _decide(body: dict, coach: Coach, *, approve: bool) -> None:
    action = body["actions"][0]
    approval.decide(
        coach, nudge_id=int(action["value"]), user_id=body["user"]["id"], approve=approve,
        channel=body["container"]["channel_id"], message_ts=body["container"]["message_ts"],
    )


def approve_nudge(ack, body, coach: Coach) -> None:
    ack()
    _decide(body, coach, approve=True)


def skip_nudge(ack, body, coach: Coach) -> None:
    ack()
    _decide(body, coach, approve=False)


def register(app: App) -> None:
    app.action(ids.APPROVE)(approve_nudge)
    app.action(ids.SKIP)(skip_nudge)
