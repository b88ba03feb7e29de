"""Small query functions, keyword-only, session first."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.models import (
    AuditEntry,
    Call,
    FollowUp,
    Grade,
    Nudge,
    NudgeState,
    PracticeSession,
    PracticeTurn,
    Rep,
    Signal,
    SlackEvent,
    Team,
)


def audit(session: Session, *, at: datetime, actor: str, action: str, subject: str, **detail: object) -> None:
    session.add(AuditEntry(at=at, actor=actor, action=action, subject=subject, detail=detail))


def upsert_team(session: Session, *, team_id: str, name: str, approvals_channel: str,
                digest_channel: str | None, timezone: str) -> Team:
    team = session.get(Team, team_id) or Team(id=team_id, name=name, approvals_channel=approvals_channel)
    team.name, team.approvals_channel = name, approvals_channel
    team.digest_channel, team.timezone = digest_channel, timezone
    session.add(team)
    return team


def first_delivery(session: Session, *, event_id: str, now: datetime) -> bool:
    """Record a Slack event id; False when it was seen before (a retry)."""
    try:
        with session.begin_nested():
            session.add(SlackEvent(event_id=event_id, received_at=now))
            session.flush()
    except IntegrityError:
        return False
    return True


def find_rep(session: Session, *, slack_user_id: str | None = None, email: str | None = None,
             lock: bool = False) -> Rep | None:
    """The rep with this Slack id, else this email; `lock` holds the row until the transaction ends."""
    for clause in ((Rep.slack_user_id == slack_user_id) if slack_user_id else None,
                   (Rep.email == email.lower()) if email else None):
        if clause is None:
            continue
        query = select(Rep).where(clause)
        rep = session.exec(query.with_for_update() if lock else query).first()
        if rep:
            return rep
    return None


def merge_reps(session: Session, *, keep: Rep, drop: Rep) -> None:
    """Fold `drop` into `keep` (the same person, first known by two identities)."""
    for table in (Call, Signal, Nudge, PracticeSession, FollowUp):
        session.execute(update(table).where(col(table.rep_id) == drop.id).values(rep_id=keep.id))
    email, user_id = drop.email, drop.slack_user_id
    session.delete(drop)
    session.flush()
    keep.email, keep.slack_user_id = keep.email or email, keep.slack_user_id or user_id
    session.add(keep)
    session.flush()


def open_nudge(session: Session, *, rep_id: int, states: Iterable[NudgeState]) -> Nudge | None:
    query = select(Nudge).where(Nudge.rep_id == rep_id, col(Nudge.state).in_(list(states)))
    return session.exec(query.order_by(col(Nudge.id).desc())).first()


def move_nudge(session: Session, *, nudge_id: int, expected: NudgeState, target: NudgeState,
               **changes: object) -> bool:
    """Compare-and-set the nudge's state; False when someone else moved it first."""
    result = session.execute(
        update(Nudge).where(col(Nudge.id) == nudge_id, col(Nudge.state) == expected)
        .values(state=target, **changes)
    )
    session.expire_all()
    return result.rowcount == 1


def practice_session_at(session: Session, *, channel: str, thread_ts: str,
                        lock: bool = False) -> PracticeSession | None:
    """The practice in this DM thread; `lock` serialises replies to it until the transaction ends."""
    query = select(PracticeSession).where(
        PracticeSession.channel == channel, PracticeSession.thread_ts == thread_ts
    )
    return session.exec(query.with_for_update() if lock else query).first()


def turns_of(session: Session, *, session_id: int) -> list[PracticeTurn]:
    query = select(PracticeTurn).where(PracticeTurn.session_id == session_id).order_by(col(PracticeTurn.seq))
    return list(session.exec(query))


def rep_progress(session: Session, *, rep_id: int) -> tuple[int, Grade | None, FollowUp | None]:
    """Sessions graded, the latest grade, and the next scheduled follow-up."""
    grades = list(session.exec(
        select(Grade).join(PracticeSession, col(PracticeSession.id) == col(Grade.session_id))
        .where(PracticeSession.rep_id == rep_id).order_by(col(Grade.graded_at).desc())
    ))
    followup = session.exec(
        select(FollowUp).where(FollowUp.rep_id == rep_id, FollowUp.status == "scheduled")
        .order_by(col(FollowUp.due_at))
    ).first()
    return len(grades), (grades[0] if grades else None), followup
