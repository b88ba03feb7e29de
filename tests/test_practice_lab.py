"""The practice lab in the DM thread: the real moment, ordered replies, retakes, proficiency, winning lines."""

from __future__ import annotations

import re
import threading
import time

from sqlmodel import select

from bot.demo.run import plain
from bot.practice.transcript import Turn
from bot.slack import ids
from storage.models import FollowUp, Nudge, NudgeState, WinningLine
from tests.conftest import MANAGER, OUTSIDER, REP, low_calls
from tests.transcripts import TRANSCRIPTS

STRONG = TRANSCRIPTS["price-objection"]["strong"]
WEAK = TRANSCRIPTS["price-objection"]["weak"]


def _approved_invite(harness, calls=None) -> dict:
    harness.send_calls(calls or low_calls())
    harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER)
    invite = harness.invite()
    harness.slack.click(invite, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    return invite


def _nudge_state(harness) -> NudgeState:
    with harness.app.coach.db.session() as session:
        return session.exec(select(Nudge)).one().state


def test_the_roleplay_opens_with_the_buyers_own_words_from_the_call(harness):
    calls = low_calls()
    calls[-1]["scores"][0]["evidence"].append({"quote": "Your competitor came in at 30% less.", "at_s": 700,
                                               "speaker": "customer"})
    invite = _approved_invite(harness, calls)
    brief, opening = harness.thread(invite)[:2]
    assert "Your competitor came in at 30% less." in opening["text"]
    assert "I guess we could knock 30% off" in brief["text"], "the brief quotes the rep's own moment"


def test_a_weak_attempt_keeps_the_nudge_open_and_a_retake_shows_the_progress(harness):
    invite = _approved_invite(harness)
    weak = harness.practise(invite, WEAK)
    assert "Not there yet" in weak["text"] and _nudge_state(harness) == NudgeState.PRACTISING
    harness.slack.click(weak, ids.RETAKE, user=REP)
    root = harness.standin.wait_for(lambda: next((m for m in harness.standin.messages_in(REP)
                                                 if m["text"].startswith("Retake 1")), None))
    harness.standin.wait_for(lambda: len(harness.thread(root)) >= 2)
    strong = harness.practise(root, STRONG)
    assert "Proficient" in strong["text"] and "on your last attempt" in strong["text"]
    assert _nudge_state(harness) == NudgeState.COMPLETED
    with harness.app.coach.db.session() as session:
        assert len(session.exec(select(FollowUp)).all()) == 2
        lines = session.exec(select(WinningLine)).all()
    assert lines and all(any(line.text in said for said in STRONG) for line in lines)
    harness.slack.click(strong, ids.PRACTICE_DONE, user=REP)
    harness.standin.wait_for(lambda: strong.get("updated"))
    assert not any(b["type"] == "actions" for b in strong["blocks"])


class SlowBuyer:
    """A buyer that takes its time, answering with what the rep said (to check order)."""

    def __init__(self, delay: float):
        self.delay = delay

    def reply(self, scenario, turns):  # noqa: ANN001, ANN201
        time.sleep(self.delay)
        return Turn("buyer", f"(answering) {turns[-1].text}")


def test_the_feedback_shows_one_strength_and_one_fix_and_details_open_every_criterion(harness):
    feedback = harness.practise(_approved_invite(harness), WEAK)
    shown = plain(feedback)

    assert "Strength · " in shown or "Fix · " in shown
    assert "Try:" in shown and len(shown.split()) <= 130  # 120 words of feedback, plus the three buttons
    quotes = re.findall(r"“([^”]+)”", shown)
    assert len(quotes) == len(set(quotes)), "no quote shown twice"
    harness.slack.click(feedback, ids.GRADE_DETAILS, user=OUTSIDER)  # someone else's click opens nothing
    harness.slack.click(feedback, ids.GRADE_DETAILS, user=REP)
    details = harness.modal(0)
    labels = [c.label for c in harness.app.coach.scenarios["price-objection"].rubric]
    assert all(f"{label}: level" in plain(details) for label in labels)
    assert len(harness.standin.modals) == 1


def test_two_quick_replies_are_answered_in_order_once_each(start_app):
    harness = start_app(buyer=SlowBuyer(0.5))
    invite = _approved_invite(harness)
    started = time.monotonic()
    answers = [harness.slack.dm(user=REP, channel=invite["channel"], text=text, thread_ts=invite["ts"])
               for text in ("What is the budget compared against?", "And who else weighs in?")]
    assert all(a.status_code == 200 for a in answers) and time.monotonic() - started < 0.5, "acked at once"
    typing = harness.standin.wait_for(lambda: [m for m in harness.thread(invite) if "typing" in m["text"]])
    assert typing, "a placeholder shows at once"
    harness.standin.wait_for(lambda: len(harness.thread(invite)) == 4 and
                             all("typing" not in m["text"] for m in harness.thread(invite)), timeout=10)
    replies = [m["text"] for m in harness.thread(invite)[2:]]
    assert replies == ["Dana Whitfield: (answering) What is the budget compared against?",
                       "Dana Whitfield: (answering) And who else weighs in?"]


def test_clicks_are_acknowledged_while_the_model_is_busy(start_app):
    harness = start_app(buyer=SlowBuyer(1))
    invite = _approved_invite(harness)
    for i in range(4):
        harness.slack.dm(user=REP, channel=invite["channel"], text=f"question {i}?", thread_ts=invite["ts"])
    results = []

    def click():
        begun = time.monotonic()
        harness.slack.command(ids.PROGRESS_COMMAND, user=REP)
        results.append(time.monotonic() - begun)

    threads = [threading.Thread(target=click) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(results) < 1.0, results


def test_progress_shows_level_and_trend_per_skill(harness):
    invite = _approved_invite(harness)
    harness.practise(invite, STRONG)
    shown = harness.slack.command(ids.PROGRESS_COMMAND, user=REP).text
    assert "Practice sessions this month:* 1" in shown and "Objection handling: level 4/4, scores" in shown
    assert "Next follow-up:" in shown


def test_a_winning_line_is_saved_once_and_shown_once_on_the_home_tab(harness):
    """A line that earns level 4 on two criteria, and the same line landed again in a retake: one entry each time
    it is saved, and one line on the rep's App Home."""
    listening = TRANSCRIPTS["active-listening"]["strong"]
    assert harness.slack.command(ids.DRILL_COMMAND, user=REP, text="active-listening").status_code == 200
    drill = harness.invite()
    harness.standin.wait_for(lambda: len(harness.thread(drill)) >= 2)
    first = harness.practise(drill, listening)
    harness.slack.click(first, ids.RETAKE, user=REP)
    retake = harness.standin.wait_for(lambda: next((m for m in harness.standin.messages_in(REP)
                                                    if m["text"].startswith("Retake 1")), None))
    harness.standin.wait_for(lambda: len(harness.thread(retake)) >= 2)
    harness.practise(retake, listening)
    with harness.app.coach.db.session() as session:
        saved = [(line.session_id, line.text) for line in session.exec(select(WinningLine))]
    assert saved and len(saved) == len(set(saved)), "a line saved twice in one attempt"
    assert len({session_id for session_id, _ in saved}) == 2, "both attempts saved their lines"
    harness.slack.event({"type": "app_home_opened", "user": REP, "tab": "home"})
    home = harness.standin.wait_for(lambda: harness.standin.views.get(REP))
    shown = next(b["text"]["text"] for b in home["blocks"] if "Your winning lines" in b.get("text", {}).get("text", ""))
    quoted = [line for line in shown.splitlines() if line.startswith("> ")]
    assert quoted and len(quoted) == len(set(quoted)), shown


class DyingBuyer:
    """The buyer of a worker that dies mid-reply: it never answers (released at the end, it fails)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def reply(self, scenario, turns):  # noqa: ANN001, ANN201
        self.release.wait(30)
        raise RuntimeError("this worker is gone")


def _reply_while_the_buyer_thinks(h) -> dict:  # noqa: ANN001
    """`/drill price-objection`, then a reply in its thread: returns the drill once "typing…" is up."""
    assert h.slack.command(ids.DRILL_COMMAND, user=REP, text="price-objection").status_code == 200
    drill = h.invite()
    h.standin.wait_for(lambda: len(h.thread(drill)) >= 2)
    h.slack.dm(user=REP, channel=drill["channel"], text="What is the 186 compared against?", thread_ts=drill["ts"])
    h.standin.wait_for(lambda: len(h.thread(drill)) == 3 and "typing" in h.thread(drill)[-1]["text"])
    return drill


def test_a_reply_whose_worker_died_mid_answer_is_answered_by_the_next_worker_once(start_app):
    """Worker A records the rep's turn, posts "typing…" and dies waiting for the model. While A lives its request
    stays in the inbox and A renews the lease; once the lease lapses, worker B takes the request again and the
    buyer answers in the same placeholder: one answer, no second placeholder, nothing lost."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from storage.models import PracticeTurn, SlackInboxItem
    from tests.test_slack_inbox import stored

    a_offset = [timedelta(0)]
    dying = DyingBuyer()
    a = start_app(buyer=dying, clock=lambda: datetime.now(UTC) + a_offset[0])
    b = start_app()  # the scripted buyer
    try:
        drill = _reply_while_the_buyer_thinks(a)
        time.sleep(1)
        assert len(stored(b.app)) == 1 and "typing" in a.thread(drill)[-1]["text"], \
            "the request stays, leased, while A works on it: B leaves it alone"
        metrics = a.http.get(f"{a.url}/metrics").text
        assert "rehearse_slack_inbox_pending 1.0" in metrics, "counted while its work runs"
        assert "rehearse_slack_inbox_oldest_age_seconds 0.0" in metrics, "not late: a worker holds it"

        a_offset[0] = timedelta(seconds=40)  # A, alive, renews the lease before it lapses
        a.standin.wait_for(lambda: [r for r in stored(a.app)
                                    if r.lease_until.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(seconds=90)])

        a_offset[0] = timedelta(seconds=-1000)  # A is gone: no more renewals, and the lease runs out
        with a.app.coach.db.inbox.session() as session:
            session.execute(update(SlackInboxItem).values(lease_until=datetime.now(UTC) - timedelta(seconds=1)))
        answer = b.standin.wait_for(lambda: (lambda last: last if "typing" not in last["text"] else None)(
            b.thread(drill)[-1]), timeout=10)
        assert answer["text"].startswith("Dana Whitfield: ") and len(b.thread(drill)) == 3
        b.standin.wait_for(lambda: stored(b.app) == [])
        with b.app.coach.db.session() as session:
            roles = [t.role for t in session.exec(select(PracticeTurn).order_by(PracticeTurn.seq))]
        assert roles == ["buyer", "rep", "buyer"], "the rep's turn once, answered once"
    finally:
        dying.release.set()


class HeldBuyer:
    """A buyer that answers only when released (a model slower than the lease)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def reply(self, scenario, turns):  # noqa: ANN001, ANN201
        self.release.wait(30)
        return Turn("buyer", "Then tell me what it saves us per truck.")


def test_a_worker_stopping_keeps_the_lease_of_a_reply_it_finishes(start_app):
    """A worker asked to stop (a deploy) lets the buyer finish the reply it started; meanwhile the request's lease
    is renewed, so no other worker takes it, and it is deleted once answered."""
    from datetime import UTC, datetime, timedelta

    from tests.test_slack_inbox import stored

    offset = [timedelta(0)]
    buyer = HeldBuyer()
    a = start_app(buyer=buyer, clock=lambda: datetime.now(UTC) + offset[0])
    try:
        drill = _reply_while_the_buyer_thinks(a)
        stopping = threading.Thread(target=a.app.dispatcher.stop,
                                    kwargs={"then": lambda: a.app.coach.workers.shutdown(wait=True)})
        stopping.start()
        offset[0] = timedelta(seconds=40)  # the model is still thinking well into the lease
        a.standin.wait_for(lambda: [r for r in stored(a.app)
                                    if r.lease_until.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(seconds=90)])
        offset[0] = timedelta(0)  # (the reply's edit is stamped with this clock; the sender keeps real time)
        buyer.release.set()
        stopping.join(timeout=10)
        assert not stopping.is_alive() and stored(a.app) == [], "answered, then deleted, before the stop ended"
        a.standin.wait_for(lambda: "per truck" in a.thread(drill)[-1]["text"])
    finally:
        buyer.release.set()


def test_the_home_tab_opens_while_the_buyer_is_still_answering_in_the_dm(start_app):
    """The DM's replies wait for each other; opening the Home tab (an event on the same DM channel) does not wait
    for the buyer's reply being written."""
    buyer = HeldBuyer()
    h = start_app(buyer=buyer)
    try:
        drill = _reply_while_the_buyer_thinks(h)
        h.slack.event({"type": "app_home_opened", "user": REP, "channel": drill["channel"], "tab": "home"})
        assert h.standin.wait_for(lambda: h.standin.views.get(REP), timeout=3)["type"] == "home"
        assert "typing" in h.thread(drill)[-1]["text"], "the buyer is still answering"
    finally:
        buyer.release.set()
