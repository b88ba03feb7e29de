"""Nudges nobody can act on any more expire, so the rep can get the next one."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.nudges import lifecycle
from bot.nudges.approval import approval_card
from bot.slack import blocks
from storage import queries
from storage.models import Nudge, NudgeState, OutboxMessage, Signal
from storage.outbox import enqueue

log = logging.getLogger(__name__)

APPROVAL_TTL = timedelta(hours=72)  # a manager who has not decided in three days will not
INVITE_TTL = timedelta(days=14)     # an approved drill the rep never started
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


def expire_stale_nudges(coach: Coach, *, now: datetime) -> int:
    """Expire approvals left undecided and drills left unstarted; each row is claimed once."""
    stale = (
        (col(Nudge.state) == NudgeState.PENDING_APPROVAL) & (col(Nudge.created_at) < now - APPROVAL_TTL)
    ) | ((col(Nudge.state) == NudgeState.DELIVERED) & (col(Nudge.decided_at) < now - INVITE_TTL))
    with coach.db.session() as session:
        nudges = list(session.exec(select(Nudge).where(stale).limit(200).with_for_update(skip_locked=True)))
        reasons = {NudgeState.PENDING_APPROVAL: "no decision within 72 hours",
                   NudgeState.DELIVERED: "the drill was not started within 14 days"}
        return sum(_expire(session, coach, n, reason=reasons[n.state], now=now) for n in nudges)


def expire_after_failed_delivery(coach: Coach, row: OutboxMessage, error: str) -> None:
    """When the approval message or the rep's invite cannot be delivered, the nudge cannot go on: expire it."""
    match = NUDGE_ROW.match(row.dedupe_key or "")
    if not match:
        return
    with coach.db.session() as session:
        nudge = session.get(Nudge, int(match[1]))
        if nudge is not None and nudge.state in (NudgeState.PENDING_APPROVAL, NudgeState.DELIVERED):
            log.error("nudge %s expired: its %s could not be delivered (%s)", nudge.id, match[2], error)
            _expire(session, coach, nudge, reason=f"Slack refused the {match[2]}: {error}", now=coach.clock())
