"""Start practice clicks and the rep's messages in the DM (roleplay turns)."""

from __future__ import annotations

from slack_bolt import App

from bot.coach import Coach
from bot.nudges import practice
from bot.slack import ids
from bot.slack.payloads import id_at, text_at, ts_at

# Clicks answered with a modal, handled before the ack (a trigger_id lasts 3 s), not through the Slack inbox.
OPEN_A_MODAL = frozenset({ids.GRADE_DETAILS})
# Message subtypes that are not a person typing: our own edits, deletions, joins. Acked, ignored.
PERSON_SUBTYPES = {None, "file_share", "thread_broadcast"}


def start_practice(ack, body, coach: Coach) -> None:
    ack()
    value = text_at(body, "actions", 0, "value", max_length=80)
    ids.parse_practice_value(value)
    practice.start_practice(coach, user_id=body["user"]["id"], value=value, **_clicked_message(body))


def is_a_turn(event: dict) -> bool:
    """A person's text in their DM with the app: the only message event the roleplay answers (not the bot's own
    posts, edits or deletions)."""
    return (event.get("channel_type") == "im" and event.get("subtype") in PERSON_SUBTYPES
            and not event.get("bot_id") and all(isinstance(event.get(k), str) and event[k] for k in ("user", "text",
                                                                                                "channel"))
            and isinstance(event.get("thread_ts"), str | None))


def on_message(body, event, coach: Coach) -> None:
    """Every message event is acked by Bolt; only a person's DM text becomes a roleplay turn."""
    if not is_a_turn(event):
        return
    # The buyer may be a model that takes seconds: free Bolt's listener thread at once.
    coach.run_later(practice.handle_reply, coach, user_id=event["user"], channel=event["channel"],
                    thread_ts=event.get("thread_ts"), text=event["text"], event_id=body.get("event_id"))


def retake(ack, body, coach: Coach) -> None:
    ack()
    practice.retake(coach, user_id=body["user"]["id"], session_id=ids.clicked_id(body),
                    channel=_clicked_message(body)["channel"])


def done(ack, body, coach: Coach) -> None:
    ack()
    practice.finish_for_now(coach, user_id=body["user"]["id"], session_id=ids.clicked_id(body),
                            **_clicked_message(body))


def grade_details(ack, body, client, coach: Coach) -> None:
    """Details on the feedback: every criterion of the grade, in a modal."""
    ack()
    view = practice.grade_details(coach, user_id=body["user"]["id"], session_id=ids.clicked_id(body))
    if view is not None:
        client.views_open(trigger_id=text_at(body, "trigger_id", max_length=255), view=view)


def _clicked_message(body: dict) -> dict[str, str]:
    """The DM message whose button was clicked."""
    return {"channel": id_at(body, "container", "channel_id"), "message_ts": ts_at(body, "container", "message_ts")}


def register(app: App) -> None:
    app.action(ids.START_PRACTICE)(start_practice)
    app.event("message", acts_on=is_a_turn)(on_message)
    app.action(ids.RETAKE)(retake)
    app.action(ids.PRACTICE_DONE)(done)
    app.action(ids.GRADE_DETAILS)(grade_details)
