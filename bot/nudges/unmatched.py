"""Calls kept because their rep was not matched yet: listing them, and matching them once configured."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, func, or_, select

from bot.coach import Coach
from bot.nudges import triage
from bot.nudges.intake import identity, matched, rep_row
from storage.models import Call, Rep


@dataclass(frozen=True)
class UnmatchedRep:
    rep: str
    calls: int
    latest: datetime
    reason: str


def _mapped(coach: Coach, ref: str) -> str:
    """A Gong user id the configuration now maps to a rep."""
    if ref.startswith("gong-user:"):
        return coach.config.gong.users.get(ref.removeprefix("gong-user:"), ref)
    return ref


def _unmatched_refs(coach: Coach) -> dict[str, tuple[int, datetime]]:
    with coach.db.session() as session:
        rows = session.exec(
            select(Call.rep_ref, func.count(), func.max(Call.started_at))
            .outerjoin(Rep, col(Rep.id) == col(Call.rep_id))
            .where(or_(col(Call.rep_id).is_(None), col(Rep.team_id).is_(None), col(Rep.slack_user_id).is_(None)))
            .group_by(Call.rep_ref)
        ).all()
    return {ref: (count, latest) for ref, count, latest in rows}


def list_unmatched(coach: Coach) -> list[UnmatchedRep]:
    """Each rep reference with calls waiting, and what to fix so they are coached."""
    out = []
    for ref, (count, latest) in sorted(_unmatched_refs(coach).items()):
        if ref.startswith("gong-user:"):
            reason = f"unknown Gong user: add {ref.removeprefix('gong-user:')!r} under gong.users in coach.yaml"
        elif "@" in ref and coach.directory.user_id_for_email(ref) is None:
            reason = "Slack has no user with this email (or could not be asked just now)"
        elif "@" not in ref and "U" != ref[:1] and "W" != ref[:1]:
            reason = "not a Slack user ID or an email"
        else:
            reason = "not on any team's reps in coach.yaml"
        out.append(UnmatchedRep(rep=ref, calls=count, latest=latest, reason=reason))
    return out


def rematch(coach: Coach) -> int:
    """Attach waiting calls to reps the configuration (or Slack) now knows, and review those reps.

    Returns how many calls were matched. Safe to run any time: at start-up and hourly.
    """
    refs = list(_unmatched_refs(coach))
    identities = {ref: identity(coach, _mapped(coach, ref)) for ref in refs}  # Slack lookups outside the transaction
    count = 0
    with coach.db.session() as session:
        reviewed: dict[int, Rep] = {}
        for ref in refs:
            rep = rep_row(session, coach, *identities[ref])
            if not matched(rep):
                continue
            calls = list(session.exec(select(Call).where(Call.rep_ref == ref)))
            for call in calls:
                call.rep_id = rep.id
                session.add(call)
            count += len(calls)
            reviewed[rep.id] = rep
        session.flush()
        for rep in reviewed.values():
            triage.review_rep(session, coach, rep)
    return count
