"""Slash commands: `/drill [skill]` and `/progress`."""

from __future__ import annotations

from slack_bolt import App

from bot.coach import Coach
from bot.nudges import drills, progress
from bot.slack import ids
from bot.slack.payloads import text_at


def drill(ack, command, coach: Coach) -> None:
    if drills.wants_menu(command.get("text", "")):
        ack(**drills.drill_menu(coach, user_id=command["user_id"]))
        return
    answer, scenario = drills.answer_drill(coach.scenarios, command.get("text", ""))
    ack(answer)  # within Slack's 3 seconds, before touching the database
    if scenario is not None:
        drills.send_drill(coach, user_id=command["user_id"], scenario=scenario)


def pick_drill(ack, body, coach: Coach) -> None:
    ack()
    scenario = coach.scenarios.get(text_at(body, "actions", 0, "value", max_length=64))
    if scenario is not None:
        drills.send_drill(coach, user_id=body["user"]["id"], scenario=scenario)


def show_progress(ack, command, coach: Coach) -> None:
    ack(progress.progress_answer(coach, viewer=command["user_id"], text=command.get("text", "")))


def register(app: App) -> None:
    app.command(ids.DRILL_COMMAND)(drill)
    app.command(ids.PROGRESS_COMMAND)(show_progress)
    app.action(ids.PICK_DRILL)(pick_drill)
