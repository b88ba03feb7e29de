"""What a rep sees of their own progress: `/progress` and the App Home tab."""

from __future__ import annotations

import re

from bot.coach import Coach
from bot.nudges.intake import team_for
from bot.nudges.lifecycle import OPEN
from bot.slack import blocks
from storage import queries


def _facts(coach: Coach, user_id: str) -> dict:
    with coach.db.reading() as session:
        rep = queries.find_rep(session, slack_user_id=user_id)
        if rep is None:
            return {"focus": None, "sessions": 0, "last_score": None, "next_followup": None}
        nudge = queries.open_nudge(session, rep_id=rep.id, states=OPEN)
        sessions, last, followup = queries.rep_progress(session, rep_id=rep.id)
    return {
        "focus": coach.config.criterion_label(nudge.criterion) if nudge else None,
        "sessions": sessions,
        "last_score": last.score if last else None,
        "next_followup": followup.due_at if followup else None,
    }


def focus_skill(coach: Coach, *, user_id: str) -> str | None:
    """The criterion of the rep's open nudge, if any."""
    with coach.db.reading() as session:
        rep = queries.find_rep(session, slack_user_id=user_id)
        nudge = queries.open_nudge(session, rep_id=rep.id, states=OPEN) if rep else None
    return nudge.criterion if nudge else None


def progress_text(coach: Coach, *, user_id: str) -> str:
    facts = _facts(coach, user_id)
    lines = [f"*Focus skill:* {facts['focus'] or 'none right now'}",
             f"*Practice sessions graded:* {facts['sessions']}"]
    if facts["last_score"] is not None:
        lines.append(f"*Last score:* {facts['last_score']}/100")
    if facts["next_followup"] is not None:
        lines.append(f"*Next follow-up:* {blocks.slack_time(facts['next_followup'])}")
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
