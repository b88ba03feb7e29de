"""Security promises (docs/security.md): signed and fresh requests only, replays with one effect, body limits,
and every button, modal and command doing something only for the person it belongs to."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse

import httpx
from sqlmodel import select

from bot.demo.driver import SlackDriver, webhook_headers
from bot.handlers import web
from bot.slack import ids
from storage.models import AuditEntry, Call, Dispute, Nudge, NudgeState, OutboxMessage, PracticeSession, Signal
from tests.conftest import APPROVALS, MANAGER, OUTSIDER, REP, SIGNING_SECRET, WEBHOOK_SECRET, low_calls

# --- helpers -------------------------------------------------------------------------------------------------------


class LateSlack(SlackDriver):
    """Signs correctly, but with a timestamp `age` seconds old (a captured request replayed later)."""

    def __init__(self, url: str, http: httpx.Client, age: int):
        super().__init__(url, SIGNING_SECRET, http)
        self.age = age

    def post(self, body: str, content_type: str, *, timestamp: int | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        return super().post(body, content_type, timestamp=int(time.time()) - self.age, headers=headers)


def _nudge(harness) -> Nudge:
    with harness.app.coach.db.reading() as session:
        return session.exec(select(Nudge)).one()


def _rows(harness, model) -> list:  # noqa: ANN001
    with harness.app.coach.db.reading() as session:
        return list(session.exec(select(model)))


def _ephemeral_for(harness, user: str, count: int = 1) -> list[dict]:
    return harness.standin.wait_for(
        lambda: (lambda found: found if len(found) >= count else None)(
            [m for m in harness.standin.messages if m.get("ephemeral") and m.get("user") == user]))


def _settled(harness) -> None:
    """Let the listener threads and the sender finish whatever a click started."""
    time.sleep(0.4)
    harness.app.sender.drain()


def _raw_post(url: str, path: str, headers: dict[str, str], body: bytes) -> int:
    """An HTTP/1.1 request written by hand, so Content-Length can say anything; returns the status code."""
    parsed = urllib.parse.urlparse(url)
    head = f"POST {path} HTTP/1.1\r\nHost: {parsed.hostname}\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as conn:
        conn.sendall(head.encode("latin-1") + body)
        answer = conn.recv(65536)
    return int(answer.split(b" ", 2)[1])


def _pending_approval(harness) -> dict:
    harness.send_calls(low_calls())
    return harness.approval_message()


def _invite(harness) -> dict:
    harness.slack.click(_pending_approval(harness), ids.APPROVE, user=MANAGER)
    return harness.invite()


# --- 1. Slack request signatures -------------------------------------------------------------------------------------


def test_slack_request_with_a_wrong_signature_is_401_and_changes_nothing(harness):
    approval = _pending_approval(harness)
    forged = SlackDriver(harness.url, "someone-elses-secret", harness.http)
    assert forged.click(approval, ids.APPROVE, user=MANAGER).status_code == 401
    assert forged.command(ids.DRILL_COMMAND, user=REP, text="price").status_code == 401
    _settled(harness)
    assert _nudge(harness).state == NudgeState.PENDING_APPROVAL
    assert not approval.get("updated") and harness.standin.messages_in(REP) == []


def test_slack_request_without_signature_headers_is_401(harness):
    body = json.dumps({"type": "event_callback", "event_id": "Ev0NOSIG",
                       "event": {"type": "app_home_opened", "user": REP, "tab": "home"}})
    url = f"{harness.url}/slack/events"
    bare = harness.http.post(url, content=body, headers={"Content-Type": "application/json"})
    no_timestamp = harness.http.post(url, content=body, headers={"Content-Type": "application/json",
                                                                 "X-Slack-Signature": "v0=" + "0" * 64})
    assert bare.status_code == no_timestamp.status_code == 401
    _settled(harness)
    assert harness.standin.views.get(REP) is None, "no Home tab published"


def test_a_correctly_signed_slack_request_six_minutes_old_is_401_and_changes_nothing(harness):
    approval = _pending_approval(harness)
    late = LateSlack(harness.url, harness.http, age=6 * 60)
    assert late.click(approval, ids.APPROVE, user=MANAGER).status_code == 401
    assert late.command(ids.DRILL_COMMAND, user=REP, text="price").status_code == 401
    _settled(harness)
    assert _nudge(harness).state == NudgeState.PENDING_APPROVAL and harness.standin.messages_in(REP) == []
    fresh = LateSlack(harness.url, harness.http, age=60)  # a minute of clock skew is fine
    assert fresh.click(approval, ids.APPROVE, user=MANAGER).status_code == 200
    harness.standin.wait_for(lambda: approval.get("updated"))


# --- 2. The webhook's HMAC and replay window -------------------------------------------------------------------------


def test_webhook_signature_is_compared_in_constant_time(monkeypatch):
    compared: list[tuple] = []
    real = web.hmac.compare_digest

    def spy(a, b):  # noqa: ANN001, ANN202
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(web.hmac, "compare_digest", spy)
    body, now = b'{"call_id": "c-1"}', time.time()
    good = webhook_headers(WEBHOOK_SECRET, body, int(now))
    assert web.signature_problem(WEBHOOK_SECRET, good["X-Rehearse-Timestamp"], good["X-Rehearse-Signature"],
                                 body, now) is None
    assert "does not match" in web.signature_problem(WEBHOOK_SECRET, good["X-Rehearse-Timestamp"],
                                                     "v1=" + "0" * 64, body, now)
    assert len(compared) == 2, "both the good and the bad signature went through hmac.compare_digest"


def test_webhook_signature_with_odd_characters_is_401_not_500(harness):
    body = json.dumps(low_calls()).encode()
    headers = webhook_headers(WEBHOOK_SECRET, body)
    headers["X-Rehearse-Signature"] = "v1=\xe9\xe9"  # sent as latin-1 bytes, as a careless client might
    answer = harness.http.post(f"{harness.url}/webhooks/calls", content=body,
                               headers={k: v.encode("latin-1") for k, v in headers.items()})
    assert answer.status_code == 401 and "does not match" in answer.json()["error"]


def test_a_replayed_webhook_inside_the_window_has_no_second_effect(harness):
    body = json.dumps(low_calls()).encode()
    headers = webhook_headers(WEBHOOK_SECRET, body)
    first = harness.http.post(f"{harness.url}/webhooks/calls", content=body, headers=headers)
    harness.approval_message()
    replay = harness.http.post(f"{harness.url}/webhooks/calls", content=body, headers=headers)  # same bytes
    assert (first.status_code, first.json()) == (202, {"accepted": 3, "duplicates": 0})
    assert (replay.status_code, replay.json()) == (202, {"accepted": 0, "duplicates": 3})
    _settled(harness)
    assert len(_rows(harness, Call)) == 3 and len(_rows(harness, Signal)) == 1 and len(_rows(harness, Nudge)) == 1
    assert len(harness.standin.messages_in(APPROVALS)) == 1, "one approval message"


def test_a_webhook_signed_more_than_five_minutes_off_is_401(harness):
    for skew in (-301, -6 * 60, 6 * 60):  # replayed later, or signed with a clock far ahead
        answer = harness.send_calls(low_calls(), timestamp=int(time.time()) + skew)
        assert answer.status_code == 401 and "5 minutes" in answer.json()["error"]
    assert _rows(harness, Call) == []


# --- 3. Body size limits ---------------------------------------------------------------------------------------------


def test_slack_events_body_over_one_mebibyte_is_413_before_bolt_runs(harness):
    padding = "x" * (web.MAX_BODY + 1)
    event = {"type": "app_home_opened", "user": REP, "tab": "home", "padding": padding}
    answer = harness.slack.event(event)  # correctly signed: only the size refuses it
    assert answer.status_code == 413 and "over" in answer.json()["error"]
    _settled(harness)
    assert harness.standin.views.get(REP) is None


def test_body_limits_hold_without_content_length(harness):
    """Chunked transfer encoding: no Content-Length to trust; the server counts what arrives."""
    def chunks():  # noqa: ANN202
        for _ in range(17):
            yield b"x" * (64 * 1024)  # 1.06 MiB in all

    for path in ("/slack/events", "/webhooks/calls"):
        answer = harness.http.post(f"{harness.url}{path}", content=chunks(),
                                   headers={"Content-Type": "application/json"})
        assert "content-length" not in answer.request.headers
        assert answer.status_code == 413, path
    assert _rows(harness, Call) == []


def test_body_limits_hold_when_content_length_lies(harness):
    """A Content-Length over the limit is refused at once; one under the truth only ever reads that many bytes."""
    for path in ("/slack/events", "/webhooks/calls"):
        huge = _raw_post(harness.url, path, {"Content-Type": "application/json",
                                             "Content-Length": str(web.MAX_BODY + 1)}, b"{}")
        assert huge == 413, path
    body = json.dumps(low_calls()).encode()
    signed = webhook_headers(WEBHOOK_SECRET, body)
    short = _raw_post(harness.url, "/webhooks/calls", {**signed, "Content-Length": "10"}, body)
    assert short == 401, "the 10 bytes read do not match the signature"
    assert _rows(harness, Call) == []


# --- 4. Authorization on every action and command --------------------------------------------------------------------


def test_someone_else_cannot_change_the_drill(harness):
    approval = _pending_approval(harness)
    picker = next(b for b in approval["blocks"] if b["type"] == "actions")["elements"][2]
    other = next(o for g in picker["option_groups"] for o in g["options"]
                 if o["value"].endswith("stall-think-about-it"))
    harness.slack.select(approval, ids.CHANGE_SCENARIO, user=OUTSIDER, option=other)
    refusal = _ephemeral_for(harness, OUTSIDER)[0]
    assert "Only <@U0DANA>" in refusal["text"]
    assert _nudge(harness).scenario_id == "price-objection" and not approval.get("updated")


def test_someone_else_submitting_the_skip_modal_is_refused(harness):
    approval = _pending_approval(harness)
    assert harness.slack.click(approval, ids.SKIP, user=MANAGER).status_code == 200
    modal = harness.modal()  # opened for the manager; a forged submission names someone else
    harness.slack.submit(modal, user=OUTSIDER, values={(ids.REASON_BLOCK, ids.REASON_INPUT): "no"})
    assert "Only <@U0DANA>" in _ephemeral_for(harness, OUTSIDER)[0]["text"]
    assert _nudge(harness).state == NudgeState.PENDING_APPROVAL and not approval.get("updated")


def test_someone_else_cannot_approve(harness):
    approval = _pending_approval(harness)
    harness.slack.click(approval, ids.APPROVE, user=REP)  # the rep cannot approve their own practice either
    assert "Only <@U0DANA>" in _ephemeral_for(harness, REP)[0]["text"]
    _settled(harness)
    assert _nudge(harness).state == NudgeState.PENDING_APPROVAL and harness.standin.messages_in(REP) == []


def test_only_the_rep_can_dispute_their_drill(harness):
    invite = _invite(harness)
    harness.slack.click(invite, ids.DISPUTE, user=OUTSIDER)
    modal = harness.modal()
    harness.slack.submit(modal, user=OUTSIDER, values={(ids.COMMENT_BLOCK, ids.COMMENT_INPUT): "not fair"})
    _settled(harness)
    assert _rows(harness, Dispute) == [] and _nudge(harness).state == NudgeState.DELIVERED
    assert harness.thread(harness.approval_message()) == [], "the manager is not bothered"


def test_someone_else_cannot_withdraw_a_disputed_drill(harness):
    invite = _invite(harness)
    harness.slack.click(invite, ids.DISPUTE, user=REP)
    harness.slack.submit(harness.modal(), user=REP, values={(ids.COMMENT_BLOCK, ids.COMMENT_INPUT): "renewal"})
    posted = harness.standin.wait_for(lambda: harness.thread(harness.approval_message()) or None)[0]
    for person in (OUTSIDER, REP):  # the rep who disputed does not settle it either
        harness.slack.click(posted, ids.WITHDRAW, user=person)
        assert "Only <@U0DANA>" in _ephemeral_for(harness, person)[0]["text"]
    assert _nudge(harness).state == NudgeState.DISPUTED and not posted.get("updated")
    assert _rows(harness, Dispute)[0].outcome is None


def test_someone_else_cannot_start_the_reps_practice(harness):
    invite = _invite(harness)
    harness.slack.click(invite, ids.START_PRACTICE, user=OUTSIDER)
    assert "belongs to someone else" in _ephemeral_for(harness, OUTSIDER)[0]["text"]
    assert _rows(harness, PracticeSession) == [] and _nudge(harness).state == NudgeState.DELIVERED
    assert harness.thread(invite) == []


def test_someone_else_cannot_start_it_from_their_home_tab(harness):
    _invite(harness)
    rep_home = harness.standin.wait_for(
        lambda: (lambda v: v if v and "Start practice" in str(v) else None)(harness.standin.views.get(REP)))
    harness.slack.click_home(rep_home, ids.HOME_START, user=OUTSIDER)  # a forged click with the rep's nudge id
    _settled(harness)
    assert _rows(harness, PracticeSession) == [] and _nudge(harness).state == NudgeState.DELIVERED


def test_someone_else_cannot_retake_or_close_the_reps_feedback(harness):
    from tests.transcripts import TRANSCRIPTS

    invite = _invite(harness)
    harness.slack.click(invite, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    feedback = harness.practise(invite, TRANSCRIPTS["price-objection"]["weak"])
    harness.slack.click(feedback, ids.RETAKE, user=OUTSIDER)
    harness.slack.click(feedback, ids.PRACTICE_DONE, user=OUTSIDER)
    _settled(harness)
    assert len(_rows(harness, PracticeSession)) == 1, "no retake started"
    assert not feedback.get("updated"), "the feedback keeps its buttons"
    assert not any(m["text"].startswith("Retake") for m in harness.standin.messages_in(REP))


def test_someone_else_cannot_open_the_details_of_the_reps_grade(harness):
    from tests.transcripts import TRANSCRIPTS

    invite = _invite(harness)
    harness.slack.click(invite, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    feedback = harness.practise(invite, TRANSCRIPTS["price-objection"]["weak"])
    assert harness.slack.click(feedback, ids.GRADE_DETAILS, user=OUTSIDER).status_code == 200
    _settled(harness)
    assert harness.standin.modals == [], "no modal with the rep's lines for someone else"


def test_someone_elses_message_in_the_reps_practice_thread_is_not_a_turn(harness):
    from storage.models import PracticeTurn

    invite = _invite(harness)
    harness.slack.click(invite, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    harness.slack.dm(user=OUTSIDER, channel=invite["channel"], text="I'll take that discount", thread_ts=invite["ts"])
    _settled(harness)
    assert [t.role for t in _rows(harness, PracticeTurn)] == ["buyer"] and len(harness.thread(invite)) == 2


def test_home_paging_shows_a_non_manager_only_their_own_tab(harness):
    harness.send_calls(low_calls())
    harness.approval_message()
    harness.slack.event({"type": "app_home_opened", "user": MANAGER, "tab": "home"})
    manager_view = harness.standin.wait_for(lambda: harness.standin.views.get(MANAGER))
    forged = {**manager_view, "blocks": [*manager_view["blocks"], {
        "type": "actions", "block_id": "page", "elements": [
            {"type": "button", "action_id": ids.HOME_PAGE, "text": {"type": "plain_text", "text": "Next"},
             "value": "0"}]}]}
    harness.slack.click_home(forged, ids.HOME_PAGE, user=OUTSIDER)
    outsider_view = harness.standin.wait_for(lambda: harness.standin.views.get(OUTSIDER))
    shown = json.dumps(outsider_view)
    assert "Waiting for you" not in shown and REP not in shown, "no team heatmap, no pending approvals"


def test_drill_only_ever_starts_in_the_callers_own_dm(harness):
    harness.slack.command(ids.DRILL_COMMAND, user=OUTSIDER, text="price")
    drill = harness.invite(user=OUTSIDER)
    assert drill["text"].startswith("Drill: ")
    _settled(harness)
    assert harness.standin.messages_in(REP) == []
    assert {p.rep_id for p in _rows(harness, PracticeSession)} == {_rep_id(harness, OUTSIDER)}


def _rep_id(harness, user: str) -> int:
    from storage.models import Rep

    return next(r.id for r in _rows(harness, Rep) if r.slack_user_id == user)


def test_progress_of_someone_else_by_name_or_email_shows_only_your_own(harness):
    harness.send_calls(low_calls())
    harness.approval_message()
    for text in ("alex", "@alex", "alex@example.com", "<@U0ALEX|alex>"):
        answer = harness.slack.command(ids.PROGRESS_COMMAND, user=OUTSIDER, text=text).text
        assert "Objection handling" not in answer and "Progress for <@U0ALEX>" not in answer, text
    refusals = [e for e in _rows(harness, AuditEntry) if e.actor == OUTSIDER]
    assert refusals == [] or all(e.action.endswith("refused") for e in refusals)


def test_every_listener_is_covered_here():
    """A new button or command needs an authorization test above (and a row in docs/security.md)."""
    covered = {ids.APPROVE, ids.SKIP, ids.SKIP_REASON_VIEW, ids.CHANGE_SCENARIO, ids.DISPUTE, ids.DISPUTE_VIEW,
               ids.KEEP, ids.WITHDRAW, ids.START_PRACTICE, ids.RETAKE, ids.PRACTICE_DONE, ids.GRADE_DETAILS,
               ids.HOME_START,
               ids.HOME_PAGE, ids.PICK_DRILL, ids.DRILL_COMMAND, ids.PROGRESS_COMMAND}
    declared = {value for name, value in vars(ids).items() if name.isupper() and isinstance(value, str)}
    assert declared - covered <= {ids.REASON_BLOCK, ids.REASON_INPUT, ids.COMMENT_BLOCK, ids.COMMENT_INPUT}, \
        f"listeners without an authorization test: {sorted(declared - covered)}"


# --- 5. app_uninstalled and tokens_revoked ---------------------------------------------------------------------------


def _removed(harness) -> bool:
    from storage.installation import app_removed

    with harness.app.coach.db.reading() as session:
        return app_removed(session)


def _outbox_unsent(harness) -> list[OutboxMessage]:
    return [r for r in _rows(harness, OutboxMessage) if r.status in ("pending", "sending")]


def test_after_app_uninstalled_nothing_is_sent_until_slack_answers_again(harness):
    assert harness.slack.event({"type": "app_uninstalled"}).status_code == 200
    harness.standin.wait_for(lambda: _removed(harness) or None)
    harness.send_calls(low_calls())  # a nudge is due while the app is out of the workspace
    _settled(harness)
    assert harness.app.sender.drain() == 0
    assert harness.standin.calls_to("chat.postMessage") == [], "no Slack call while removed"
    assert [r.method for r in _outbox_unsent(harness)] == ["chat.postMessage"], "the approval waits, not failed"
    assert ("slack", "app_uninstalled") in {(e.actor, e.action) for e in _rows(harness, AuditEntry)}
    # Reinstalled: the next request from Slack makes Rehearse check its token, then the outbox goes out.
    harness.slack.event({"type": "app_home_opened", "user": MANAGER, "tab": "home"})
    approval = harness.approval_message()
    assert approval["channel"] == APPROVALS and not _removed(harness)
    assert harness.standin.calls_to("auth.test"), "Slack was asked before sending again"


def test_after_the_bots_token_is_revoked_a_restart_resumes_once_slack_answers(start_app):
    first = start_app()
    first.slack.event({"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0BOT"]}})
    first.standin.wait_for(lambda: _removed(first) or None)
    first.send_calls(low_calls())
    _settled(first)
    assert first.standin.calls_to("chat.postMessage") == [] and len(_outbox_unsent(first)) == 1
    second = start_app()  # the operator restarts with a working token: auth.test at start succeeds
    approval = second.approval_message()
    assert approval["channel"] == APPROVALS and not _removed(second)
    assert len(second.standin.messages_in(APPROVALS)) == 1, "sent once"


def test_a_person_revoking_their_own_user_token_does_not_stop_the_bot(harness):
    harness.slack.event({"type": "tokens_revoked", "tokens": {"oauth": [REP], "bot": []}})
    _settled(harness)
    assert not _removed(harness)
    harness.send_calls(low_calls())
    assert harness.approval_message()["channel"] == APPROVALS


def test_metrics_can_be_kept_for_the_scraper_that_holds_the_token(database_url, standin):
    from bot.app import BackgroundServer, create_app
    from bot.config import parse_config
    from tests.conftest import TEST_CONFIG, make_settings

    settings = make_settings(database_url, standin).model_copy(update={"metrics_token": "scrape-me"})
    app = create_app(settings, config=parse_config(TEST_CONFIG))
    with BackgroundServer(app) as server:
        anyone = httpx.get(f"{server.url}/metrics")
        wrong = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer guess"})
        scraper = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer scrape-me"})
    app.stop()
    assert anyone.status_code == wrong.status_code == 401
    assert "REHEARSE_METRICS_TOKEN" in anyone.json()["error"] and "rehearse_" not in anyone.text
    assert scraper.status_code == 200 and "rehearse_outbox_pending" in scraper.text
