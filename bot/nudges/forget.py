"""`rehearse forget --rep X`: delete everything Rehearse holds about one person, and prove it happened.

Deleted: the rep, their calls (matched, or still unmatched under their Slack id or email), scores and evidence,
signals, nudges, disputes, follow-ups, practice sessions with their turns, grades and winning lines, and the outbox
rows (sent or not) to them or about their nudges: a message still waiting to go to them is never sent. Any other
outbox row that names them (a weekly digest) loses its text. Audit entries by or about them keep what happened and
when, without who or any detail. Slack itself keeps the messages it already shows (delete those in Slack).

The audit entry for the deletion names nobody: it holds a salted SHA-256 of the identifier given (with its salt),
so whoever asks later with that Slack id or email can check it was forgotten, and the entry alone reveals nobody.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import String, cast, delete, or_, update
from sqlmodel import Session, col, select

from storage import queries
from storage.db import Database
from storage.models import (
    AuditEntry,
    Call,
    CallScore,
    Dispute,
    FollowUp,
    Grade,
    Nudge,
    OutboxMessage,
    OutboxStatus,
    PracticeSession,
    PracticeTurn,
    Rep,
    Signal,
    WinningLine,
)

FORGOTTEN = "forgotten"


@dataclass
class Forgotten:
    calls: int = 0
    scores: int = 0
    signals: int = 0
    nudges: int = 0
    disputes: int = 0
    followups: int = 0
    practice_sessions: int = 0
    practice_turns: int = 0
    grades: int = 0
    winning_lines: int = 0
    messages: int = 0
    unsent_messages: int = 0
    messages_blanked: int = 0
    audit_entries_anonymised: int = 0
    rep: int = 0

def identity_proof(identifier: str, salt: str) -> str:
    """What the audit entry keeps instead of the identifier: sha256(salt + identifier), lower-cased emails."""
    ref = identifier.strip().lower() if "@" in identifier else identifier.strip()
    return hashlib.sha256(f"{salt}:{ref}".encode()).hexdigest()


def was_forgotten(entry: AuditEntry, identifier: str) -> bool:
    """Whether a `forgotten` audit entry is about this Slack id or email (for answering a data-subject request)."""
    return entry.action == FORGOTTEN and entry.detail.get("proof") == identity_proof(identifier,
                                                                                     entry.detail.get("salt", ""))


def _ids(session: Session, query) -> list[int]:  # noqa: ANN001
    return list(session.exec(query).all())


def _count_delete(session: Session, model, *where) -> int:  # noqa: ANN001
    return session.execute(delete(model).where(*where).execution_options(synchronize_session=False)).rowcount


def _mentions(column, names: list[str]):  # noqa: ANN001, ANN202 - the JSON text contains one of the names
    return or_(*(cast(column, String).like(f"%{name}%") for name in names))


def _messages(session: Session, names: list[str], targets: list[str], about: list[str], forgotten: Forgotten) -> None:
    """Messages to the person or about their nudges go, sent or not, with the replies and edits that hang off them;
    any other message that names them loses its text."""
    addressed = [col(OutboxMessage.dedupe_key).like(f"{prefix}%") for prefix in about]
    addressed += [OutboxMessage.dedupe_key == prefix.rstrip(":") for prefix in about if prefix.startswith("dispute:")]
    if targets:
        addressed.append(col(OutboxMessage.channel).in_(targets))
        addressed.append(col(OutboxMessage.sent_channel).in_(targets))
        addressed.append((OutboxMessage.method == "views.publish") & _mentions(OutboxMessage.payload, targets))
    doomed = set(_ids(session, select(OutboxMessage.id).where(or_(*addressed)))) if addressed else set()
    while doomed:  # replies and edits anchored on a doomed message go with it
        more = set(_ids(session, select(OutboxMessage.id).where(col(OutboxMessage.anchor_id).in_(doomed),
                                                                ~col(OutboxMessage.id).in_(doomed))))
        if not more:
            break
        doomed |= more
    unsent = [OutboxStatus.PENDING, OutboxStatus.SENDING]
    if doomed:
        forgotten.unsent_messages = len(_ids(session, select(OutboxMessage.id).where(
            col(OutboxMessage.id).in_(doomed), col(OutboxMessage.status).in_(unsent))))
        forgotten.messages = _count_delete(session, OutboxMessage, col(OutboxMessage.id).in_(doomed))
    forgotten.messages_blanked = session.execute(
        update(OutboxMessage).where(_mentions(OutboxMessage.payload, names))
        .values(payload={}).execution_options(synchronize_session=False)).rowcount


def _anonymise_audit(session: Session, names: list[str], subjects: list[str]) -> int:
    entries = session.exec(select(AuditEntry).where(or_(
        col(AuditEntry.actor).in_(names), col(AuditEntry.subject).in_(subjects),
        _mentions(AuditEntry.detail, names)))).all()
    for entry in entries:
        entry.actor = FORGOTTEN if entry.actor in names else entry.actor
        entry.detail = {}
        session.add(entry)
    return len(entries)


def forget_person(db: Database, *, identifier: str, now: datetime, operator: str) -> Forgotten:
    """Delete everything about the person with this Slack id or email, in one transaction."""
    identifier = identifier.strip()
    ref = identifier.lower() if "@" in identifier else identifier
    forgotten = Forgotten()
    with db.session() as session:
        rep = queries.find_rep(session, slack_user_id=None if "@" in ref else ref,
                               email=ref if "@" in ref else None, lock=True)
        names = sorted({ref, *((rep.slack_user_id, rep.email) if rep else ())} - {None})
        targets = sorted({rep.slack_user_id, rep.dm_channel} - {None}) if rep else ([ref] if "@" not in ref else [])
        rep_id = rep.id if rep else -1
        call_ids = _ids(session, select(Call.id).where(or_(Call.rep_id == rep_id, col(Call.rep_ref).in_(names))))
        nudge_ids = _ids(session, select(Nudge.id).where(Nudge.rep_id == rep_id))
        followup_ids = _ids(session, select(FollowUp.id).where(or_(FollowUp.rep_id == rep_id,
                                                                   col(FollowUp.nudge_id).in_(nudge_ids))))
        session_ids = _ids(session, select(PracticeSession.id).where(or_(
            PracticeSession.rep_id == rep_id, col(PracticeSession.nudge_id).in_(nudge_ids),
            col(PracticeSession.followup_id).in_(followup_ids))))
        dispute_ids = _ids(session, select(Dispute.id).where(or_(Dispute.rep_id == rep_id,
                                                                 col(Dispute.nudge_id).in_(nudge_ids))))
        about = [f"nudge:{n}:" for n in nudge_ids] + [f"practice:{s}:" for s in session_ids] + \
                [f"dispute:{d}:" for d in dispute_ids] + [f"followup:{f}:" for f in followup_ids]
        _messages(session, names, targets, about, forgotten)
        forgotten.practice_turns = _count_delete(session, PracticeTurn, col(PracticeTurn.session_id).in_(session_ids))
        forgotten.grades = _count_delete(session, Grade, col(Grade.session_id).in_(session_ids))
        forgotten.winning_lines = _count_delete(session, WinningLine, or_(WinningLine.rep_id == rep_id,
                                                                          col(WinningLine.session_id).in_(session_ids)))
        forgotten.practice_sessions = _count_delete(session, PracticeSession, col(PracticeSession.id).in_(session_ids))
        forgotten.followups = _count_delete(session, FollowUp, col(FollowUp.id).in_(followup_ids))
        forgotten.disputes = _count_delete(session, Dispute, col(Dispute.id).in_(dispute_ids))
        session.execute(update(Nudge).where(col(Nudge.id).in_(nudge_ids)).values(signal_id=None)
                        .execution_options(synchronize_session=False))  # nudges and signals point at each other
        forgotten.signals = _count_delete(session, Signal, or_(Signal.rep_id == rep_id,
                                                               col(Signal.trigger_call_pk).in_(call_ids)))
        forgotten.nudges = _count_delete(session, Nudge, col(Nudge.id).in_(nudge_ids))
        forgotten.scores = _count_delete(session, CallScore, col(CallScore.call_pk).in_(call_ids))
        forgotten.calls = _count_delete(session, Call, col(Call.id).in_(call_ids))
        forgotten.rep = _count_delete(session, Rep, Rep.id == rep_id)
        subjects = [f"nudge:{n}" for n in nudge_ids] + [f"session:{s}" for s in session_ids] + \
                   [f"dispute:{d}" for d in dispute_ids] + [f"followup:{f}" for f in followup_ids]
        forgotten.audit_entries_anonymised = _anonymise_audit(session, names, subjects)
        salt = secrets.token_hex(16)
        queries.audit(session, at=now, actor=operator, action=FORGOTTEN, subject="person",
                      proof=identity_proof(ref, salt), salt=salt, deleted=asdict(forgotten))
    return forgotten

