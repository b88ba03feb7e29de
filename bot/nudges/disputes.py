"""A rep who says a nudge does not look right: the comment goes to the manager, who keeps or withdraws it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from bot.coach import Coach
from bot.nudges import lifecycle
from bot.nudges.approval import mention
from bot.slack import blocks
from storage import queries
from storage.models import Dispute, Nudge, NudgeState, OutboxMessage, Rep
from storage.outbox import enqueue, enqueue_ephemeral


@dataclass(frozen=True)
class Outcome:
    status: str
    message: str = ""


def _approval_row(session: Session, nudge_id: int) -> OutboxMessage | None:
    return session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == f"nudge:{nudge_id}:approval")).first()


def open_dispute(coach: Coach, *, nudge_id: int, user_id: str, comment: str) -> Outcome:
    """The rep's comment from the modal: the nudge waits, and the manager sees it in the approval thread."""
    now = coach.clock()
    comment = comment.strip()[:1500]
    with coach.db.session() as session:
        nudge = session.get(Nudge, nudge_id)
        rep = session.get(Rep, nudge.rep_id) if nudge else None
        if nudge is None or rep is None or rep.slack_user_id != user_id:
            return Outcome("not_yours")
        if not lifecycle.advance(session, nudge_id=nudge_id, expected=NudgeState.DELIVERED,
                                 target=NudgeState.DISPUTED):
            enqueue(session, method="chat.postMessage", channel=rep.dm_target, now=now, payload={
                "channel": rep.dm_target, "text": "This drill can no longer be disputed (it has started or ended)."})
            return Outcome("too_late")
        dispute = Dispute(nudge_id=nudge_id, rep_id=rep.id, criterion=nudge.criterion, comment=comment, opened_at=now)
        session.add(dispute)
        session.flush()
        team = coach.config.team(nudge.team_id)
        managers = " ".join(mention(coach, m) for m in team.managers)
        message = blocks.dispute_message(dispute_id=dispute.id, rep_user=user_id, comment=comment, managers=managers)
        anchor = _approval_row(session, nudge_id)
        if anchor is not None and anchor.error is None:  # in the approval message's thread
            enqueue(session, method="chat.postMessage", channel=anchor.channel, anchor=anchor, payload=message,
                    now=now, dedupe_key=f"dispute:{dispute.id}")
        else:  # rep-first nudges have no approval message yet
            enqueue(session, method="chat.postMessage", channel=team.approvals_channel, now=now,
                    payload={"channel": team.approvals_channel, **message}, dedupe_key=f"dispute:{dispute.id}")
        enqueue(session, method="chat.postMessage", channel=rep.dm_target, now=now, payload={
            "channel": rep.dm_target, "text": "Thanks. Your manager has your comment; the drill waits for them."})
        queries.audit(session, at=now, actor=user_id, action="disputed", subject=f"nudge:{nudge_id}", comment=comment)
        return Outcome("disputed")


def settle_dispute(coach: Coach, *, dispute_id: int, user_id: str, keep: bool, channel: str,
                   message_ts: str) -> Outcome:
    """Keep (the drill goes back to the rep) or Withdraw (it ends). Only the team's deciders may."""
    now = coach.clock()
    with coach.db.session() as session:
        dispute = session.get(Dispute, dispute_id)
        nudge = session.get(Nudge, dispute.nudge_id) if dispute else None
    team = coach.config.team(nudge.team_id) if nudge else None
    deciders = team.deciders() if team else []
    allowed = nudge is not None and coach.directory.is_one_of(user_id, deciders)
    with coach.db.session() as session:
        if not allowed:
            who = ", ".join(f"<@{p}>" if "@" not in p else p for p in deciders) or "the team's manager"
            enqueue_ephemeral(session, channel=channel, user=user_id, now=now,
                              text=f"Only {who} can keep or withdraw this drill.")
            queries.audit(session, at=now, actor=user_id, action="dispute_refused", subject=f"dispute:{dispute_id}")
            return Outcome("refused")
        target = NudgeState.DELIVERED if keep else NudgeState.WITHDRAWN
        if not lifecycle.advance(session, nudge_id=nudge.id, expected=NudgeState.DISPUTED, target=target):
            enqueue_ephemeral(session, channel=channel, user=user_id, now=now,
                              text="This dispute was already settled.")
            return Outcome("already_settled")
        dispute = session.get(Dispute, dispute_id)
        dispute.outcome, dispute.decided_by, dispute.decided_at = ("kept" if keep else "withdrawn"), user_id, now
        session.add(dispute)
        rep = session.get(Rep, nudge.rep_id)
        enqueue(session, method="chat.update", channel=channel, now=now, payload={
            "channel": channel, "ts": message_ts,
            **blocks.dispute_decided(rep_user=rep.slack_user_id, comment=dispute.comment, kept=keep,
                                     decider=user_id, when=now)})
        reply = ("Your manager read your comment and kept the drill: it is still waiting for you above."
                 if keep else "Your manager read your comment and withdrew the drill. Thanks for flagging it.")
        enqueue(session, method="chat.postMessage", channel=rep.dm_target, now=now,
                payload={"channel": rep.dm_target, "text": f"<@{user_id}>: {reply}"})
        queries.audit(session, at=now, actor=user_id, action="dispute_kept" if keep else "dispute_withdrawn",
                      subject=f"nudge:{nudge.id}")
        return Outcome(dispute.outcome)


def disputes_by_criterion(session: Session) -> dict[str, int]:
    """How often reps disputed nudges on each criterion: a calibration signal for the scoring source."""
    counts: dict[str, int] = {}
    for dispute in session.exec(select(Dispute)):
        counts[dispute.criterion] = counts.get(dispute.criterion, 0) + 1
    return counts
