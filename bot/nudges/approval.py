"""Manager approval: the Approve / Skip message, who may decide, and exactly one decision."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from bot.coach import Coach
from bot.nudges import lifecycle
from bot.slack import blocks, ids
from storage import queries
from storage.models import Nudge, NudgeState, Rep, Signal
from storage.outbox import enqueue, enqueue_ephemeral


def approval_card(coach: Coach, *, nudge: Nudge, rep: Rep, signal: Signal | None) -> blocks.ApprovalCard:
    detail = signal.detail if signal else {}
    scenario = coach.scenario(nudge.scenario_id, nudge.criterion)
    team = coach.config.team(nudge.team_id)
    return blocks.ApprovalCard(
        nudge_id=nudge.id,
        rep_user=rep.slack_user_id or rep.email or "unknown",
        team=team.title if team else nudge.team_id,
        criterion_label=coach.config.criterion_label(nudge.criterion),
        scores=tuple(detail.get("scores", ())),
        threshold=detail.get("threshold", 0),
        quotes=tuple(blocks.Quote(q["text"], q.get("at_s"), q.get("call_title"), q.get("recording_url"))
                     for q in detail.get("quotes", ())),
        scenario_title=scenario.title if scenario else f"{nudge.scenario_id} (no longer in the library)",
        scenario_summary=scenario.goal if scenario else "Fix the scenario in coach.yaml, then approve.",
    )


def request_approval(session: Session, coach: Coach, *, nudge: Nudge, rep: Rep, signal: Signal) -> None:
    """Post the Approve / Skip message to the team's approvals channel (via the outbox)."""
    team = coach.config.team(nudge.team_id)
    lifecycle.check_transition(nudge.state, NudgeState.PENDING_APPROVAL)
    nudge.state = NudgeState.PENDING_APPROVAL
    nudge.approval_channel = team.approvals_channel
    session.add(nudge)
    card = approval_card(coach, nudge=nudge, rep=rep, signal=signal)
    enqueue(session, method="chat.postMessage", channel=team.approvals_channel,
            payload={"channel": team.approvals_channel, **blocks.approval_message(card)},
            dedupe_key=f"nudge:{nudge.id}:approval", now=coach.clock())
    queries.audit(session, at=coach.clock(), actor="rehearse", action="approval_requested",
                  subject=f"nudge:{nudge.id}", rep=rep.slack_user_id, criterion=nudge.criterion)


@dataclass(frozen=True)
class Decision:
    outcome: str  # "approved", "skipped", "refused", "already_decided", "unknown_nudge"
    message: str


def decide(coach: Coach, *, nudge_id: int, user_id: str, approve: bool, channel: str, message_ts: str) -> Decision:
    """Apply a manager's click. Anyone else is refused; a second click finds it already decided."""
    now = coach.clock()
    with coach.db.session() as session:
        nudge = session.get(Nudge, nudge_id)
    team = coach.config.team(nudge.team_id) if nudge else None
    deciders = team.deciders() if team else []
    allowed = nudge is not None and coach.directory.is_one_of(user_id, deciders)  # may ask Slack
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
        signal = session.get(Signal, nudge.signal_id) if nudge.signal_id else None
        card = approval_card(coach, nudge=nudge, rep=rep, signal=signal)
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
                    payload={"channel": rep.dm_target, **invite},
                    dedupe_key=f"nudge:{nudge_id}:invite", now=now)
            lifecycle.advance(session, nudge_id=nudge_id, expected=NudgeState.APPROVED,
                               target=NudgeState.DELIVERED)
        queries.audit(session, at=now, actor=user_id, action=str(target), subject=f"nudge:{nudge_id}")
        return Decision(str(target), f"{str(target).capitalize()}.")
