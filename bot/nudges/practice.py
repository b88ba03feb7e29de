"""The practice thread: Start practice opens the roleplay in the DM thread; replies get the buyer, the end a grade.

The buyer and the grader may be a model that takes seconds: they run outside any database transaction, while a
lock per thread keeps two quick replies in order. A placeholder ("Dana is typing…") goes out at once and is
edited into the buyer's answer when it is ready.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session, col, select

from bot.coach import Coach
from bot.nudges import lifecycle
from bot.nudges.evidence_sides import BUYER_SIDE
from bot.nudges.followups import after_followup_drill, schedule_followups
from bot.nudges.home import enqueue_home
from bot.practice.feedback import feedback_for
from bot.practice.grader import Grade as GradeResult
from bot.practice.roleplay import roleplay_over
from bot.practice.scenarios import Scenario
from bot.practice.transcript import Turn
from bot.slack import blocks, ids
from bot.telemetry import about_nudge, bind, scoped
from storage import queries
from storage.models import (
    FollowUp,
    Grade,
    Nudge,
    NudgeState,
    OutboxMessage,
    PracticeSession,
    PracticeTurn,
    Rep,
    Signal,
    WinningLine,
)
from storage.outbox import answer_below, enqueue, enqueue_ephemeral

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: str  # what happened, for logs and tests
    message: str = ""


def _buyer_intro(scenario: Scenario) -> str:
    p = scenario.persona
    return f"{p.name}, {p.role} at {p.company}"


def _post(session: Session, coach: Coach, *, channel: str, thread_ts: str | None, message: dict,
          anchor: OutboxMessage | None = None, dedupe_key: str | None = None) -> OutboxMessage:
    """A message in the practice thread; `anchor` is the root message when its ts is not known yet."""
    payload = {"channel": channel, **message, **({"thread_ts": thread_ts} if thread_ts else {})}
    return enqueue(session, method="chat.postMessage", channel=channel, payload=payload, now=coach.clock(),
                   anchor=anchor if not thread_ts else None, dedupe_key=dedupe_key)


def _signal_quotes(session: Session, nudge: Nudge | None) -> list[dict]:
    signal = session.get(Signal, nudge.signal_id) if nudge and nudge.signal_id else None
    return signal.detail.get("quotes", []) if signal else []


def _moment(quotes: list[dict]) -> blocks.Quote | None:
    """The rep's own moment from the call that triggered the nudge."""
    mine = [q for q in quotes if (q.get("speaker") or "rep").lower() not in BUYER_SIDE]
    if not mine:
        return None
    q = mine[0]
    return blocks.Quote(q["text"], q.get("at_s"), q.get("call_title"), q.get("recording_url"))


def _opening(scenario: Scenario, quotes: list[dict]) -> str:
    """Practise the real moment: the buyer's actual words from the call when the scorer quoted them."""
    theirs = [q["text"] for q in quotes if (q.get("speaker") or "").lower() in BUYER_SIDE]
    return theirs[0] if theirs else scenario.opening_line


def _open_roleplay(session: Session, coach: Coach, *, rep: Rep, scenario: Scenario, kind: str, channel: str,
                   thread_ts: str | None, nudge: Nudge | None, followup: FollowUp | None, attempt: int,
                   root: OutboxMessage | None = None) -> PracticeSession:
    """A new attempt: the session, the brief and the buyer's opening line in the thread."""
    now = coach.clock()
    practice = PracticeSession(rep_id=rep.id, nudge_id=nudge.id if nudge else None,
                               followup_id=followup.id if followup else None, scenario_id=scenario.id, kind=kind,
                               channel=channel, thread_ts=thread_ts, attempt=attempt, started_at=now)
    session.add(practice)
    session.flush()
    quotes = _signal_quotes(session, nudge)
    opening = _opening(scenario, quotes)
    session.add(PracticeTurn(session_id=practice.id, seq=0, role="buyer", text=opening, created_at=now))
    _post(session, coach, channel=channel, thread_ts=thread_ts, anchor=root, message=blocks.brief(
        goal=scenario.goal, context_text=scenario.context, buyer=_buyer_intro(scenario), moment=_moment(quotes)))
    _post(session, coach, channel=channel, thread_ts=thread_ts, anchor=root,
          message=blocks.buyer_line(scenario.persona.name, opening))
    queries.audit(session, at=now, actor=rep.slack_user_id or "?", action="practice_started",
                  subject=f"session:{practice.id}", scenario=scenario.id, kind=kind, attempt=attempt)
    return practice


