"""Slash commands: `/drill [skill]` and `/progress`."""

from __future__ import annotations

from slack_bolt import App

from bot.coach import Coach
from bot.nudges import drills, progress
from bot.slack import ids


def drill(ack, command, coach: Coach) -> None:
    ack(drills.offer_drill(coach, user_id=command["user_id"], text=command.get("text", "")))


def show_progress(ack, command, coach: Coach) -> None:
    ack(progress.progress_text(coach, user_id=command["user_id"]))


def register(app: App) -> None:
    app.command(ids.DRILL_COMMAND)(drill)
    app.command(ids.PROGRESS_COMMAND)(show_progress)
