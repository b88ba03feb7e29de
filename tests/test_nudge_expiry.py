"""Nudges nobody can act on expire, so a rep is never stuck without the next one."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from bot.slack.sender import wait_until_sent
from storage.models import Nudge, NudgeState
from tests.conftest import APPROVALS, low_calls


def _states(harness) -> list[str]:
    with harness.app.coach.db.session() as session:
        return [str(n.state) for n in session.exec(select(Nudge).order_by(Nudge.id))]


def test_an_undecided_approval_expires_after_72_hours_and_says_so(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    wait_until_sent(harness.app.coach.db, harness.app.sender)  # the manager has the message from now on
    with harness.app.coach.db.session() as session:
        created = session.exec(select(Nudge)).one().created_at
    harness.app.run_due_jobs(created + timedelta(hours=71))
    assert _states(harness) == ["pending_approval"]
    harness.app.run_due_jobs(created + timedelta(hours=73))
    assert _states(harness) == ["expired"]
    harness.standin.wait_for(lambda: approval.get("updated"))
    assert not any(b["type"] == "actions" for b in approval["blocks"])
    assert "Expired" in approval["blocks"][-1]["elements"][0]["text"]


def test_an_approval_slack_refuses_expires_the_nudge_and_the_next_signal_gets_through(start_app, standin):
    harness = start_app()
    standin.fail_next("chat.postMessage", status=200, error="not_in_channel")
    harness.send_calls(low_calls())
    harness.standin.wait_for(lambda: _states(harness) == ["expired"])
    assert standin.messages_in(APPROVALS) == []
    harness.send_calls(low_calls(prefix="later"))
    harness.approval_message()
    assert _states(harness) == ["expired", "pending_approval"]
    assert str(NudgeState.PENDING_APPROVAL) == "pending_approval"
