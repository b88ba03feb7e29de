"""Spaced follow-ups: rows on the ladder, and the job that DMs the ones that are due."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.practice.schedule import followup_dates
from bot.slack import blocks, ids
from storage import queries
from storage.models import FollowUp, Nudge, Rep
from storage.outbox import enqueue

log = logging.getLogger(__name__)


def schedule_followups(session: Session, coach: Coach, *, nudge: Nudge, completed_at: datetime) -> list[datetime]:
    dates = followup_dates(completed_at, coach.config.followups.ladder_days)
    for step, due in enumerate(dates, start=1):
        session.add(FollowUp(nudge_id=nudge.id, rep_id=nudge.rep_id, step=step, due_at=due))
    return dates


def send_due_followups(coach: Coach, *, now: datetime, limit: int = 100) -> int:
    """DM a retention drill for each follow-up due at `now`; each row is claimed once.

    `now` may be ahead of the clock (`rehearse jobs run --as-of`); the DM itself goes out at once.
    """
    with coach.db.session() as session:
        due = list(session.exec(
            select(FollowUp)
            .where(FollowUp.status == "scheduled", FollowUp.due_at <= now)
            .order_by(col(FollowUp.due_at)).limit(limit)
            .with_for_update(skip_locked=True)
        ))
        for followup in due:
            nudge = session.get(Nudge, followup.nudge_id)
            rep = session.get(Rep, followup.rep_id)
            scenario = coach.scenario(nudge.scenario_id, nudge.criterion)
            if scenario is None:
                followup.status = "cancelled"
                session.add(followup)
                queries.audit(session, at=now, actor="rehearse", action="followup_cancelled",
                              subject=f"followup:{followup.id}", reason=f"scenario {nudge.scenario_id!r} is gone")
                continue
            label = coach.config.criterion_label(nudge.criterion).lower()
            invite = blocks.practice_invite(
                value=ids.practice_value("followup", followup.id),
                headline=f"Refresher: {nudge.completed_at:%b %d} you practised {label}. Keep it sharp.",
                scenario_title=scenario.title, goal=scenario.goal, button_text="Start refresher",
            )
            enqueue(session, method="chat.postMessage", channel=rep.dm_target,
                    payload={"channel": rep.dm_target, **invite},
                    dedupe_key=f"followup:{followup.id}:invite", now=coach.clock())
            followup.status, followup.sent_at = "sent", now
            session.add(followup)
            queries.audit(session, at=now, actor="rehearse", action="followup_sent",
                          subject=f"followup:{followup.id}", step=followup.step)
        return len(due)
