"""The App Home tab: a rep's focus, drills and progress; a manager's approvals, team heatmap and coverage."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, func, select

from bot.coach import Coach
from bot.nudges.lifecycle import OPEN
from bot.slack import blocks
from storage import queries
from storage.models import (
    Call,
    CallScore,
    FollowUp,
    Grade,
    Nudge,
    NudgeState,
    PracticeSession,
    Rep,
    Signal,
    WinningLine,
)
from storage.outbox import enqueue

PAGE = 10  # reps per heatmap page


def level(percent: float) -> int:
    """A score as a rubric-style level: under 25 is 1, 25-49 is 2, 50-74 is 3, 75 and up is 4."""
    return max(1, min(4, int(percent // 25) + 1))


def rep_home(session: Session, coach: Coach, rep: Rep | None) -> blocks.RepHome:
    """What the rep sees of their own progress (Home tab and `/progress`)."""
    if rep is None:
        return blocks.RepHome(focus=None, nudge_id=None, can_start=False, followups=(), trajectory=(), lines=())
    nudge = queries.open_nudge(session, rep_id=rep.id, states=OPEN)
    followups = session.exec(select(FollowUp, Nudge).join(Nudge, col(Nudge.id) == col(FollowUp.nudge_id))
                             .where(FollowUp.rep_id == rep.id, FollowUp.status == "scheduled")
                             .order_by(col(FollowUp.due_at)).limit(5)).all()
    graded = session.exec(select(PracticeSession.scenario_id, Grade.score)
                          .join(Grade, col(Grade.session_id) == col(PracticeSession.id))
                          .where(PracticeSession.rep_id == rep.id).order_by(col(Grade.graded_at))).all()
    by_skill: dict[str, list[int]] = {}
    for scenario_id, score in graded:
        skill = coach.scenarios[scenario_id].skill if scenario_id in coach.scenarios else scenario_id
        by_skill.setdefault(coach.config.criterion_label(skill), []).append(score)
    latest = func.max(WinningLine.saved_at)  # a line the rep landed again in a retake is shown once
    lines = session.exec(select(WinningLine.text).where(WinningLine.rep_id == rep.id).group_by(WinningLine.text)
                         .order_by(latest.desc()).limit(5)).all()
    return blocks.RepHome(
        focus=coach.config.criterion_label(nudge.criterion) if nudge else None,
        nudge_id=nudge.id if nudge else None,
        can_start=bool(nudge and nudge.state in (NudgeState.DELIVERED, NudgeState.PRACTISING)),
        followups=tuple((f.due_at, coach.config.criterion_label(n.criterion)) for f, n in followups),
        trajectory=tuple((skill, tuple(scores[-6:])) for skill, scores in by_skill.items()),
        lines=tuple(lines))


def _manager_part(session: Session, coach: Coach, user_id: str, page: int, now: datetime) -> blocks.ManagerHome | None:
    teams = [t for t in coach.config.teams if user_id in t.deciders()]
    if not teams:
        return None
    team_ids = [t.id for t in teams]
    pending = session.exec(select(Nudge, Rep).join(Rep, col(Rep.id) == col(Nudge.rep_id))
                           .where(col(Nudge.team_id).in_(team_ids), Nudge.state == NudgeState.PENDING_APPROVAL)
                           .order_by(col(Nudge.created_at)).limit(10)).all()
    reps = session.exec(select(Rep).where(col(Rep.team_id).in_(team_ids)).order_by(col(Rep.id))).all()
    criteria = list(coach.config.criteria)
    shown = reps[page * PAGE:(page + 1) * PAGE]
    rows = []
    for rep in shown:
        latest = {}
        for criterion in criteria:
            row = session.exec(select(CallScore).join(Call, col(Call.id) == col(CallScore.call_pk))
                               .where(Call.rep_id == rep.id, CallScore.criterion == criterion)
                               .order_by(col(Call.started_at).desc())).first()
            latest[criterion] = level(row.percent) if row else None
        rows.append((rep.slack_user_id or rep.email or "?", tuple(latest[c] for c in criteria)))
    week = now - timedelta(days=7)
    practised = session.exec(select(func.count(func.distinct(PracticeSession.rep_id)))
                             .join(Rep, col(Rep.id) == col(PracticeSession.rep_id))
                             .where(col(Rep.team_id).in_(team_ids), PracticeSession.started_at >= week)).one()
    waiting = {n.id: session.exec(select(Signal).where(Signal.id == n.signal_id)).first() for n, _ in pending}
    return blocks.ManagerHome(
        pending=tuple((n.id, r.slack_user_id or "?", coach.config.criterion_label(n.criterion),
                       " → ".join(f"{v:.0f}" for v in (waiting[n.id].detail.get("values", []) if waiting[n.id]
                                                        else []))) for n, r in pending),
        criteria=tuple(coach.config.criterion_label(c) for c in criteria), heatmap=tuple(rows),
        page=page, pages=max(1, -(-len(reps) // PAGE)), practised=practised, reps=len(reps))


def enqueue_home(session: Session, coach: Coach, *, user_id: str, page: int = 0) -> None:
    """Publish the user's Home tab (inside the caller's transaction, through the outbox)."""
    rep = queries.find_rep(session, slack_user_id=user_id)
    view = blocks.home_tab(rep_home(session, coach, rep), _manager_part(session, coach, user_id, page, coach.clock()))
    enqueue(session, method="views.publish", channel=None, payload={"user_id": user_id, "view": view},
            now=coach.clock())


def publish_home(coach: Coach, *, user_id: str, page: int = 0) -> None:
    with coach.db.session() as session:
        enqueue_home(session, coach, user_id=user_id, page=page)
