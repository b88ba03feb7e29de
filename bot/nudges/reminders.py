"""Approvals are never forgotten: one threaded reminder after 24 working hours, then expiry at 72 hours."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, cast, literal
from sqlmodel import col, select

from bot.coach import Coach
from bot.nudges.approval import mention
from bot.nudges.budget import working_hours_between
from bot.nudges.expiry import APPROVAL_HOURS
from storage import queries
from storage.models import Nudge, NudgeState, OutboxMessage, OutboxStatus, Rep
from storage.outbox import enqueue

REMIND_AFTER_WORKING_HOURS = 24


def remind_managers(coach: Coach, *, now: datetime) -> int:
    """Post one reminder in the thread of each approval message left undecided for 24 working hours."""
    with coach.db.session() as session:
        rows = session.exec(
            select(Nudge, OutboxMessage)
            .join(OutboxMessage, col(OutboxMessage.dedupe_key)
                  == literal("nudge:") + cast(col(Nudge.id), String) + literal(":approval"))
            .where(Nudge.state == NudgeState.PENDING_APPROVAL, col(Nudge.reminded_at).is_(None),
                   OutboxMessage.status == OutboxStatus.SENT,
                   col(OutboxMessage.sent_at) <= now - timedelta(hours=REMIND_AFTER_WORKING_HOURS))
            .order_by(col(OutboxMessage.sent_at)).limit(500).with_for_update(skip_locked=True, of=Nudge)
        ).all()
        sent = 0
        for nudge, posted in rows:
            team = coach.config.team(nudge.team_id)
            if team is None:  # a team removed from coach.yaml: nobody to remind
                continue
            waited = working_hours_between(posted.sent_at, now, timezone=team.timezone,
                                           working_days=coach.config.budget.working_days)
            if waited < REMIND_AFTER_WORKING_HOURS:
                continue
            rep = session.get(Rep, nudge.rep_id)
            managers = " ".join(mention(coach, m) for m in team.managers)
            text = (f"{managers}: a reminder that <@{rep.slack_user_id}>'s drill on "
                    f"{coach.config.criterion_label(nudge.criterion).lower()} is waiting for *Approve* or *Skip*. "
                    f"It expires after {APPROVAL_HOURS} working hours without a decision.")
            enqueue(session, method="chat.postMessage", channel=posted.channel, anchor=posted,
                    payload={"text": text}, dedupe_key=f"nudge:{nudge.id}:reminder", now=coach.clock())
            nudge.reminded_at = now
            session.add(nudge)
            queries.audit(session, at=now, actor="rehearse", action="reminded", subject=f"nudge:{nudge.id}")
            sent += 1
        return sent
