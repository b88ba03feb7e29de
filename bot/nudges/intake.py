"""Ingest scored calls: store them once, look for signals, propose one nudge per rep."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.coach import Coach
from bot.config import CoachConfig
from bot.nudges import triage
from bot.nudges.adapters import ScoredCall
from storage import queries
from storage.models import Call, CallScore, Rep

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    unmatched: int = 0
    nudges: list[int] = field(default_factory=list)


def team_for(config: CoachConfig, *, slack_user_id: str | None, email: str | None) -> str | None:
    """The configured team a rep belongs to, by Slack id or email."""
    for team in config.teams:
        if (slack_user_id and slack_user_id in team.reps) or (email and email in team.reps):
            return team.id
    return None


def _identity(coach: Coach, ref: str) -> tuple[str | None, str | None]:
    """(Slack user id, email) for a rep reference; asks Slack only for what is not known yet."""
    if "@" in ref:
        with coach.db.session() as session:
            rep = queries.find_rep(session, email=ref)
        if rep and rep.slack_user_id:
            return rep.slack_user_id, ref
        return coach.directory.user_id_for_email(ref), ref
    with coach.db.session() as session:
        rep = queries.find_rep(session, slack_user_id=ref)
    if rep and rep.team_id:
        return ref, rep.email
    needs_email = any("@" in person for team in coach.config.teams for person in team.reps)
    return ref, coach.directory.email_for_user(ref) if needs_email else None


def _rep(session: Session, coach: Coach, slack_user_id: str | None, email: str | None) -> Rep:
    """The rep's row, locked for this transaction (so two batches cannot both open a nudge for them)."""
    by_id = queries.find_rep(session, slack_user_id=slack_user_id, lock=True) if slack_user_id else None
    by_email = queries.find_rep(session, email=email, lock=True) if email else None
    if by_id is not None and by_email is not None and by_id.id != by_email.id:
        queries.merge_reps(session, keep=by_id, drop=by_email)  # one person first known by id, then by email
    rep = by_id or by_email
    if rep is None:
        rep = Rep(created_at=coach.clock())
    rep.slack_user_id = rep.slack_user_id or slack_user_id
    rep.email = rep.email or email
    rep.team_id = team_for(coach.config, slack_user_id=rep.slack_user_id, email=rep.email)
    session.add(rep)
    session.flush()
    return rep


def _store(session: Session, call: ScoredCall, rep: Rep, coach: Coach) -> Call | None:
    """Insert the call and its scores; None when it is already stored (same source and call_id)."""
    if queries.call_exists(session, source=call.source, call_id=call.call_id):
        return None
    try:
        with session.begin_nested():
            row = Call(
                source=call.source, call_id=call.call_id, rep_ref=call.rep, rep_id=rep.id,
                started_at=call.started_at, duration_s=call.duration_s, title=call.title,
                call_type=call.call_type, recording_url=call.recording_url, metrics=call.metrics,
                received_at=coach.clock(),
            )
            session.add(row)
            session.flush()
            for score in call.scores:
                session.add(CallScore(
                    call_pk=row.id, criterion=score.criterion, score=score.score, max=score.max,
                    evidence=[e.model_dump(exclude_none=True) for e in score.evidence],
                ))
            session.flush()
    except IntegrityError:  # the same call arrived at the same moment through another request
        return None
    return row


def ingest_calls(coach: Coach, calls: list[ScoredCall]) -> IngestResult:
    """Store new calls, detect signals and request approval for at most one open nudge per rep."""
    identities = {ref: _identity(coach, ref) for ref in {c.rep for c in calls}}
    result = IngestResult()
    with coach.db.session() as session:
        touched: dict[int, Rep] = {}
        for call in sorted(calls, key=lambda c: c.started_at):
            rep = _rep(session, coach, *identities[call.rep])
            if _store(session, call, rep, coach) is None:
                result.duplicates += 1
                continue
            result.accepted += 1
            if rep.team_id is None or rep.slack_user_id is None:
                result.unmatched += 1
                log.warning("call %s/%s: rep %s is not on a team in coach.yaml or unknown to Slack",
                            call.source, call.call_id, call.rep)
                continue
            touched[rep.id] = rep
        for rep in touched.values():
            nudge = triage.review_rep(session, coach, rep)
            if nudge is not None:
                result.nudges.append(nudge.id)
    return result
