"""Nudges nobody can act on any more expire, so the rep can get the next one."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlmodel import Session, col, func, select

from bot.coach import Coach
from bot.nudges import lifecycle
from bot.nudges.approval import approval_card
from bot.nudges.budget import working_hours_between
from bot.slack import blocks
from storage import queries
from storage.models import Dispute, Nudge, NudgeState, OutboxMessage, OutboxStatus, PracticeSession, Signal
from storage.outbox import enqueue

log = logging.getLogger(__name__)

APPROVAL_HOURS = 72                 # hours of working days a manager has to decide (a weekend does not count)
APPROVAL_MIN = timedelta(hours=APPROVAL_HOURS)  # never sooner than this in clock time
INVITE_TTL = timedelta(days=14)     # an approved drill the rep never started
DISPUTE_TTL = timedelta(days=7)     # a dispute the manager never settled
PRACTICE_TTL = timedelta(days=14)   # a drill started and then left
NUDGE_ROW = re.compile(r"^nudge:(\d+):(approval|invite)$")


def _expire(session: Session, coach: Coach, nudge: Nudge, *, reason: str, now: datetime) -> bool:
    was = nudge.state
    if not lifecycle.advance(session, nudge_id=nudge.id, expected=was, target=NudgeState.EXPIRED):
        return False
    queries.audit(session, at=now, actor="rehearse", action="expired", subject=f"nudge:{nudge.id}", reason=reason)
    for signal in session.exec(select(Signal).where(Signal.nudge_id == nudge.id)):
        signal.status = "open"  # the skill still needs work: the signal stays open for the next review
        session.add(signal)
    posted = session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"nudge:{nudge.id}:approval")).first()
    if was == NudgeState.PENDING_APPROVAL and posted is not None and posted.error is None:
        if nudge.scenario_id in coach.scenarios:
            card = approval_card(session, coach, nudge=nudge)
            enqueue(session, method="chat.update", channel=posted.channel, anchor=posted, now=coach.clock(),
                    payload=blocks.expired_message(card, reason=reason, when=now))
    return True


def stale_reason(*, state: NudgeState, asked_at: datetime | None, working_hours_waited: float,
                 since: datetime, now: datetime) -> str | None:
    """Why a nudge can go no further and should expire, or None (pure).

    `working_hours_waited`: how long the manager has had the approval message, weekends not counted;
    `since`: when the current wait began (the decision, the dispute, the last practice attempt)."""
    if state == NudgeState.PENDING_APPROVAL and asked_at is not None and working_hours_waited >= APPROVAL_HOURS:
        return f"no decision within {APPROVAL_HOURS} working hours"
    if state == NudgeState.DELIVERED and now - since >= INVITE_TTL:
        return "the drill was not started within 14 days"
    if state == NudgeState.DISPUTED and now - since >= DISPUTE_TTL:
        return "the dispute was not settled within 7 days"
    if state == NudgeState.PRACTISING and now - since >= PRACTICE_TTL:
        return "no practice attempt for 14 days"
    return None


def _waiting_since(session: Session, nudge: Nudge) -> datetime:
    if nudge.state == NudgeState.DISPUTED:
        opened = session.exec(select(func.max(Dispute.opened_at)).where(Dispute.nudge_id == nudge.id)).one()
        return opened or nudge.created_at
    if nudge.state == NudgeState.PRACTISING:
        last = session.exec(select(func.max(PracticeSession.started_at))
                            .where(PracticeSession.nudge_id == nudge.id)).one()
        return last or nudge.decided_at or nudge.created_at
    return nudge.decided_at or nudge.created_at


def expire_stale_nudges(coach: Coach, *, now: datetime) -> int:
    """Expire what nobody can act on any more (see `stale_reason`); each row is claimed once."""
    open_states = [NudgeState.PENDING_APPROVAL, NudgeState.DELIVERED, NudgeState.DISPUTED, NudgeState.PRACTISING]
    with coach.db.session() as session:
        nudges = list(session.exec(
            select(Nudge).where(col(Nudge.state).in_(open_states), col(Nudge.created_at) <= now - timedelta(days=1),
                                col(Nudge.ask_manager_at).is_(None))
            .order_by(col(Nudge.created_at)).limit(500).with_for_update(skip_locked=True)))
        expired = 0
        for nudge in nudges:
            team = coach.config.team(nudge.team_id)
            posted = session.exec(select(OutboxMessage).where(
                OutboxMessage.dedupe_key == f"nudge:{nudge.id}:approval", OutboxMessage.status == OutboxStatus.SENT,
                col(OutboxMessage.sent_at) <= now - APPROVAL_MIN)).first() \
                if nudge.state == NudgeState.PENDING_APPROVAL else None
            waited = working_hours_between(posted.sent_at, now, timezone=team.timezone if team else "UTC",
                                           working_days=coach.config.budget.working_days) if posted else 0.0
            reason = stale_reason(state=NudgeState(nudge.state), asked_at=posted.sent_at if posted else None,
                                  working_hours_waited=waited, since=_waiting_since(session, nudge), now=now)
            if reason:
                expired += _expire(session, coach, nudge, reason=reason, now=now)
        return expired


def expire_after_failed_delivery(coach: Coach, row: OutboxMessage, error: str) -> None:
    """When the approval message or the rep's invite cannot be delivered, the nudge cannot go on: expire it."""
    match = NUDGE_ROW.match(row.dedupe_key or "")
    if not match:
        return
    with coach.db.session() as session:
        nudge = session.get(Nudge, int(match[1]))
        blocked = {"approval": NudgeState.PENDING_APPROVAL, "invite": NudgeState.DELIVERED}[match[2]]
        if nudge is not None and nudge.state == blocked:  # an auto-approve FYI failing stops nothing
            log.error("nudge %s expired: its %s could not be delivered (%s)", nudge.id, match[2], error)
            _expire(session, coach, nudge, reason=f"Slack refused the {match[2]}: {error}", now=coach.clock())
