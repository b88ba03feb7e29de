"""The weekly digest and each manager's private note: pure renderers from figures to message dicts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.slack.blocks import context, escape, section

if TYPE_CHECKING:
    from bot.nudges.digest import DigestFigures, ManagerFigures

HEADER_LIMIT = 150


def _header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:HEADER_LIMIT]}}


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _hours(value: float) -> str:
    return f"{value / 24:.1f} days" if value >= 48 else f"{value:.1f} h"


def _coverage(f: DigestFigures) -> str:
    if not f.reps:
        return "*Coverage:* no reps on this team yet: add them under `reps` in coach.yaml."
    line = f"*Coverage:* {f.reps_practised} of {_plural(f.reps, 'rep')} practised ({_pct(f.coverage)})"
    line += f" · {_plural(f.sessions_completed, 'session')} completed"
    if f.median_hours_signal_to_practice is not None:
        line += f"\n*Signal to first practice:* median {_hours(f.median_hours_signal_to_practice)}"
    if not f.reps_practised:
        line += ("\nNo practice this week: approve the pending drills below"
                 if f.pending_approvals else "\nNo practice this week")
        line += " or start one with `/drill`."
    return line


def _gains(f: DigestFigures, labels: dict[str, str]) -> str:
    if not f.score_gain_by_skill:
        return "*Score gain, first try to best:* no graded drills this week. A rep's second attempt shows the gain."
    rows = [f"• {escape(labels.get(c, c))}: {gain:+.0f} points" for c, gain in f.score_gain_by_skill.items()]
    return "*Score gain, first try to best* (average per rep):\n" + "\n".join(rows)


def _transfer(f: DigestFigures) -> str:
    if f.transfer_rate is None:
        return ("*Live-call transfer:* not enough scored calls after completed practice yet "
                "(3 calls per rep are needed).")
    return (f"*Live-call transfer:* {_pct(f.transfer_rate)} of {_plural(f.transfer_counted, 'completed drill')} "
            "improved or held on later calls")


def _gaps(f: DigestFigures, labels: dict[str, str]) -> str:
    if not f.top_gaps:
        return "*Top open gaps:* none: every flagged skill has a drill under way."
    rows = [f"• {escape(labels.get(c, c))}: {_plural(n, 'open signal')}" for c, n in f.top_gaps]
    return "*Top open gaps:*\n" + "\n".join(rows)


def _approvals(f: DigestFigures) -> str:
    line = f"*Approvals:* {f.pending_approvals} pending · {f.expired_approvals} expired this week"
    if f.pending_approvals:
        line += "\nPending drills are waiting in the approvals channel: Approve or Skip each one."
    return line


def _strategy(f: DigestFigures) -> str:
    made = f"*Strategy:* {_plural(f.nudges_made, 'nudge')} made this week"
    if not f.strategy:
        return made + ". Add `priorities` to coach.yaml to see how coaching lines up with strategy."
    rows = [f"• {escape(name)}: {_plural(n, 'nudge')}" for name, n in f.strategy.items()]
    return made + ", by priority:\n" + "\n".join(rows)


def _improvers(f: DigestFigures) -> str:
    if not f.improvers:
        return "*Biggest improvers:* nobody improved on a retake this week. Retakes with `/drill` show progress."
    rows = [f"• <@{user}>: {gain:+.0f} points" for user, gain in f.improvers]
    return "*Biggest improvers* (first try to best):\n" + "\n".join(rows)


def digest_message(figures: DigestFigures, labels: dict[str, str]) -> dict:
    """The team's weekly post: coverage first, then results, gaps, approvals and strategy."""
    f = figures
    title = f"{f.team_name}: coaching week of {f.week_start:%b %d}"
    blocks = [
        _header(title),
        section(_coverage(f)),
        section(_gains(f, labels)),
        section(_transfer(f)),
        section(_gaps(f, labels)),
        section(_approvals(f)),
        section(_strategy(f)),
        section(_improvers(f)),
        context("Chart of the team average per skill over 8 weeks in the thread."),
    ]
    text = (f"{title}: {f.reps_practised} of {_plural(f.reps, 'rep')} practised ({_pct(f.coverage)}), "
            f"{_plural(f.sessions_completed, 'session')} completed, {f.pending_approvals} approvals pending.")
    return {"text": text, "blocks": blocks}


def manager_note(figures: ManagerFigures) -> dict:
    """A manager's private weekly note on their own coaching coverage."""
    f = figures
    if f.median_hours_to_decide is None:
        latency = "You decided no approvals this week."
    else:
        latency = (f"You decided {_plural(f.decided, 'approval')}, median {_hours(f.median_hours_to_decide)} "
                   "from request to decision.")
    if f.pending_approvals:
        latency += f" {_plural(f.pending_approvals, 'drill')} still waiting for you in the approvals channel."
    if f.never_coached:
        shown = ", ".join(f"<@{p}>" if p[:1] in "UW" and "@" not in p else escape(p) for p in f.never_coached[:20])
        more = f" and {len(f.never_coached) - 20} more" if len(f.never_coached) > 20 else ""
        reach = (f"{_plural(len(f.never_coached), 'rep')} never coached: {shown}{more}. "
                 "Their calls have not flagged a skill yet; suggest a drill with `/drill` in a 1:1.")
    else:
        reach = "Every rep on the team has had at least one coaching nudge."
    blocks = [
        section(f"*Your coaching week of {f.week_start:%b %d}* ({escape(f.team_name)})\n{latency}"),
        section(reach),
        context("Only you see this note."),
    ]
    text = f"Your coaching week of {f.week_start:%b %d}: {latency}"
    return {"text": text, "blocks": blocks}
