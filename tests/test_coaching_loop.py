"""The whole loop over the real Slack protocols: scored calls to a graded roleplay and follow-ups."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from bot.slack import ids
from storage.models import FollowUp, Grade, Nudge, NudgeState
from tests.conftest import APPROVALS, MANAGER, REP, low_calls
from tests.transcripts import TRANSCRIPTS

STRONG_REPLIES = [
    "That's fair, and thanks for being direct. What is the $38,000 being compared against on your side?",
    "So if I understand it, the question is payback inside the fiscal year. Missed pickups cost you about "
    "$12,000 a month, roughly $144,000 a year.",
    "I'd rather not cut the price. Could we walk your CFO through the payback math on Thursday at 2pm?",
    "done",
]


def _text(message: dict) -> str:
    return " ".join(b.get("text", {}).get("text", "") for b in message.get("blocks") or []) + message["text"]


def test_scored_calls_become_an_approved_practice_with_grade_and_followups(harness):
    answer = harness.send_calls(low_calls())
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 3, "duplicates": 0}

    approval = harness.approval_message()
    shown = _text(approval)
    assert f"<@{REP}>" in shown and "Objection handling" in shown
    assert "42 → 51 → 38" in shown and "I guess we could knock 30% off" in shown
    assert "https://ci.example.com/c-3#t=754" in shown

    assert harness.slack.click(approval, ids.APPROVE, user=MANAGER).status_code == 200
    invite = harness.invite()
    assert "Start practice" in str(invite["blocks"])
    harness.standin.wait_for(lambda: approval.get("updated"))
    assert not any(b["type"] == "actions" for b in approval["blocks"]), "the buttons are replaced"
    assert f"Approved by <@{MANAGER}>" in _text(approval)

    assert harness.slack.click(invite, ids.START_PRACTICE, user=REP).status_code == 200
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    brief, opening = harness.thread(invite)[:2]
    assert "Your goal" in brief["text"] and "I guess we could knock 30% off" in brief["text"]

    for n, reply in enumerate(STRONG_REPLIES, start=1):
        harness.slack.dm(user=REP, channel=invite["channel"], text=reply, thread_ts=invite["ts"])
        harness.standin.wait_for(lambda n=n: len(harness.thread(invite)) >= 2 + n)
    feedback = harness.thread(invite)[-1]
    assert "Score" in feedback["text"]
    assert "That's fair, and thanks for being direct." in _text(feedback), "feedback quotes the rep"

    with harness.app.coach.db.session() as session:
        nudge = session.exec(select(Nudge)).one()
        grade = session.exec(select(Grade)).one()
        followups = list(session.exec(select(FollowUp).order_by(FollowUp.step)))
    assert nudge.state == NudgeState.COMPLETED and nudge.decided_by == MANAGER
    assert 0 <= grade.score <= 100
    gaps = [round((f.due_at - nudge.completed_at) / timedelta(days=1)) for f in followups]
    assert gaps == [14, 60]

    assert harness.app.run_due_jobs(followups[0].due_at + timedelta(minutes=1)) == 1
    refresher = harness.invite(index=1)
    assert "Start refresher" in str(refresher["blocks"])
    assert harness.app.run_due_jobs(followups[0].due_at + timedelta(minutes=2)) == 0, "sent once"


def test_non_manager_click_changes_nothing(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    harness.slack.click(approval, ids.APPROVE, user="U0EVE")
    refusal = harness.standin.wait_for(
        lambda: next((m for m in harness.standin.messages if m.get("ephemeral")), None))
    assert refusal["user"] == "U0EVE" and f"<@{MANAGER}>" in refusal["text"]
    assert not approval.get("updated")
    assert harness.standin.messages_in(REP) == []
    with harness.app.coach.db.session() as session:
        assert session.exec(select(Nudge)).one().state == NudgeState.PENDING_APPROVAL


def test_double_click_makes_one_decision(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    harness.slack.click(approval, ids.APPROVE, user=MANAGER)
    harness.slack.click(approval, ids.APPROVE, user=MANAGER)
    second = harness.standin.wait_for(
        lambda: next((m for m in harness.standin.messages if m.get("ephemeral")), None))
    assert "already" in second["text"] and f"<@{MANAGER}>" in second["text"]
    harness.standin.wait_for(lambda: approval.get("updated"))
    with harness.app.coach.db.session() as session:
        state = session.exec(select(Nudge)).one().state
    assert state == NudgeState.DELIVERED
    harness.app.sender.drain()
    assert len(harness.standin.messages_in(REP)) == 1
    assert len(harness.standin.calls_to("chat.update")) == 1


def test_approval_goes_to_the_team_channel_for_a_rep_known_by_email(harness):
    calls = low_calls(rep="sam@example.com", prefix="s")
    assert harness.send_calls(calls).json() == {"accepted": 3, "duplicates": 0}
    assert "<@U0SAM>" in _text(harness.approval_message())
    assert harness.approval_message()["channel"] == APPROVALS


def test_the_roleplay_ends_when_the_buyer_says_yes(harness):
    """A strong rep earns the buyer's closing line; the grade follows without the rep typing 'done'."""
    harness.slack.command(ids.DRILL_COMMAND, user=REP, text="price-objection")
    invite = harness.invite()
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    for n, reply in enumerate(TRANSCRIPTS["price-objection"]["strong"], start=1):
        harness.slack.dm(user=REP, channel=invite["channel"], text=reply, thread_ts=invite["ts"])
        harness.standin.wait_for(lambda n=n: len(harness.thread(invite)) >= 2 + n)
        if "Score" in harness.thread(invite)[-1]["text"]:
            break
    harness.standin.wait_for(lambda: "Score" in harness.thread(invite)[-1]["text"])
    assert "Proficient" in harness.thread(invite)[-1]["text"]
    assert n < len(TRANSCRIPTS["price-objection"]["strong"]) + 1


def test_text_from_the_scorer_is_shown_literally(harness):
    calls = low_calls()
    calls[-1]["title"] = "Acme <> Globex"
    calls[-1]["scores"][0]["evidence"][0]["quote"] = "<!channel> we can do 20% off & more"
    harness.send_calls(calls)
    shown = _text(harness.approval_message())
    assert "&lt;!channel&gt; we can do 20% off &amp; more" in shown and "<!channel>" not in shown
    assert "Acme &lt;&gt; Globex" in shown