@scoped  # binds the nudge it starts for its own log lines
def start_practice(coach: Coach, *, user_id: str, value: str, channel: str, message_ts: str) -> Outcome:
    """Open the roleplay in the thread of the DM whose Start practice button was clicked."""
    kind, ref = ids.parse_practice_value(value)
    now = coach.clock()
    with coach.db.session() as session:
        if queries.practice_session_at(session, channel=channel, thread_ts=message_ts):
            return Outcome("already_started")
        rep = queries.find_rep(session, slack_user_id=user_id)
        nudge = followup = None
        if kind == "nudge":
            nudge = session.get(Nudge, int(ref))
        elif kind == "followup":
            followup = session.get(FollowUp, int(ref))
            nudge = session.get(Nudge, followup.nudge_id) if followup else None
        scenario = coach.scenario(nudge.scenario_id, nudge.criterion) if nudge else coach.scenarios.get(ref)
        bind(nudge_id=nudge.id if nudge else None)
        refusal = None
        if kind != "scenario" and (nudge is None or rep is None or nudge.rep_id != rep.id):
            refusal = Outcome("not_yours", "This practice belongs to someone else.")
        elif kind == "nudge" and nudge.state not in (NudgeState.DELIVERED, NudgeState.PRACTISING):
            refusal = Outcome("closed", f"This drill is {str(nudge.state).replace('_', ' ')}; try `/drill`.")
        elif scenario is None:
            refusal = Outcome("unknown_scenario", "That drill is no longer in the library; try `/drill`.")
        if refusal:
            enqueue_ephemeral(session, channel=channel, user=user_id, text=refusal.message, now=now)
            return refusal
        if rep is None:
            rep = Rep(slack_user_id=user_id, created_at=now)
        if channel.startswith("D"):
            rep.dm_channel = channel
        session.add(rep)
        session.flush()
        if kind == "nudge":
            lifecycle.advance(session, nudge_id=nudge.id, expected=NudgeState.DELIVERED,
                              target=NudgeState.PRACTISING)
        enqueue(session, method="chat.update", channel=channel, now=now, payload={
            "channel": channel, "ts": message_ts,
            **blocks.practice_started(headline="Practice", scenario_title=scenario.title, goal=scenario.goal),
        })
        _open_roleplay(session, coach, rep=rep, scenario=scenario, channel=channel, thread_ts=message_ts,
                       nudge=nudge, followup=followup, attempt=1,
                       kind="on_demand" if kind == "scenario" else kind)
        return Outcome("started")


def start_on_demand(coach: Coach, *, user_id: str, scenario: Scenario) -> Outcome:
    """`/drill`: no approval needed; the roleplay starts at once in a new thread of the rep's DM."""
    now = coach.clock()
    with coach.db.session() as session:
        rep = queries.find_rep(session, slack_user_id=user_id) or Rep(slack_user_id=user_id, created_at=now)
        session.add(rep)
        session.flush()
        where = rep.dm_target
        root = _post(session, coach, channel=where, thread_ts=None, message={
            "text": f"Drill: {scenario.title}",
            "blocks": [blocks.section(f"*Drill: {scenario.title}*\n{scenario.goal}"),
                       blocks.context("The roleplay runs in this message's thread. Type *done* to finish.")]})
        practice = _open_roleplay(session, coach, rep=rep, scenario=scenario, kind="on_demand", channel=where,
                                  thread_ts=None, nudge=None, followup=None, attempt=1, root=root)
        root.dedupe_key = f"practice:{practice.id}:root"
        session.add(root)
        return Outcome("started")


@about_nudge
def start_nudge_from_home(coach: Coach, *, user_id: str, nudge_id: int) -> Outcome:
    """**Start practice** on the App Home tab: the nudge's roleplay opens in a new thread of the rep's DM."""
    now = coach.clock()
    with coach.db.session() as session:
        nudge = session.get(Nudge, nudge_id)
        rep = session.get(Rep, nudge.rep_id) if nudge else None
        if rep is None or rep.slack_user_id != user_id or nudge.state not in (NudgeState.DELIVERED,
                                                                              NudgeState.PRACTISING):
            return Outcome("not_startable")
        scenario = coach.scenario(nudge.scenario_id, nudge.criterion)
        if scenario is None:
            return Outcome("unknown_scenario")
        lifecycle.advance(session, nudge_id=nudge.id, expected=NudgeState.DELIVERED, target=NudgeState.PRACTISING)
        root = _post(session, coach, channel=rep.dm_target, thread_ts=None, message={
            "text": f"Practice: {scenario.title}",
            "blocks": [blocks.section(f"*Practice: {scenario.title}*\n{scenario.goal}"),
                       blocks.context("The roleplay runs in this message's thread. Type *done* to finish.")]})
        attempts = session.exec(select(PracticeSession.attempt).where(PracticeSession.nudge_id == nudge.id)).all()
        practice = _open_roleplay(session, coach, rep=rep, scenario=scenario, kind="nudge", channel=rep.dm_target,
                                  thread_ts=None, nudge=nudge, followup=None, attempt=max(attempts, default=0) + 1,
                                  root=root)
        root.dedupe_key = f"practice:{practice.id}:root"
        session.add(root)
        queries.audit(session, at=now, actor=user_id, action="practice_started_from_home", subject=f"nudge:{nudge.id}")
        return Outcome("started")


