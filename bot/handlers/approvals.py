"""The approval message (Approve, Skip with a reason, change the drill) and disputes (Keep / Withdraw)."""

from __future__ import annotations

import json

from slack_bolt import App

from bot.coach import Coach
from bot.nudges import approval, disputes
from bot.slack import blocks, ids
from bot.slack.payloads import OddPayload, id_at, metadata, part_at, text_at, ts_at

# Clicks answered with a modal: views.open needs the click's trigger_id within 3 s, so Bolt handles them before
# the ack instead of through the Slack inbox.
OPEN_A_MODAL = frozenset({ids.SKIP, ids.DISPUTE})


def _where(body: dict, coach: Coach | None = None) -> dict:
    """Where the clicked approval message is; from the App Home tab, where it was posted."""
    if text_at(body, "container", "type") == "view" and coach is not None:
        return approval.where_posted(coach, nudge_id=ids.clicked_id(body))
    return {"channel": id_at(body, "container", "channel_id"), "message_ts": ts_at(body, "container", "message_ts")}


def approve_nudge(ack, body, coach: Coach) -> None:
    ack()
    approval.decide(coach, nudge_id=ids.clicked_id(body), user_id=body["user"]["id"], approve=True,
                    **_where(body, coach))


def skip_nudge(ack, body, client, coach: Coach) -> None:
    """Skip asks for an optional reason first; the modal must open within 3 s, so it is not an outbox row."""
    ack()
    nudge_id = ids.clicked_id(body)
    where = _where(body, coach)
    if approval.may_decide(coach, nudge_id=nudge_id, user_id=body["user"]["id"],
                           channel=where["channel"]).outcome == "may_decide":
        client.views_open(trigger_id=text_at(body, "trigger_id", max_length=255),
                          view=blocks.skip_modal(metadata=json.dumps({"nudge_id": nudge_id, **where})))


def skip_submitted(ack, body, view, coach: Coach) -> None:
    ack()
    where = metadata(view)
    reason = _typed(view, ids.REASON_BLOCK, ids.REASON_INPUT)
    approval.decide(coach, nudge_id=ids.record_id(where.get("nudge_id")), user_id=body["user"]["id"], approve=False,
                    **_posted_at(where), reason=reason)


def change_scenario(ack, body, coach: Coach) -> None:
    ack()
    nudge_id, _, scenario_id = text_at(body, "actions", 0, "selected_option", "value", max_length=150).partition(":")
    approval.change_scenario(coach, nudge_id=ids.record_id(nudge_id), user_id=body["user"]["id"],
                             scenario_id=scenario_id, **_where(body))


def dispute_nudge(ack, body, client) -> None:
    ack()
    client.views_open(trigger_id=text_at(body, "trigger_id", max_length=255),
                      view=blocks.dispute_modal(metadata=json.dumps({"nudge_id": ids.clicked_id(body)})))


def dispute_submitted(ack, body, view, coach: Coach) -> None:
    ack()
    comment = _typed(view, ids.COMMENT_BLOCK, ids.COMMENT_INPUT) or ""
    disputes.open_dispute(coach, nudge_id=ids.record_id(metadata(view).get("nudge_id")),
                          user_id=body["user"]["id"], comment=comment)


def _posted_at(where: dict) -> dict:
    """The approval message the Skip modal's metadata names; empty when it was never posted (a Skip from the App
    Home tab for a nudge whose message failed: the decision still counts, there is just no message to edit)."""
    if where.get("channel") == "" and where.get("message_ts") == "":
        return {"channel": "", "message_ts": ""}
    return {"channel": id_at(where, "channel"), "message_ts": ts_at(where, "message_ts")}


def _typed(view: dict, block: str, action: str) -> str | None:
    """What the person typed in a modal's text input (None when left empty)."""
    typed = part_at(view, "state", "values", block, action, "value")
    if typed is not None and not isinstance(typed, str):
        raise OddPayload(f"view.state.values.{block}.{action}.value is not text")
    return typed


def keep_nudge(ack, body, coach: Coach) -> None:
    ack()
    disputes.settle_dispute(coach, dispute_id=ids.clicked_id(body), user_id=body["user"]["id"],
                            keep=True, **_where(body))


def withdraw_nudge(ack, body, coach: Coach) -> None:
    ack()
    disputes.settle_dispute(coach, dispute_id=ids.clicked_id(body), user_id=body["user"]["id"],
                            keep=False, **_where(body))


def register(app: App) -> None:
    app.action(ids.APPROVE)(approve_nudge)
    app.action(ids.SKIP)(skip_nudge)
    app.view(ids.SKIP_REASON_VIEW)(skip_submitted)
    app.action(ids.CHANGE_SCENARIO)(change_scenario)
    app.action(ids.DISPUTE)(dispute_nudge)
    app.view(ids.DISPUTE_VIEW)(dispute_submitted)
    app.action(ids.KEEP)(keep_nudge)
    app.action(ids.WITHDRAW)(withdraw_nudge)
