"""Ingest scored calls: store them once, match them to reps, and review each rep for a nudge.

A call whose rep is not on a team in coach.yaml (or whom Slack does not know yet) is kept as unmatched and
reviewed once the rep is configured (`bot/nudges/unmatched.py`); nothing is dropped.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import insert, inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.config import CoachConfig
from bot.nudges import triage
from bot.nudges.adapters import ScoredCall
from bot.nudges.metrics import conversation_metrics
from bot.telemetry import count_ingested
from storage import queries
from storage.models import Call, CallScore, Rep

log = logging.getLogger(__name__)
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_warned_criteria: set[str] = set()


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


def identity(coach: Coach, ref: str) -> tuple[str | None, str | None]:
    """(Slack user id, email) for a rep reference; asks Slack only for what is not known yet.

    A reference that is neither (an unmapped Gong user, say) gives (None, None): the call stays unmatched.
    """
    if "@" in ref:
        with coach.db.reading() as session:
            rep = queries.find_rep(session, email=ref)
        if rep and rep.slack_user_id:
            return rep.slack_user_id, ref
        return coach.directory.user_id_for_email(ref), ref
    if not SLACK_USER.match(ref):
        return None, None
    if not any("@" in person for team in coach.config.teams for person in team.reps):
        return ref, None  # nobody is configured by email: the Slack id is all `rep_row` needs
    with coach.db.reading() as session:
        rep = queries.find_rep(session, slack_user_id=ref)
    if rep and rep.team_id:
        return ref, rep.email
    return ref, coach.directory.email_for_user(ref)


def rep_row(session: Session, coach: Coach, slack_user_id: str | None, email: str | None) -> Rep | None:
    """The rep's row (created if new), locked for this transaction so two batches cannot both nudge them."""
    if not slack_user_id and not email:
        return None
    by_id = queries.find_rep(session, slack_user_id=slack_user_id, lock=True) if slack_user_id else None
    by_email = queries.find_rep(session, email=email, lock=True) if email else None
    if by_id is not None and by_email is not None and by_id.id != by_email.id:
        queries.merge_reps(session, keep=by_id, drop=by_email)  # one person first known by id, then by email
    rep = by_id or by_email
    if rep is None:
        try:
            with session.begin_nested():  # another request may be adding the same new rep right now
                rep = Rep(created_at=coach.clock(), slack_user_id=slack_user_id, email=email)
                session.add(rep)
                session.flush()
        except IntegrityError:
            rep = queries.find_rep(session, slack_user_id=slack_user_id, email=email, lock=True)
    rep.slack_user_id = rep.slack_user_id or slack_user_id
    rep.email = rep.email or email
    rep.team_id = team_for(coach.config, slack_user_id=rep.slack_user_id, email=rep.email)
    session.add(rep)
    session.flush()
    return rep


def matched(rep: Rep | None) -> bool:
    """A rep the loop can coach: on a team in coach.yaml and reachable in Slack."""
    return rep is not None and rep.team_id is not None and rep.slack_user_id is not None


def _warn_unknown_criteria(coach: Coach, call: ScoredCall) -> None:
    for score in call.scores:
        if score.criterion not in coach.config.criteria and score.criterion not in _warned_criteria:
            _warned_criteria.add(score.criterion)
            log.warning("criterion %r is not in coach.yaml: stored, and ignored by the rules until it is added",
                        score.criterion)


def _add_scores(session: Session, row: Call, scores: list) -> None:
    for score in scores:
        session.add(CallScore(call_pk=row.id, criterion=score.criterion, score=score.score, max=score.max,
                              evidence=[e.model_dump(exclude_none=True) for e in score.evidence]))


def _complete(session: Session, row: Call, call: ScoredCall, metrics: dict, rep: Rep | None) -> Call | None:
    """A call already stored: add what this delivery brings that it lacks (Gong sends a call's metrics and its
    scorecards separately). None when it brings nothing new: a duplicate."""
    known = set(session.exec(select(CallScore.criterion).where(CallScore.call_pk == row.id)).all())
    scores = [s for s in call.scores if s.criterion not in known]
    extra = {k: v for k, v in metrics.items() if k not in (row.metrics or {})}
    if not scores and not extra:
        return None
    _add_scores(session, row, scores)
    row.metrics = {**(row.metrics or {}), **extra}
    row.rep_id = row.rep_id or (rep.id if rep else None)
    session.add(row)
    session.flush()
    return row


def _store(session: Session, call: ScoredCall, rep: Rep | None, coach: Coach) -> Call | None:
    """Insert the call and its scores; None when it is already stored (same source and call_id) as it is."""
    metrics = call.metrics or (conversation_metrics(call.transcript).as_dict() if call.transcript else {})
    existing = session.exec(select(Call).where(Call.source == call.source, Call.call_id == call.call_id)).first()
    if existing is not None:
        return _complete(session, existing, call, metrics, rep)
    try:
        with session.begin_nested():
            row = Call(
                source=call.source, call_id=call.call_id, rep_ref=call.rep, rep_id=rep.id if rep else None,
                started_at=call.started_at, duration_s=call.duration_s, title=call.title,
                call_type=call.call_type, recording_url=call.recording_url, metrics=metrics,
                received_at=coach.clock(),
            )
            session.add(row)
            session.flush()
            _add_scores(session, row, call.scores)
            session.flush()
    except IntegrityError:  # the same call arrived at the same moment through another request
        return None
    return row