def retake(coach: Coach, *, user_id: str, session_id: int, channel: str) -> Outcome:
    """Another attempt at the same drill, in a new thread under a fresh message."""
    now = coach.clock()
    with coach.db.session() as session:
        before = session.get(PracticeSession, session_id)
        rep = session.get(Rep, before.rep_id) if before else None
        if before is None or rep is None or rep.slack_user_id != user_id:
            return Outcome("not_yours")
        scenario = coach.scenario(before.scenario_id)
        if scenario is None:
            enqueue_ephemeral(session, channel=channel, user=user_id, now=now,
                              text="That drill is no longer in the library; try `/drill`.")
            return Outcome("unknown_scenario")
        attempts = session.exec(select(PracticeSession.attempt).where(
            PracticeSession.rep_id == rep.id, PracticeSession.scenario_id == scenario.id,
            PracticeSession.nudge_id == before.nudge_id)).all()
        attempt = max(attempts, default=0) + 1
        root = _post(session, coach, channel=channel, thread_ts=None, message={
            "text": f"Retake {attempt - 1}: {scenario.title}",
            "blocks": [blocks.section(f"*Retake {attempt - 1}: {scenario.title}*\n{scenario.goal}"),
                       blocks.context("The roleplay runs in this message's thread. Type *done* to finish.")]})
        practice = _open_roleplay(session, coach, rep=rep, scenario=scenario, kind=before.kind, channel=channel,
                                  thread_ts=None, nudge=session.get(Nudge, before.nudge_id) if before.nudge_id
                                  else None, followup=None, attempt=attempt, root=root)
        root.dedupe_key = f"practice:{practice.id}:root"
        session.add(root)
        return Outcome("retake", str(attempt))


def _find_practice(session: Session, *, channel: str, thread_ts: str) -> PracticeSession | None:
    """The practice in this thread, locked; a retake's thread is known by its root message's ts."""
    found = queries.practice_session_at(session, channel=channel, thread_ts=thread_ts, lock=True)
    if found is not None:
        return found
    root = session.exec(select(OutboxMessage).where(
        OutboxMessage.ts == thread_ts, OutboxMessage.sent_channel == channel,
        col(OutboxMessage.dedupe_key).like("practice:%:root"))).first()
    if root is None:
        return None
    practice = session.get(PracticeSession, int(root.dedupe_key.split(":")[1]), with_for_update=True)
    practice.thread_ts, practice.channel = thread_ts, channel  # known from now on (the DM's D… id)
    session.add(practice)
    return practice


@scoped  # binds the practice's nudge for the turn, the buyer and the grade
def handle_reply(coach: Coach, *, user_id: str, channel: str, thread_ts: str | None, text: str,
                 event_id: str | None = None) -> Outcome:
    """A rep's message in the DM: a roleplay turn when it is in an active practice thread.

    `event_id` is recorded in the same transaction as the turn, so a delivery Slack retries has one effect. A
    delivery seen before also finishes what the first one left owed, had its worker died after recording the
    turn (the Slack inbox hands the request over again): the buyer's answer, or the grade."""
    with coach.thread_locks.hold(f"{channel}:{thread_ts}"):  # two quick replies: in order, once each
        now = coach.clock()
        with coach.db.session() as session:
            practice = _find_practice(session, channel=channel, thread_ts=thread_ts) if thread_ts else None
            if event_id and not queries.first_delivery(session, event_id=event_id, now=now):
                taken = _still_owed(session, coach, practice)
                if taken is None:
                    return Outcome("repeated_event")
                log.warning("a roleplay turn's handling was cut short; finishing it now")
            else:
                taken = _take_turn(session, coach, practice, user_id=user_id, channel=channel, thread_ts=thread_ts,
                                   text=text)
                if isinstance(taken, Outcome):
                    return taken
            scenario, turns = taken
            over = _over(coach, practice, scenario, turns)
            placeholder = None if over else _typing(session, coach, practice.id, scenario, seq=len(turns) - 1,
                                                    channel=channel, thread_ts=thread_ts)
            practice_id = practice.id
            bind(nudge_id=practice.nudge_id, practice_id=practice_id)
        if over:
            return _finish(coach, practice_id, scenario, turns)
        reply = coach.buyer.reply(scenario, turns)  # may take seconds: no transaction is open
        with coach.db.session() as session:
            session.add(PracticeTurn(session_id=practice_id, seq=len(turns), role="buyer", text=reply.text,
                                     ends=reply.ends, created_at=coach.clock()))
            enqueue(session, method="chat.update", channel=channel, anchor=placeholder, now=coach.clock(),
                    payload=answer_below(blocks.buyer_line(scenario.persona.name, reply.text), thread_ts))
        turns.append(reply)
        if roleplay_over(scenario, turns):  # the buyer said yes, walked away, or the turns ran out
            return _finish(coach, practice_id, scenario, turns)
        return Outcome("buyer_replied", reply.text)


