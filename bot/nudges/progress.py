"""What a rep sees of their own progress: `/progress` and the App Home tab."""

from __future__ import annotations

import re

from sqlmodel import col, func, select

from bot.coach import Coach
from bot.nudges.home import level, rep_home
from bot.nudges.intake import team_for
from bot.nudges.lifecycle import OPEN
from bot.slack import blocks
from storage import queries
from storage.models import Grade, PracticeSession


def focus_skill(coach: Coach, *, user_id: str) -> str | None:
    """The criterion of the rep's open nudge, if any."""
    with coach.db.reading() as session:
        rep = queries.find_rep(session, slack_user_id=user_id)
        nudge = queries.open_nudge(session, rep_id=rep.id, states=OPEN) if rep else None
    return nudge.criterion if nudge else None


def progress_text(coach: Coach, *, user_id: str) -> str:
    """Level and trend per skill, sessions this month, the open nudge and the next follow-up."""
    now = coach.clock()
    with coach.db.reading() as session:
        rep = queries.find_rep(session, slack_user_id=user_id)
        mine = rep_home(session, coach, rep)
        month = session.exec(select(func.count()).select_from(Grade)
                             .join(PracticeSession, col(PracticeSession.id) == col(Grade.session_id))
                             .where(PracticeSession.rep_id == (rep.id if rep else -1),
                                    Grade.graded_at >= now.replace(day=1, hour=0, minute=0, second=0,
                                                                   microsecond=0))).one()
    lines = [f"*Focus skill:* {mine.focus or 'none right now; start a drill with `/drill`'}",
             f"*Practice sessions this month:* {month}"]
    for skill, scores in mine.trajectory:
        lines.append(f"• {skill}: level {level(scores[-1])}/4, scores {' → '.join(str(s) for s in scores)}")
    if mine.followups:
        due, label = mine.followups[0]
        lines.append(f"*Next follow-up:* {blocks.slack_time(due)} ({label.lower()})")
    return "\n".join(lines)


MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def progress_answer(coach: Coach, *, viewer: str, text: str) -> str:
    """`/progress` for yourself, or `/progress @rep` for a rep of a team you manage (anyone else is refused)."""
    mentioned = MENTION.search(text or "")
    if mentioned is None or mentioned[1] == viewer:
        return progress_text(coach, user_id=viewer)
    rep_id = mentioned[1]
    with coach.db.reading() as session:
        rep = queries.find_rep(session, slack_user_id=rep_id)
    team_id = rep.team_id if rep and rep.team_id else team_for(coach.config, slack_user_id=rep_id, email=None)
    team = coach.config.team(team_id) if team_id else None
    if team is None or not coach.directory.is_one_of(viewer, team.deciders()):
        return f"Only <@{rep_id}>'s managers can see their progress. Try `/progress` for your own."
    return f"*Progress for <@{rep_id}>*\n" + progress_text(coach, user_id=rep_id)
