"""Retention: call text and practice text are deleted after coach.yaml's `retention` days; the numbers stay.

Rehearse never stores a full call transcript (it computes metrics from one and drops it); the call text it keeps is
the scorer's evidence quotes, on each score and copied into signals and the Slack messages already sent. Practice
text is every roleplay turn, the winning lines saved from them, and the grader's evidence and feedback. After the
configured days all of that goes; scores, grades, levels, attempts and dates stay, so trends and the digest still
add up.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, cast, delete, update
from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.config import RetentionConfig
from storage import queries
from storage.models import (
    Call,
    CallScore,
    Grade,
    OutboxMessage,
    OutboxStatus,
    PracticeSession,
    PracticeTurn,
    Signal,
    WinningLine,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cutoffs:
    """Text written before these times is past its retention (None: kept for good)."""

    call_text: datetime | None
    practice_text: datetime | None

    @property
    def sent_messages(self) -> datetime | None:
        """Sent Slack messages may quote calls and practice alike: the earlier limit of the two applies."""
        known = [c for c in (self.call_text, self.practice_text) if c is not None]
        return max(known) if known else None


def cutoffs(retention: RetentionConfig, now: datetime) -> Cutoffs:
    def before(days: int | None) -> datetime | None:
        return now - timedelta(days=days) if days is not None else None

    return Cutoffs(before(retention.transcripts_days), before(retention.practice_turns_days))


@dataclass
class Purged:
    evidence_quotes: int = 0
    signal_quotes: int = 0
    sent_messages: int = 0
    practice_turns: int = 0
    winning_lines: int = 0
    grade_evidence: int = 0
    abandoned_practices: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


def _not_empty(column, empty: str):  # noqa: ANN001, ANN202 - a JSON column that still holds something
    return cast(column, String) != empty


def _purge_call_text(session: Session, before: datetime, purged: Purged) -> None:
    old_calls = select(Call.id).where(col(Call.received_at) < before)
    purged.evidence_quotes = session.execute(
        update(CallScore).where(col(CallScore.call_pk).in_(old_calls), _not_empty(CallScore.evidence, "[]"))
        .values(evidence=[]).execution_options(synchronize_session=False)).rowcount
    for signal in session.exec(select(Signal).where(col(Signal.detected_at) < before,
                                                    cast(Signal.detail, String).like('%"quotes"%'))):
        if "quotes" in signal.detail:
            signal.detail = {k: v for k, v in signal.detail.items() if k != "quotes"}
            session.add(signal)
            purged.signal_quotes += 1


def _purge_practice_text(session: Session, before: datetime, now: datetime, purged: Purged) -> None:
    # A roleplay left open since before the limit is over: closed, so no reply builds on deleted turns.
    purged.abandoned_practices = session.execute(
        update(PracticeSession).where(col(PracticeSession.active), col(PracticeSession.started_at) < before)
        .values(active=False, ended_at=now).execution_options(synchronize_session=False)).rowcount
    closed = select(PracticeSession.id).where(~col(PracticeSession.active))
    purged.practice_turns = session.execute(
        delete(PracticeTurn).where(col(PracticeTurn.created_at) < before, col(PracticeTurn.session_id).in_(closed))
        .execution_options(synchronize_session=False)).rowcount
    purged.winning_lines = session.execute(
        delete(WinningLine).where(col(WinningLine.saved_at) < before)
        .execution_options(synchronize_session=False)).rowcount
    for grade in session.exec(select(Grade).where(col(Grade.graded_at) < before)):
        if any(c.get("evidence") or c.get("feedback") for c in grade.criteria):
            grade.criteria = [{**c, "evidence": [], "feedback": ""} for c in grade.criteria]
            session.add(grade)
            purged.grade_evidence += 1


def purge_old_text(coach: Coach, *, now: datetime) -> Purged:
    """Delete call and practice text past coach.yaml's `retention`; idempotent, safe on several replicas."""
    limits = cutoffs(coach.config.retention, now)
    purged = Purged()
    with coach.db.session() as session:
        if limits.call_text is not None:
            _purge_call_text(session, limits.call_text, purged)
        if limits.practice_text is not None:
            _purge_practice_text(session, limits.practice_text, now, purged)
        if limits.sent_messages is not None:
            purged.sent_messages = session.execute(
                update(OutboxMessage).where(col(OutboxMessage.created_at) < limits.sent_messages,
                                            col(OutboxMessage.status).in_([OutboxStatus.SENT, OutboxStatus.FAILED]),
                                            _not_empty(OutboxMessage.payload, "{}"))
                .values(payload={}).execution_options(synchronize_session=False)).rowcount
        if purged.total:
            queries.audit(session, at=now, actor="rehearse", action="retention_purge", subject="text",
                          **asdict(purged), transcripts_days=coach.config.retention.transcripts_days,
                          practice_turns_days=coach.config.retention.practice_turns_days)
    if purged.total:
        log.info("retention: deleted text past its limit: %s", asdict(purged))
    return purged