def _take_turn(session: Session, coach: Coach, practice: PracticeSession | None, *, user_id: str, channel: str,
               thread_ts: str | None, text: str) -> tuple[Scenario, list[Turn]] | Outcome:
    """Record the rep's message as their turn in the practice, or say why it is none (with a pointer)."""
    if practice is None or not practice.active:
        pointer = ("That thread has no practice running. Click *Start practice* on a drill, or type `/drill` to "
                   "start one.")
        _post(session, coach, channel=channel, thread_ts=thread_ts, message={"text": pointer})
        return Outcome("no_practice")
    if session.get(Rep, practice.rep_id).slack_user_id != user_id:
        return Outcome("not_yours")
    history = queries.turns_of(session, session_id=practice.id)
    session.add(PracticeTurn(session_id=practice.id, seq=history[-1].seq + 1, role="rep", text=text,
                             created_at=coach.clock()))
    scenario = coach.scenario(practice.scenario_id)
    if scenario is None:
        practice.active = False
        session.add(practice)
        retired = "This drill was retired from the library while you practised. Start a new one with `/drill`."
        _post(session, coach, channel=channel, thread_ts=thread_ts, message={"text": retired})
        return Outcome("scenario_retired")
    return scenario, [Turn(t.role, t.text, t.ends) for t in history] + [Turn("rep", text)]


def _over(coach: Coach, practice: PracticeSession, scenario: Scenario, turns: list[Turn]) -> bool:
    """The roleplay ends: "done", the turn limit, a closing beat, or a follow-up's retention check asked enough."""
    retention = practice.kind == "followup" and \
        sum(t.role == "rep" for t in turns) >= coach.config.followups.retention_turns
    return roleplay_over(scenario, turns) or retention


def _still_owed(session: Session, coach: Coach,
                practice: PracticeSession | None) -> tuple[Scenario, list[Turn]] | None:
    """What an active practice still owes the rep: a buyer's answer to their last turn, or the grade."""
    scenario = coach.scenario(practice.scenario_id) if practice is not None and practice.active else None
    if scenario is None:
        return None
    turns = [Turn(t.role, t.text, t.ends) for t in queries.turns_of(session, session_id=practice.id)]
    return (scenario, turns) if turns[-1].role == "rep" or _over(coach, practice, scenario, turns) else None


def _typing(session: Session, coach: Coach, practice_id: int, scenario: Scenario, *, seq: int, channel: str,
            thread_ts: str | None) -> OutboxMessage:
    """The "Dana is typing…" placeholder for the rep's turn `seq`, posted once (a finished-late turn reuses it)."""
    key = f"practice:{practice_id}:typing:{seq}"
    posted = session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == key)).first()
    return posted or _post(session, coach, channel=channel, thread_ts=thread_ts,
                           message={"text": f"_{scenario.persona.name} is typing…_"}, dedupe_key=key)


def _previous_score(session: Session, practice: PracticeSession) -> int | None:
    query = (select(Grade.score).join(PracticeSession, col(PracticeSession.id) == col(Grade.session_id))
             .where(PracticeSession.rep_id == practice.rep_id, PracticeSession.scenario_id == practice.scenario_id,
                    PracticeSession.id != practice.id).order_by(col(Grade.graded_at).desc()))
    return session.exec(query).first()


