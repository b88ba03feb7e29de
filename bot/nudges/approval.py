"""Manager approval: the Approve / Skip message, who may decide, and exactly one decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.nudges import lifecycle
from bot.nudges.budget import next_working_time
from bot.slack import blocks, ids
from storage import queries
from storage.models import Nudge, NudgeState, OutboxMessage, OutboxStatus, Rep, Signal
from storage.outbox import enqueue, enqueue_ephemeral


def _limit(detail: dict, rule: str) -> str:
    threshold = blocks.format_value(detail.get("threshold", 0), detail.get("unit", "percent"))
    if rule == "metric_above":
        return f"limit: above {threshold}"
    if rule == "metric_below":
        return f"limit: below {threshold}"
    return f"threshold {threshold}" + (", the team's baseline" if detail.get("calibrated") else "")


def approval_card(session: Session, coach: Coach, *, nudge: Nudge) -> blocks.ApprovalCard:
    """Everything the approval message shows, from the nudge, its signal and the evidence attached since."""
    rep = session.get(Rep, nudge.rep_id)
    signal = session.get(Signal, nudge.signal_id) if nudge.signal_id else None
    attached = list(session.exec(select(Signal).where(Signal.nudge_id == nudge.id, Signal.status == "attached")
                                 .order_by(col(Signal.id).desc())))
    latest = attached[0] if attached else signal
    detail = latest.detail if latest else {}
    quotes = [q for s in [*attached, signal] if s for q in s.detail.get("quotes", ())]
    seen: set[str] = set()
    unique = [q for q in quotes if not (q["text"] in seen or seen.add(q["text"]))]
    waiting = session.exec(select(Signal.criterion).where(Signal.rep_id == nudge.rep_id, Signal.status == "waiting")
                           .distinct()).all() if nudge.state == NudgeState.PENDING_APPROVAL else []
    scenario = coach.scenario(nudge.scenario_id, nudge.criterion)
    priority = coach.config.priority_for(nudge.criterion)
    return blocks.ApprovalCard(
        nudge_id=nudge.id,
        rep_user=rep.slack_user_id or rep.email or "unknown",
        criterion_label=coach.config.criterion_label(nudge.criterion),
        values=tuple(blocks.format_value(v, detail.get("unit", "percent"))
                     for v in detail.get("values", detail.get("scores", ()))),
        limit=_limit(detail, latest.rule if latest else "below_threshold"),
        quotes=tuple(blocks.Quote(q["text"], q.get("at_s"), q.get("call_title"), q.get("recording_url"))
                     for q in unique),
        scenario_title=scenario.title if scenario else f"{nudge.scenario_id} (no longer in the library)",
        scenario_summary=scenario.goal if scenario else "Fix the scenario in coach.yaml, then approve.",
        priority=priority.name if priority else None,
        waiting=tuple(coach.config.criterion_label(c) for c in waiting if c != nudge.criterion),
    )


def _working_start(coach: Coach, timezone: str | None, now: datetime) -> datetime:
    budget = coach.config.budget
    return next_working_time(now, timezone=timezone or "UTC", working_days=budget.working_days,
                             hours=budget.working_hours)


def request_approval(session: Session, coach: Coach, *, nudge: Nudge, rep: Rep, signal: Signal) -> None:
    """Post the Approve / Skip message to the team's approvals channel, in the team's working hours."""
    team = coach.config.team(nudge.team_id)
    lifecycle.check_transition(nudge.state, NudgeState.PENDING_APPROVAL)
    nudge.state = NudgeState.PENDING_APPROVAL
    nudge.approval_channel = team.approvals_channel
    session.add(nudge)
    session.flush()
    card = approval_card(session, coach, nudge=nudge)
    now = coach.clock()
    enqueue(session, method="chat.postMessage", channel=team.approvals_channel,
            payload={"channel": team.approvals_channel, **blocks.approval_message(card)},
            dedupe_key=f"nudge:{nudge.id}:approval", now=now,
            not_before=_working_start(coach, team.timezone, now))
    queries.audit(session, at=now, actor="rehearse", action="approval_requested",
                  subject=f"nudge:{nudge.id}", rep=rep.slack_user_id, criterion=nudge.criterion)


def refresh_card(session: Session, coach: Coach, *, nudge: Nudge) -> None:
    """Show new evidence on a pending approval message (edits the posted message once it is sent)."""
    posted = session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"nudge:{nudge.id}:approval")).first()
    if nudge.state != NudgeState.PENDING_APPROVAL or posted is None or posted.status == OutboxStatus.FAILED:
        return
    message = blocks.approval_message(approval_card(session, coach, nudge=nudge))
    if posted.status != OutboxStatus.SENT:  # not out yet: send the fuller message instead
        posted.payload = {"channel": posted.channel, **message}
        session.add(posted)
        return
    enqueue(session, method="chat.update", channel=posted.channel, anchor=posted, payload=message, now=coach.clock())


@dataclass(frozen=True)
class Decision:
    outcome: str  # "approved", "skipped", "refused", "already_decided", "unknown_nudge"
    message: str


def decide(coach: Coach, *, nudge_id: int, user_id: str, approve: bool, channel: str, message_ts: str) -> Decision:
    """Apply a manager's click. Anyone else is refused; a second click finds it already decided."""
    now = coach.clock()
    with coach.db.session() as session:
        nudge = session.get(Nudge, nudge_id)
        rep = session.get(Rep, nudge.rep_id) if nudge else None
    team = coach.config.team(nudge.team_id) if nudge else None
    deciders = team.deciders() if team else []
    # Slack lookups happen here, before the transaction: who may decide, and the rep's own time zone.
    allowed = nudge is not None and coach.directory.is_one_of(user_id, deciders)
    rep_zone = (coach.directory.timezone_for(rep.slack_user_id) if rep and rep.slack_user_id else None) or (
        team.timezone if team else None)
    with coach.db.session() as session:
        if nudge is None:
            decision = Decision("unknown_nudge", "That practice suggestion no longer exists.")
            enqueue_ephemeral(session, channel=channel, user=user_id, text=decision.message, now=now)
            return decision
        scenario = coach.scenario(nudge.scenario_id, nudge.criterion)
        if approve and scenario is None:
            decision = Decision("no_scenario", f"The drill {nudge.scenario_id!r} is no longer in the scenario "
                                "library; fix `criteria.{nudge.criterion}.scenario` in coach.yaml and click again.")
            enqueue_ephemeral(session, channel=channel, user=user_id, text=decision.message, now=now)
            return decision
        if not allowed:
            who = ", ".join(f"<@{p}>" if "@" not in p else p for p in deciders) or "the team's manager"
            decision = Decision("refused", f"Only {who} can approve or skip practice for this team.")
            enqueue_ephemeral(session, channel=channel, user=user_id, text=decision.message, now=now)
            queries.audit(session, at=now, actor=user_id, action="approval_refused", subject=f"nudge:{nudge_id}")
            return decision
        target = NudgeState.APPROVED if approve else NudgeState.SKIPPED
        won = lifecycle.advance(session, nudge_id=nudge_id, expected=NudgeState.PENDING_APPROVAL,
                                 target=target, decided_by=user_id, decided_at=now,
                                 approval_ts=message_ts)
        nudge = session.get(Nudge, nudge_id)
        if not won:
            verb = str(nudge.state).replace("_", " ")
            by = f" by <@{nudge.decided_by}>" if nudge.decided_by else ""
            decision = Decision("already_decided", f"This suggestion was already {verb}{by}.")
            enqueue_ephemeral(session, channel=channel, user=user_id, text=decision.message, now=now)
            return decision
        rep = session.get(Rep, nudge.rep_id)
        card = approval_card(session, coach, nudge=nudge)
        enqueue(session, method="chat.update", channel=channel,
                payload={"channel": channel, "ts": message_ts,
                         **blocks.decided_message(card, approved=approve, decider=user_id, when=now)},
                dedupe_key=f"nudge:{nudge_id}:decided", now=now)
        if approve:
            invite = blocks.practice_invite(
                value=ids.practice_value("nudge", nudge_id),
                headline=f"Your manager picked a 5-minute drill on {card.criterion_label.lower()}.",
                scenario_title=scenario.title, goal=scenario.goal,
            )
            enqueue(session, method="chat.postMessage", channel=rep.dm_target,
                    payload={"channel": rep.dm_target, **invite}, dedupe_key=f"nudge:{nudge_id}:invite",
                    now=now, not_before=_working_start(coach, rep_zone, now))
            lifecycle.advance(session, nudge_id=nudge_id, expected=NudgeState.APPROVED,
                               target=NudgeState.DELIVERED)
        queries.audit(session, at=now, actor=user_id, action=str(target), subject=f"nudge:{nudge_id}")
        return Decision(str(target), f"{str(target).capitalize()}.")
