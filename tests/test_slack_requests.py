"""Requests to /slack/events: signatures checked as Slack signs them, retries with one effect."""

from __future__ import annotations

import json
import time

from sqlmodel import select

from bot.slack import ids
from storage.models import PracticeTurn
from tests.conftest import MANAGER, REP, low_calls


def _practising(harness) -> dict:
    harness.send_calls(low_calls())
    harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER)
    invite = harness.invite()
    harness.slack.click(invite, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    return invite


def test_forged_signature_is_refused_and_changes_nothing(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    forged = type(harness.slack)(harness.url, "someone-elses-secret", harness.http)
    assert forged.click(approval, ids.APPROVE, user=MANAGER).status_code == 401
    time.sleep(0.3)
    harness.app.sender.drain()
    assert not approval.get("updated") and harness.standin.messages_in(REP) == []


def test_stale_timestamp_is_refused(harness):
    body = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_home_opened"}})
    answer = harness.slack.post(body, "application/json", timestamp=int(time.time()) - 600)
    assert answer.status_code == 401


def test_a_retried_event_has_one_effect(harness):
    invite = _practising(harness)
    first = harness.slack.dm(user=REP, channel=invite["channel"], text="What is driving the timing?",
                             thread_ts=invite["ts"], event_id="Ev0RETRY")
    retry = harness.slack.dm(user=REP, channel=invite["channel"], text="What is driving the timing?",
                             thread_ts=invite["ts"], event_id="Ev0RETRY", retry_num=1)
    assert first.status_code == retry.status_code == 200
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 3)
    time.sleep(0.5)
    harness.app.sender.drain()
    assert len(harness.thread(invite)) == 3, "one buyer reply"
    with harness.app.coach.db.session() as session:
        assert len(session.exec(select(PracticeTurn).where(PracticeTurn.role == "rep")).all()) == 1


def test_our_own_message_edits_are_acknowledged(harness):
    """`message_changed` (caused by our chat.update) must get 200, or Slack keeps retrying it."""
    event = {"type": "message", "subtype": "message_changed", "channel": "D0ALEX", "channel_type": "im",
             "message": {"text": "edited"}, "ts": "1.2"}
    assert harness.slack.event(event).status_code == 200


def test_reply_outside_a_practice_thread_gets_a_pointer(harness):
    harness.slack.dm(user=REP, channel="D0ALEX", text="hello?")
    pointer = harness.standin.wait_for(lambda: next(iter(harness.standin.messages_in("D0ALEX")), None))
    assert "/drill" in pointer["text"]


def test_drill_command_sends_a_practice_invite(harness):
    answer = harness.slack.command(ids.DRILL_COMMAND, user=REP, text="price")
    assert answer.status_code == 200 and "starting in your DM" in answer.text
    drill = harness.invite()  # no approval, no extra click: the roleplay opens in the thread at once
    assert drill["text"] == "Drill: Hold the price without discounting"
    harness.standin.wait_for(lambda: len(harness.thread(drill)) >= 2)
    harness.slack.dm(user=REP, channel=drill["channel"], text="What are you comparing us against?",
                     thread_ts=drill["ts"])
    harness.standin.wait_for(lambda: len(harness.thread(drill)) >= 3
                             and "typing" not in harness.thread(drill)[-1]["text"])


def test_drill_without_a_match_suggests_the_closest(harness):
    answer = harness.slack.command(ids.DRILL_COMMAND, user=REP, text="prcie objektion")
    assert answer.status_code == 200 and "No drill matches" in answer.text and "price-objection" in answer.text


def test_a_command_whose_text_says_payload_is_answered(harness):
    """Bolt reads any form holding the word "payload" as a click: `/drill payload` was a 404 Slack shows as an
    error."""
    answer = harness.slack.command(ids.DRILL_COMMAND, user=REP, text="payload")
    assert answer.status_code == 200 and "No drill matches" in answer.text


def test_progress_and_home(harness):
    assert "Practice sessions this month:* 0" in harness.slack.command(ids.PROGRESS_COMMAND, user=REP).text
    harness.slack.event({"type": "app_home_opened", "user": REP, "tab": "home"})
    view = harness.standin.wait_for(lambda: harness.standin.views.get(REP))
    assert view["type"] == "home"


def test_progress_of_a_rep_is_for_their_managers_only(harness):
    mine = harness.slack.command(ids.PROGRESS_COMMAND, user=MANAGER, text="<@U0ALEX|alex>")
    assert mine.status_code == 200 and "Progress for <@U0ALEX>" in mine.text
    refused = harness.slack.command(ids.PROGRESS_COMMAND, user="U0EVE", text="<@U0ALEX|alex>")
    assert "Only <@U0ALEX>'s managers" in refused.text


def test_drill_with_no_text_offers_a_picker_grouped_by_skill(harness):
    answer = harness.slack.command(ids.DRILL_COMMAND, user=REP)
    picker = answer.json()
    from slack_sdk.models.blocks import Block

    assert len(picker["blocks"]) <= 50 and [b.to_dict() for b in Block.parse_all(picker["blocks"])]
    assert picker["blocks"][0]["text"]["text"].startswith("*Pick a drill.*")
    headings = [b["elements"][0]["text"] for b in picker["blocks"] if b["type"] == "context"]
    assert "*Objection handling*" in headings and len(headings) == 7
    shown = {"channel": "C0GENERAL", "ts": "1700000000.999999", **picker}
    harness.slack.click(shown, ids.PICK_DRILL, user=REP)  # the first Start: a drill starts in the DM
    drill = harness.invite()
    assert drill["text"].startswith("Drill: ")
    harness.standin.wait_for(lambda: len(harness.thread(drill)) >= 2)


def test_drill_with_only_invisible_text_offers_the_picker(harness):
    """A zero-width space or a BOM pasted after `/drill` is nothing typed: the picker, not "No drill matches"."""
    picker = harness.slack.command(ids.DRILL_COMMAND, user=REP, text=" \u200b\ufeff ").json()
    assert picker["blocks"][0]["text"]["text"].startswith("*Pick a drill.*")


def test_the_picker_puts_the_reps_focus_skill_first(harness):
    harness.send_calls(low_calls())
    harness.approval_message()  # an open nudge on objection handling
    picker = harness.slack.command(ids.DRILL_COMMAND, user=REP).json()
    headings = [b["elements"][0]["text"] for b in picker["blocks"] if b["type"] == "context"]
    assert headings[0] == "*Objection handling*" and "Your focus skill: *Objection handling*" in str(picker)