def _finish(coach: Coach, practice_id: int, scenario: Scenario, turns: list[Turn]) -> Outcome:
    """Grade the attempt (outside any transaction), store it, and post the feedback with Retake / Done."""
    result: GradeResult = coach.grader.grade(scenario, turns)
    now = coach.clock()
    with coach.db.session() as session:
        practice = session.get(PracticeSession, practice_id, with_for_update=True)
        if not practice.active:
            return Outcome("already_graded")
        practice.active, practice.ended_at = False, now
        session.add(practice)
        previous = _previous_score(session, practice)
        session.add(Grade(session_id=practice.id, score=result.score, passed=result.passed, graded_at=now,
                          criteria=[{"criterion": c.criterion, "label": c.label, "level": c.level,
                                     "evidence": list(c.evidence), "feedback": c.feedback, "against": c.against,
                                     "why": c.why} for c in result.criteria]))
        winning: dict[str, str] = {}  # a line that earned level 4 on two criteria is saved once, for the first
        for c in result.criteria:
            if c.level == 4 and not c.against:
                winning.update((quote, c.criterion) for quote in c.evidence if quote not in winning)
        session.add_all(WinningLine(rep_id=practice.rep_id, session_id=practice.id, scenario_id=scenario.id,
                                    criterion=criterion, text=quote, saved_at=now)
                        for quote, criterion in winning.items())
        due: list = []
        if practice.nudge_id and practice.kind == "nudge" and result.passed:  # proficiency completes the nudge
            if lifecycle.advance(session, nudge_id=practice.nudge_id, expected=NudgeState.PRACTISING,
                                 target=NudgeState.COMPLETED, completed_at=now):
                due = schedule_followups(session, coach, nudge=session.get(Nudge, practice.nudge_id),
                                         completed_at=now)
        if practice.followup_id:
            followup = session.get(FollowUp, practice.followup_id)
            if followup.status != "done":  # the first attempt at a follow-up drill adapts the ladder
                after_followup_drill(session, coach, followup=followup, passed=result.passed)
        _post(session, coach, channel=practice.channel, thread_ts=practice.thread_ts, message=blocks.feedback(
            score=result.score, passed=result.passed, note=feedback_for(scenario, result), next_followups=due,
            previous=previous, session_id=practice.id))
        queries.audit(session, at=now, actor="rehearse", action="practice_graded", subject=f"session:{practice.id}",
                      score=result.score, passed=result.passed, attempt=practice.attempt)
        rep = session.get(Rep, practice.rep_id)
        if rep.slack_user_id:
            enqueue_home(session, coach, user_id=rep.slack_user_id)  # new scores, maybe a completed nudge
    return Outcome("graded", f"{result.score}")


def grade_details(coach: Coach, *, user_id: str, session_id: int) -> dict | None:
    """The Details modal of a rep's graded attempt: every criterion with its quotes and reasons; None when the
    attempt is not theirs or not graded."""
    with coach.db.session() as session:
        practice = session.get(PracticeSession, session_id)
        rep = session.get(Rep, practice.rep_id) if practice else None
        grade = session.exec(select(Grade).where(Grade.session_id == session_id)).first() if rep else None
        if grade is None or rep.slack_user_id != user_id:
            return None
        scenario = coach.scenario(practice.scenario_id)
        lines = [blocks.GradeLine(c["label"], c["level"], tuple(c["evidence"]), c["feedback"]) for c in grade.criteria]
        return blocks.grade_details(title=f"{scenario.title if scenario else practice.scenario_id}: {grade.score}/100",
                                    lines=lines)


def finish_for_now(coach: Coach, *, user_id: str, session_id: int, channel: str, message_ts: str) -> Outcome:
    """The rep clicked Done on the feedback: the buttons go, and a line says what happens next."""
    with coach.db.session() as session:
        practice = session.get(PracticeSession, session_id)
        rep = session.get(Rep, practice.rep_id) if practice else None
        if rep is None or rep.slack_user_id != user_id:
            return Outcome("not_yours")
        grade = session.exec(select(Grade).where(Grade.session_id == session_id)).first()
        nudge = session.get(Nudge, practice.nudge_id) if practice.nudge_id else None
        done = nudge is None or nudge.state == NudgeState.COMPLETED
        enqueue(session, method="chat.update", channel=channel, now=coach.clock(), payload={
            "channel": channel, "ts": message_ts,
            **blocks.feedback_closed(score=grade.score if grade else 0,
                                     note="Nice work. Your follow-ups will check the skill held." if done else
                                     "Saved. Retake it any time with `/drill` before your manager checks in.")})
        return Outcome("done")