def _learn_time_zones(coach: Coach, people: list[tuple[str | None, str | None]]) -> None:
    """Reps on auto-approve and rep-first teams may be DMed during this ingest: learn their Slack time zone
    now, outside the transaction (managed teams learn it when the manager approves)."""
    direct = {t.id for t in coach.config.teams if coach.config.approval_for(t.id).policy != "manual"}
    for user, email in people:
        if user and team_for(coach.config, slack_user_id=user, email=email) in direct:
            coach.directory.timezone_for(user)


def _stored_keys(session: Session, calls: list[ScoredCall]) -> set[tuple[str, str]]:
    """Which of these calls' (source, call_id) are already stored: one query per source and 500 ids."""
    wanted: dict[str, list[str]] = {}
    for call in calls:
        wanted.setdefault(call.source, []).append(call.call_id)
    found: set[tuple[str, str]] = set()
    for source, call_ids in wanted.items():
        unique = sorted(set(call_ids))
        for start in range(0, len(unique), 500):
            found.update((source, call_id) for call_id in session.exec(
                select(Call.call_id).where(Call.source == source, col(Call.call_id).in_(unique[start:start + 500]))))
    return found


def _insert_new(session: Session, coach: Coach, calls: list[tuple[ScoredCall, Rep | None]]) -> bool:
    """Insert calls known to be new, and their scores, in two statements; False (nothing inserted) when one
    of them was stored by another request meanwhile."""
    now = coach.clock()
    rows = [{"source": call.source, "call_id": call.call_id, "rep_ref": call.rep, "rep_id": rep.id if rep else None,
             "started_at": call.started_at, "duration_s": call.duration_s, "title": call.title,
             "call_type": call.call_type, "recording_url": call.recording_url,
             "metrics": call.metrics or (conversation_metrics(call.transcript).as_dict() if call.transcript else {}),
             "received_at": now} for call, rep in calls]
    try:
        with session.begin_nested():
            table = Call.__table__
            ids = session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars()
            scores = [{"call_pk": pk, "criterion": s.criterion, "score": s.score, "max": s.max,
                       "evidence": [e.model_dump(exclude_none=True) for e in s.evidence]}
                      for pk, (call, _) in zip(ids.all(), calls, strict=True) for s in call.scores]
            if scores:
                session.execute(insert(CallScore.__table__), scores)
    except IntegrityError:  # the same call arrived at the same moment through another request
        return False
    return True


def _rep_rows(session: Session, coach: Coach, refs: list[str],
              identities: dict[str, tuple[str | None, str | None]]) -> dict[str, Rep | None]:
    """Each rep reference's row, found (or created) once per batch, in the order the calls name them."""
    reps = {ref: rep_row(session, coach, *identities[ref]) for ref in refs}
    for ref, rep in reps.items():  # a later identity may have merged an earlier one's row away
        if rep is not None and inspect(rep).was_deleted:
            reps[ref] = rep_row(session, coach, *identities[ref])
    return reps


def ingest_calls(coach: Coach, calls: list[ScoredCall]) -> IngestResult:
    """Store new calls, then review each matched rep they touched for at most one new nudge.

    New calls (the usual case) are inserted together, in two statements; a call already stored, or named twice
    in the batch, goes through `_store` one by one, which completes it or counts it as a duplicate.
    """
    identities = {ref: identity(coach, ref) for ref in {c.rep for c in calls}}
    _learn_time_zones(coach, list(identities.values()))
    result, tally = IngestResult(), Counter()
    ordered = sorted(calls, key=lambda c: c.started_at)
    with coach.db.session() as session:
        reps = _rep_rows(session, coach, list(dict.fromkeys(c.rep for c in ordered)), identities)
        stored = _stored_keys(session, ordered)
        fresh: list[tuple[ScoredCall, Rep | None]] = []
        again: list[ScoredCall] = []
        for call in ordered:
            key = (call.source, call.call_id)
            if key in stored:
                again.append(call)
            else:
                stored.add(key)
                fresh.append((call, reps[call.rep]))
        if fresh and not _insert_new(session, coach, fresh):
            again, fresh = ordered, []  # raced with another request: take the calls one by one
        accepted = list(fresh)
        for call in again:
            rep = reps[call.rep]
            if _store(session, call, rep, coach) is None:
                result.duplicates += 1
                tally[call.source, "duplicate"] += 1
            else:
                accepted.append((call, rep))
        touched: dict[int, Rep] = {}
        for call, rep in accepted:
            result.accepted += 1
            tally[call.source, "accepted"] += 1
            _warn_unknown_criteria(coach, call)
            if not matched(rep):
                result.unmatched += 1
                log.warning("call %s/%s kept as unmatched: rep %s is not on a team in coach.yaml or unknown to "
                            "Slack (`rehearse ingest --unmatched` lists them)", call.source, call.call_id, call.rep)
                continue
            touched[rep.id] = rep
        for rep in touched.values():
            nudge = triage.review_rep(session, coach, rep)
            if nudge is not None:
                result.nudges.append(nudge.id)
    count_ingested(tally.items())  # committed: now they count
    return result
