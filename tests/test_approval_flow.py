"""Manager approval end to end: signed block_actions and view_submission built from what the bot posted."""

from __future__ import annotations

import copy
import threading
from datetime import timedelta

from sqlmodel import select

from bot.slack import ids
from storage.models import AuditEntry, Dispute, Nudge, NudgeState
from tests.conftest import APPROVALS, MANAGER, OUTSIDER, REP, TEST_CONFIG, low_calls


def _text(message: dict) -> str:
    parts = []
    for block in message.get("blocks") or []:
        parts.append((block.get("text") or {}).get("text", ""))
        for element in block.get("elements", []):
            text = element.get("text", "")
            parts.append(text.get("text", "") if isinstance(text, dict) else text)
    return " ".join(parts)


def _nudge(harness) -> Nudge:
    with harness.app.coach.db.session() as session:
        return session.exec(select(Nudge)).one()


def _audit(harness) -> list[tuple[str, str]]:
    with harness.app.coach.db.session() as session:
        return [(a.actor, a.action) for a in session.exec(select(AuditEntry).order_by(AuditEntry.id))]


def _policy(policy: str, **extra) -> dict:
    config = copy.deepcopy(TEST_CONFIG)
    config["approval"] = {"policy": policy, **extra}
    return config


def test_the_approval_message_shows_why_evidence_and_the_drill(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    shown = _text(approval)
    assert "42 → 51 → 38" in shown and "threshold 60" in shown
    assert shown.count("I guess we could knock") == 2, "up to two quotes"
    assert "#t=754" in shown and "Hold the price without discounting" in shown
    actions = next(b for b in approval["blocks"] if b["type"] == "actions")["elements"]
    assert [e.get("action_id") for e in actions] == [ids.APPROVE, ids.SKIP, ids.CHANGE_SCENARIO]
    assert actions[2]["initial_option"]["value"] == "1:price-objection"


def test_skip_with_a_reason(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    harness.skip(approval, reason="We covered pricing in our 1:1 yesterday")
    harness.standin.wait_for(lambda: approval.get("updated"))
    assert f"Skipped by <@{MANAGER}>" in _text(approval) and "covered pricing" in _text(approval)
    assert (_nudge(harness).state, _nudge(harness).skip_reason) == (NudgeState.SKIPPED,
                                                                    "We covered pricing in our 1:1 yesterday")
    harness.app.sender.drain()
    assert harness.standin.messages_in(REP) == [], "the rep is not told"


def test_skip_without_a_reason(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    harness.skip(approval, reason=None)
    harness.standin.wait_for(lambda: approval.get("updated"))
    assert _nudge(harness).state == NudgeState.SKIPPED and _nudge(harness).skip_reason is None


def test_change_the_drill_then_approve(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    picker = next(b for b in approval["blocks"] if b["type"] == "actions")["elements"][2]
    options = [o for g in picker["option_groups"] for o in g["options"]]
    other = next(o for o in options if o["value"].endswith("stall-think-about-it"))
    harness.slack.select(approval, ids.CHANGE_SCENARIO, user=MANAGER, option=other)
    harness.standin.wait_for(lambda: approval.get("updated"))
    assert "Proposed drill:* " in _text(approval) and _nudge(harness).scenario_id == "stall-think-about-it"
    harness.slack.click(approval, ids.APPROVE, user=MANAGER)
    invite = harness.invite()
    assert _nudge(harness).scenario_id in str(invite["blocks"]) or "think" in _text(invite).lower()


def test_a_non_manager_can_neither_skip_nor_change_the_drill(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    harness.slack.click(approval, ids.SKIP, user=OUTSIDER)
    refusal = harness.standin.wait_for(lambda: next((m for m in harness.standin.messages if m.get("ephemeral")),
                                                    None))
    assert refusal["user"] == OUTSIDER and "Only <@U0DANA>" in refusal["text"]
    assert harness.standin.modals == [], "no modal for someone who may not decide"
    assert (OUTSIDER, "approval_refused") in _audit(harness)
    assert _nudge(harness).state == NudgeState.PENDING_APPROVAL


def test_concurrent_approve_and_skip_make_one_decision(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    harness.slack.click(approval, ids.SKIP, user=MANAGER)
    modal = harness.modal()
    typed = {(ids.REASON_BLOCK, ids.REASON_INPUT): "not now"}
    go = threading.Barrier(2)

    def approve():
        go.wait()
        harness.slack.click(approval, ids.APPROVE, user=MANAGER)

    def skip():
        go.wait()
        harness.slack.submit(modal, user=MANAGER, values=typed)

    threads = [threading.Thread(target=approve), threading.Thread(target=skip)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loser = harness.standin.wait_for(lambda: next((m for m in harness.standin.messages if m.get("ephemeral")), None))
    assert "already" in loser["text"] and f"<@{MANAGER}>" in loser["text"]
    harness.app.sender.drain()
    assert len(harness.standin.calls_to("chat.update")) == 1
    won = _nudge(harness).state
    assert won in (NudgeState.DELIVERED, NudgeState.SKIPPED)
    assert len(harness.standin.messages_in(REP)) == (1 if won == NudgeState.DELIVERED else 0)


def test_auto_approve_sends_the_drill_and_tells_the_channel(start_app):
    harness = start_app(config=_policy("auto"))
    harness.send_calls(low_calls())
    invite = harness.invite()
    fyi = harness.approval_message()
    assert not any(b["type"] == "actions" for b in fyi["blocks"]) and "automatically" in _text(fyi)
    assert "This doesn't look right" in _text(invite) and _nudge(harness).state == NudgeState.DELIVERED


def test_rep_first_asks_the_manager_only_when_the_rep_has_not_started(start_app, standin):
    harness = start_app(config=_policy("rep_first", rep_first_hours=24))
    harness.send_calls(low_calls())
    invite = harness.invite()
    assert "on your own first" in _text(invite)
    harness.app.sender.drain()
    assert standin.messages_in(APPROVALS) == []
    asked_at = _nudge(harness).ask_manager_at
    harness.app.run_due_jobs(asked_at - timedelta(minutes=1))
    assert standin.messages_in(APPROVALS) == []
    harness.app.run_due_jobs(asked_at + timedelta(minutes=1))
    approval = harness.approval_message()
    assert "Approve" in str(approval["blocks"]) and _nudge(harness).state == NudgeState.PENDING_APPROVAL


def test_one_threaded_reminder_after_24_working_hours(harness):
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    from storage.models import OutboxMessage

    def recorded_sent_at():
        with harness.app.coach.db.session() as session:
            query = select(OutboxMessage).where(OutboxMessage.dedupe_key == "nudge:1:approval")
            return session.exec(query).one().sent_at

    sent_at = harness.standin.wait_for(recorded_sent_at)
    harness.app.run_due_jobs(sent_at + timedelta(hours=23))
    assert harness.thread(approval) == []
    harness.app.run_due_jobs(sent_at + timedelta(hours=25))
    [reminder] = harness.standin.wait_for(lambda: harness.thread(approval) or None)
    assert f"<@{MANAGER}>" in reminder["text"] and "waiting for *Approve* or *Skip*" in reminder["text"]
    harness.app.run_due_jobs(sent_at + timedelta(hours=30))
    assert len(harness.thread(approval)) == 1, "one reminder only"
    assert (_nudge(harness).state, ("rehearse", "reminded") in _audit(harness)) == (NudgeState.PENDING_APPROVAL,
                                                                                   True)


def _dispute(harness, comment: str) -> tuple[dict, dict]:
    harness.send_calls(low_calls())
    approval = harness.approval_message()
    harness.slack.click(approval, ids.APPROVE, user=MANAGER)
    invite = harness.invite()
    harness.slack.click(invite, ids.DISPUTE, user=REP)
    modal = harness.modal()
    harness.slack.submit(modal, user=REP, values={(ids.COMMENT_BLOCK, ids.COMMENT_INPUT): comment})
    posted = harness.standin.wait_for(lambda: harness.thread(approval) or None)[0]
    shown = _text(posted).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert comment in shown and f"<@{MANAGER}>" in shown
    assert _nudge(harness).state == NudgeState.DISPUTED
    return approval, posted


def test_dispute_kept(harness):
    _, posted = _dispute(harness, "That call was a renewal, the discount was pre-approved")
    harness.slack.click(posted, ids.KEEP, user=OUTSIDER)  # not a manager: refused
    harness.slack.click(posted, ids.KEEP, user=MANAGER)
    harness.standin.wait_for(lambda: posted.get("updated"))
    assert "Kept by" in _text(posted) and _nudge(harness).state == NudgeState.DELIVERED
    told = harness.standin.wait_for(lambda: next((m for m in harness.standin.messages_in(REP)
                                                  if "kept the drill" in m["text"]), None))
    assert told
    with harness.app.coach.db.session() as session:
        assert session.exec(select(Dispute)).one().outcome == "kept"


def test_dispute_withdrawn(harness):
    from bot.nudges.disputes import disputes_by_criterion

    _, posted = _dispute(harness, "I was not on that call")
    harness.slack.click(posted, ids.WITHDRAW, user=MANAGER)
    harness.standin.wait_for(lambda: posted.get("updated"))
    assert "Withdrawn by" in _text(posted) and _nudge(harness).state == NudgeState.WITHDRAWN
    with harness.app.coach.db.session() as session:
        assert disputes_by_criterion(session) == {"objection_handling": 1}


def test_rep_first_then_the_manager_approves(start_app, standin):
    harness = start_app(config=_policy("rep_first", rep_first_hours=24))
    harness.send_calls(low_calls())
    harness.invite()
    harness.app.run_due_jobs(_nudge(harness).ask_manager_at + timedelta(minutes=1))
    harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER)
    harness.standin.wait_for(lambda: harness.approval_message().get("updated"))
    assert _nudge(harness).state == NudgeState.DELIVERED
    harness.app.sender.drain()
    assert len([m for m in standin.messages_in(REP) if m.get("blocks")]) == 1, "the rep already had the drill"


def test_an_unsettled_dispute_expires_after_a_week(harness):
    _dispute(harness, "Wrong call")
    with harness.app.coach.db.session() as session:
        opened = session.exec(select(Dispute)).one().opened_at
    harness.app.run_due_jobs(opened + timedelta(days=6))
    assert _nudge(harness).state == NudgeState.DISPUTED
    harness.app.run_due_jobs(opened + timedelta(days=8))
    assert _nudge(harness).state == NudgeState.EXPIRED


def test_a_dispute_comment_cannot_ping_the_channel(harness):
    _, posted = _dispute(harness, "<!channel> this is wrong")
    assert "<!channel>" not in posted["text"] and "&lt;!channel&gt;" in posted["text"]
