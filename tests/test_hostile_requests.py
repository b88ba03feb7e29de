"""What an outside fuzzer found against `rehearse serve` (issue 13), one test per finding, through the real server.

Each request is sent over HTTP to the running app, signed exactly as Slack or the scorer signs it where the
finding needs a valid signature. The generators that keep these shapes covered are in `test_fuzz_inputs.py`.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.parse

import httpx
import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot.cli import cli
from bot.demo.driver import TEAM_ID
from bot.slack import ids
from storage.models import AuditEntry, Call, Nudge, NudgeState
from tests.conftest import APPROVALS, MANAGER, REP, Harness, low_calls, scored_call
from tests.test_fuzz_inputs import GONG_CALL, LEAK, interaction, snapshot


def no_traceback(caplog) -> None:
    for record in caplog.records:
        assert not record.exc_info, f"a traceback in the log: {record.getMessage()}"
        assert record.levelno < logging.ERROR, f"an error in the log: {record.getMessage()}"


def raw_post(h: Harness, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """Headers as bytes: a value with characters outside ASCII goes as its UTF-8, as a fuzzer sends it."""
    return h.http.post(f"{h.url}/slack/events", content=body,
                       headers={k: v.encode() if isinstance(v, str) else v for k, v in headers.items()})


# --- 1. an unauthenticated request never reaches a 500 ---------------------------------------------------------------

def test_a_request_with_a_timestamp_that_is_not_unix_seconds_is_401(harness, caplog):
    bodies = ["command=%2Fdrill", json.dumps({"type": "url_verification", "challenge": "x", "token": "t"}),
              json.dumps({"type": "event_callback", "event": {"type": "message"}}),
              "payload=" + urllib.parse.quote(json.dumps({"type": "view_submission", "view": {"callback_id": "x"}}))]
    with caplog.at_level(logging.WARNING):
        for timestamp in ["abc", "1.5", "", "1 2", "-", "1e3", "-1", "９９", "0x10", "1" * 500]:
            for body in bodies:
                content_type = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
                r = raw_post(harness, body.encode(), {"Content-Type": content_type, "X-Slack-Signature": "v0=00",
                                                       "X-Slack-Request-Timestamp": timestamp})
                assert r.status_code == 401, (timestamp, body, r.text)
    no_traceback(caplog)


@pytest.mark.parametrize("body", ["command=%2Fdrill", json.dumps({"type": "event_callback", "event": {}})])
def test_a_signature_with_non_ascii_characters_is_401(harness, caplog, body):
    content_type = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(int(time.time())),
               "X-Slack-Signature": "v0=é"}
    with caplog.at_level(logging.WARNING):
        r = raw_post(harness, body.encode(), {k: v.encode("latin-1") for k, v in headers.items()})
    assert r.status_code == 401, r.text
    no_traceback(caplog)


def test_a_body_that_is_not_utf8_is_401_unsigned_and_400_signed(harness, caplog):
    raw = b'{"type": "url_verification", "token": "\xed\xa0\x80", "challenge": "x"}'
    fresh = str(int(time.time()))
    with caplog.at_level(logging.WARNING):
        unsigned = raw_post(harness, raw, {"Content-Type": "application/json", "X-Slack-Request-Timestamp": fresh,
                                           "X-Slack-Signature": "v0=" + "0" * 64})
        signed = raw_post(harness, raw, {"Content-Type": "application/json", **{
            k: v for k, v in harness.slack.signed_headers(raw.decode("latin-1"), "application/json").items()
            if k != "X-Slack-Signature"}, "X-Slack-Signature": _sign(raw, fresh)})
    assert unsigned.status_code == 401 and signed.status_code == 400, (unsigned.text, signed.text)
    no_traceback(caplog)


def _sign(raw: bytes, timestamp: str) -> str:
    import hashlib
    import hmac

    from tests.conftest import SIGNING_SECRET
    return "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{timestamp}:".encode() + raw, hashlib.sha256).hexdigest()


def test_slacks_unsigned_certificate_check_is_answered_200_and_opens_no_other_door(harness, caplog):
    r = raw_post(harness, b"ssl_check=1&token=legacy", {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    click = "payload=" + urllib.parse.quote(json.dumps({"type": "block_actions", "actions": []})) + "&ssl_check=1"
    with caplog.at_level(logging.WARNING):
        r = raw_post(harness, click.encode(), {"Content-Type": "application/x-www-form-urlencoded",
                                               "X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"})
    assert r.status_code == 401, r.text
    no_traceback(caplog)


@pytest.mark.parametrize("text", ["\x00", "a\x00b"])
def test_a_nul_in_a_command_or_a_clicks_json_is_refused_before_the_database(harness, text):
    """PostgreSQL stores no NUL character: a command's text or a typed skip reason holding one never gets there."""
    r = harness.slack.command(ids.DRILL_COMMAND, user=REP, text=text)
    assert r.status_code == 400 and "NUL" in r.json()["error"], r.text
    payload = {"type": "view_submission", "team": {"id": TEAM_ID}, "user": {"id": MANAGER, "team_id": TEAM_ID},
               "api_app_id": "A0REHEARSE", "trigger_id": "1.1.abc",
               "view": {"id": "V0X", "type": "modal", "callback_id": ids.SKIP_REASON_VIEW, "private_metadata": "{}",
                        "state": {"values": {ids.REASON_BLOCK: {ids.REASON_INPUT: {"value": text}}}}}}
    r = harness.slack.post(interaction(payload), "application/x-www-form-urlencoded")
    assert r.status_code == 400 and "NUL" in r.json()["error"], r.text


def test_half_a_surrogate_pair_in_a_clicks_json_is_refused_before_the_database(harness, caplog):
    payload = {"type": "view_submission", "team": {"id": TEAM_ID}, "user": {"id": MANAGER, "team_id": TEAM_ID},
               "api_app_id": "A0REHEARSE", "trigger_id": "1.1.abc",
               "view": {"id": "V0X", "type": "modal", "callback_id": ids.SKIP_REASON_VIEW, "private_metadata": "{}",
                        "state": {"values": {ids.REASON_BLOCK: {ids.REASON_INPUT: {"value": "\ud800 cheap"}}}}}}
    body = "payload=" + urllib.parse.quote(json.dumps(payload))  # JSON writes the half pair as \ud800
    with caplog.at_level(logging.WARNING):
        r = harness.slack.post(body, "application/x-www-form-urlencoded")
    assert r.status_code == 400 and "surrogate" in r.json()["error"], r.text
    no_traceback(caplog)


# --- 3. signed shapes Slack never sends: a 4xx or Slack's 200, and the connection stays usable ------------------------

ODD_SHAPES = [
    ("application/json", json.dumps({"type": "event_callback", "team_id": TEAM_ID, "event": None})),
    ("application/json", json.dumps({"type": "event_callback", "team_id": TEAM_ID, "event": "x"})),
    ("application/json", json.dumps(None)),
    ("application/json", json.dumps([1, 2])),
    ("application/json", json.dumps({"type": "block_actions", "team": {"id": TEAM_ID}, "actions": False})),
    ("application/x-www-form-urlencoded", interaction({"type": "block_actions", "team": {"id": TEAM_ID},
                                                       "user": {"id": MANAGER}, "actions": False})),
    ("application/x-www-form-urlencoded", interaction({"type": "view_submission", "team": {"id": TEAM_ID},
                                                       "user": {"id": MANAGER}, "view": None})),
    ("application/x-www-form-urlencoded", interaction({"type": "view_submission", "team": {"id": TEAM_ID},
                                                       "user": None, "view": {"callback_id": None}})),
    ("application/x-www-form-urlencoded", interaction({"type": "block_actions", "team": {"id": TEAM_ID},
                                                       "user": "U0DANA", "actions": [{"action_id": ids.APPROVE}]})),
    ("application/json", json.dumps({"type": "event_callback", "team_id": TEAM_ID, "event_id": 10**30,
                                     "event": {"type": "message", "channel_type": "im", "channel": "D0ALEX",
                                               "user": REP, "text": "hi", "ts": "1.2"}})),
    ("application/json", json.dumps({"type": "url_verification", "token": "\ud800", "challenge": "x"})),
    ("application/x-www-form-urlencoded", "command=/drill"),
    ("application/x-www-form-urlencoded", "command=/progress&user_id="),
    ("application/x-www-form-urlencoded", "payload=%7B%7D"),
    ("application/x-www-form-urlencoded", "payload=null"),
    ("application/x-www-form-urlencoded", ""),
]


def test_a_signed_shape_slack_never_sends_is_answered_below_500_on_a_connection_that_stays_open(harness, caplog):
    with caplog.at_level(logging.WARNING):
        for content_type, body in ODD_SHAPES:
            r = harness.slack.post(body, content_type)
            assert r.status_code < 500, (body, r.status_code, r.text)
            assert not LEAK.search(r.text), r.text
            # The same keep-alive connection answers the next request.
            again = harness.slack.post(json.dumps({"type": "url_verification", "challenge": "next", "token": "t"}),
                                       "application/json")
            assert again.status_code == 200 and again.json() == {"challenge": "next"}
        time.sleep(0.3)  # what was stored is handled after the ack
    no_traceback(caplog)


def test_a_request_that_fails_on_a_bug_does_not_lose_the_next_request_on_its_connection(harness, monkeypatch, caplog):
    def broken() -> bool:
        raise RuntimeError("a bug behind one request")

    monkeypatch.setattr(harness.app.coach.db, "healthy", broken)
    with caplog.at_level(logging.ERROR):
        first = harness.http.get(f"{harness.url}/healthz")
        assert first.status_code == 500 and "nothing was changed" in first.json()["error"]
        monkeypatch.undo()
        second = harness.http.get(f"{harness.url}/healthz")  # the same keep-alive connection
    assert second.status_code == 200
    assert [r.getMessage() for r in caplog.records if r.exc_info] == ["GET /healthz failed"]


def test_button_values_beyond_any_integer_column_are_refused_without_a_listener_failure(harness, caplog):
    assert harness.send_calls(low_calls()).status_code == 202
    approval = harness.approval_message()
    before = snapshot(harness, skip=("outbox", "slack_events", "audit_log"))
    with caplog.at_level(logging.WARNING):
        for value in [str(10**30), str(-(10**30)), "9" * 400, "1e999", "nudge:" + str(2**63)]:
            for action in (ids.APPROVE, ids.SKIP, ids.CHANGE_SCENARIO):
                message = {**approval, "blocks": json.loads(json.dumps(approval["blocks"]).replace(
                    f'"value": "{_value_of(approval, ids.APPROVE)}"', json.dumps({"value": value})[1:-1]))}
                if action == ids.CHANGE_SCENARIO:
                    r = harness.slack.select(message, action, user=MANAGER,
                                             option={"value": f"{value}:price-objection"})
                else:
                    r = harness.slack.click(message, action, user=MANAGER)
                assert r.status_code == 200, r.text
        time.sleep(0.5)
    no_traceback(caplog)
    assert snapshot(harness, skip=("outbox", "slack_events", "audit_log")) == before


@pytest.mark.parametrize("channel", ["a|b>c", "c0approvals", "2026-13-45T99:00:00Z", "\x1b[2J", "\udfff tail"])
def test_a_click_naming_a_channel_that_is_not_a_slack_id_is_refused_before_anything_is_sent(harness, caplog,
                                                                                             channel):
    assert harness.send_calls(low_calls()).status_code == 202
    approval = harness.approval_message()
    payload = _click_payload(approval, ids.APPROVE, MANAGER)
    payload["container"]["channel_id"] = channel
    with caplog.at_level(logging.WARNING):
        r = harness.slack.post(interaction(payload), "application/x-www-form-urlencoded")
        assert r.status_code in (200, 400), r.text
        time.sleep(0.5)
    no_traceback(caplog)
    with harness.app.coach.db.reading() as session:
        assert session.exec(select(Nudge.state)).first() == NudgeState.PENDING_APPROVAL


def test_a_skip_from_the_home_tab_for_a_nudge_whose_message_was_never_posted_still_counts(harness):
    """The Skip modal opened from App Home carries an empty channel and ts when the approval message never went out
    (it failed for good): the decision is recorded all the same."""
    assert harness.send_calls(low_calls()).status_code == 202
    harness.approval_message()
    with harness.app.coach.db.reading() as session:
        nudge_id = session.exec(select(Nudge.id)).first()
    payload = {"type": "view_submission", "team": {"id": TEAM_ID}, "user": {"id": MANAGER, "team_id": TEAM_ID},
               "api_app_id": "A0REHEARSE", "trigger_id": "1.1.abc",
               "view": {"id": "V0X", "type": "modal", "callback_id": ids.SKIP_REASON_VIEW, "state": {"values": {}},
                        "private_metadata": json.dumps({"nudge_id": nudge_id, "channel": "", "message_ts": ""})}}
    assert harness.slack.post(interaction(payload), "application/x-www-form-urlencoded").status_code == 200
    deadline = time.monotonic() + 5
    while True:
        with harness.app.coach.db.reading() as session:
            if session.exec(select(Nudge.state)).first() == NudgeState.SKIPPED:
                break
        assert time.monotonic() < deadline, "the skip was not recorded"
        time.sleep(0.05)


def test_an_edit_of_a_message_gone_from_slack_is_a_warning_not_an_error(harness, caplog):
    """A click on a message that is not (or no longer) in Slack: the edit fails for good, nobody is paged."""
    assert harness.send_calls(low_calls()).status_code == 202
    approval = harness.approval_message()
    payload = _click_payload(approval, ids.APPROVE, MANAGER)
    payload["container"]["message_ts"] = "1700000000.999999"
    with caplog.at_level(logging.WARNING):
        assert harness.slack.post(interaction(payload), "application/x-www-form-urlencoded").status_code == 200
        deadline = time.monotonic() + 5
        while not any("message_not_found" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the edit was never tried"
            time.sleep(0.05)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_surrogate_written_as_raw_bytes_is_a_422_naming_the_field(harness):
    raw = json.dumps([{**scored_call("sg-1", 40), "title": "TITLE"}]).encode().replace(b"TITLE", b"\xed\xbf\xbf tail")
    r = harness.send_calls(None, raw=raw)
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "[0].title", r.text


def _value_of(message: dict, action_id: str) -> str:
    from bot.demo.driver import find_button
    return find_button(message, action_id)[0]["value"]


# --- 2. Slack markup never gets into a message through a call's fields -----------------------------------------------

HOSTILE_URL = "https://ci.example.com/calls/9|recording> <!channel> <@U07MGR0EAST> <https://evil.example/login"


def test_a_recording_url_with_slack_markup_is_kept_percent_encoded_and_links_only_to_itself(harness):
    calls = low_calls()
    for call in calls:
        call["recording_url"] = HOSTILE_URL
    assert harness.send_calls(calls).status_code == 202
    with harness.app.coach.db.reading() as session:
        assert {c.recording_url for c in session.exec(select(Call)).all()} == {
            "https://ci.example.com/calls/9%7Crecording%3E%20%3C!channel%3E%20%3C@U07MGR0EAST%3E%20"
            "%3Chttps://evil.example/login"}
    shown = json.dumps(harness.approval_message())
    assert "<!channel>" not in shown and "<@U07MGR0EAST>" not in shown and "<https://evil" not in shown
    assert all(link.startswith("https://ci.example.com/calls/9%7C") for link in _links(shown)) and _links(shown)


def test_a_stored_recording_url_cannot_ping_mention_or_link_in_the_approvals_channel(harness):
    """A URL stored before the webhook refused such addresses still renders as one plain link."""
    first, second, third = low_calls()
    second["title"] = "Acme <!here> *bold* <https://evil.example|click>"
    assert harness.send_calls([first, second]).status_code == 202
    with harness.app.coach.db.session() as session:
        for call in session.exec(select(Call)).all():
            call.recording_url = HOSTILE_URL
            session.add(call)
    assert harness.send_calls([third]).status_code == 202
    approval = harness.approval_message()
    shown = json.dumps(approval)
    assert "<!channel>" not in shown and "<!here>" not in shown and "<@U07MGR0EAST>" not in shown
    assert "<https://evil.example" not in shown
    links = _links(shown)
    assert links and all(link.startswith("https://ci.example.com/") for link in links), links


def _links(text: str) -> list[str]:
    import re
    return [m.group(1) for m in re.finditer(r"<(https?://[^|>]*)", text)]


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://files.example.com/9", "slack://open", "notaurl",
                                 "https://exa mple.com/x", "https:///x", "https://:80/x", "https://[::1/x", " "])
def test_a_recording_url_that_is_not_a_web_address_is_refused_by_name(harness, url):
    r = harness.send_calls({**scored_call("u-1", 40), "recording_url": url})
    assert r.status_code == 422, r.text
    assert r.json()["problems"][0]["field"] == "recording_url"
    assert "http" in r.json()["problems"][0]["message"]


# --- 4. Gong numbers beyond float range -------------------------------------------------------------------------------

HUGE = 10**400


@pytest.mark.parametrize(("where", "field"), [
    (lambda d: d["interaction"]["interactionStats"][0].update(value=HUGE),
     "callData.interaction.interactionStats[0].value"),
    (lambda d: d["interaction"]["questions"].update(companyCount=HUGE), "callData.interaction.questions.companyCount"),
    (lambda d: d["content"]["trackers"][0].update(count=HUGE), "callData.content.trackers[0].count"),
    (lambda d: d["metaData"].update(duration=HUGE), "callData.metaData.duration"),
])
def test_a_gong_number_beyond_any_float_is_a_422_naming_it(harness, where, field):
    body = json.loads(json.dumps(GONG_CALL))
    where(body["callData"])
    r = harness.send_calls(body)
    assert r.status_code == 422, r.text
    assert r.json()["problems"][0]["field"] == field


# --- 5. what the docs rule out is refused ---------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"started_at": 0}, "started_at"),
    ({"started_at": 1e11}, "started_at"),
    ({"started_at": True}, "started_at"),
    ({"started_at": "1700000000"}, "started_at"),
    ({"started_at": "1700000000000.5"}, "started_at"),
    ({"duration_s": True}, "duration_s"),
    ({"scores": [{"criterion": "objection_handling", "score": False, "max": 100}]}, "scores[0].score"),
    ({"scores": [{"criterion": "objection_handling", "score": 1, "max": True}]}, "scores[0].max"),
    ({"metrics": {"talk_ratio": True}}, "metrics.talk_ratio"),
    ({"scores": [{"criterion": "objection_handling", "score": 40, "evidence": [{"quote": "x", "at_s": True}]}]},
     "scores[0].evidence[0].at_s"),
])
def test_numbers_and_times_of_the_wrong_json_type_are_refused_by_name(harness, change, field):
    r = harness.send_calls({**scored_call("t-1", 40), **change})
    assert r.status_code == 422, r.text
    assert r.json()["problems"][0]["field"] == field


@pytest.mark.parametrize("is_test", ["false", "no", "0", 1, 0, "", [], {}])
def test_a_gong_is_test_that_is_not_a_boolean_is_refused(harness, is_test):
    r = harness.send_calls({**GONG_CALL, "isTest": is_test})
    assert r.status_code == 422, r.text
    assert r.json()["problems"][0]["field"] == "isTest"


@pytest.mark.parametrize("is_test", [False, None])
def test_a_gong_body_that_is_not_a_test_is_stored(harness, is_test):
    body = {**GONG_CALL, "isTest": is_test} if is_test is not None else {"callData": GONG_CALL["callData"]}
    r = harness.send_calls(body)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text


# --- 6. untrusted text on a terminal ----------------------------------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path, database_url, standin, monkeypatch):
    config = tmp_path / "coach.yaml"
    config.write_text(json.dumps({
        "teams": [{"id": "west", "managers": [MANAGER], "approvals_channel": APPROVALS, "reps": [REP]}],
        "criteria": {"objection_handling": {"scenario": "price-objection"}}}))
    for name, value in {"REHEARSE_CONFIG": str(config), "DATABASE_URL": database_url,
                        "SLACK_BOT_TOKEN": standin.bot_token, "SLACK_API_URL": standin.base_url}.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def test_unmatched_calls_are_listed_without_terminal_escapes(cli_env):
    hostile = "\x1b]0;pwned\x07\x1b[2J\x1b[31mmallory\x9b31m\u202e"
    path = cli_env / "calls.json"
    path.write_text(json.dumps([{**scored_call("esc-1", 40), "rep": hostile, "title": "\x1b[8mhidden"}]))
    runner = CliRunner()
    ingested = runner.invoke(cli, ["ingest", str(path)])
    listed = runner.invoke(cli, ["ingest", "--unmatched"])
    for result in (ingested, listed):
        assert result.exit_code == 0, result.output
        assert not any(c in result.output for c in "\x1b\x9b\x07\u202e"), repr(result.output)
    assert "\\x1b" in listed.output  # shown as an escape, so the operator sees what the rep reference holds


# --- 7. error texts and limits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "a call", [1], [{**scored_call("e-0", 40), "scores": ["s"]}],
    [{**scored_call("e-1", 40), "scores": [{"criterion": "x", "score": 1, "evidence": ["q"]}]}],
    [{**scored_call("e-2", 40), "transcript": ["hello"]}], {"answeredScorecards": ["card"]},
    {"answeredScorecards": [{"callId": 1, "callStartTime": "2026-11-20T15:04:05Z", "reviewedUserId": 2,
                             "answers": ["x"]}]}])
def test_a_422_names_no_python_class(harness, body):
    r = harness.send_calls(body)
    assert r.status_code in (400, 422), r.text
    for problem in r.json().get("problems", [{"message": r.json()["error"]}]):
        assert "instance of" not in problem["message"], problem
    assert not any(name in r.text for name in ("ScoredCall", "_GongScorecard", "CriterionScore", "Evidence",
                                               "TranscriptTurn", "_GongAnswer"))


# --- 8. what a click is trusted for ----------------------------------------------------------------------------------

@pytest.mark.parametrize("other", [{"team": {"id": "T0ELSEWHERE", "domain": "x"}}, {"api_app_id": "A0SOMEONEELSE"}])
def test_a_signed_click_from_another_workspace_or_app_changes_nothing(harness, other):
    assert harness.send_calls(low_calls()).status_code == 202
    approval = harness.approval_message()
    payload = _click_payload(approval, ids.APPROVE, MANAGER)
    payload.update(other)
    r = harness.slack.post(interaction(payload), "application/x-www-form-urlencoded")
    assert r.status_code in (401, 403), r.text
    time.sleep(0.5)
    with harness.app.coach.db.reading() as session:
        assert session.exec(select(Nudge.state)).first() == NudgeState.PENDING_APPROVAL


def test_an_event_from_another_workspace_changes_nothing(harness):
    body = json.dumps({"type": "event_callback", "team_id": "T0ELSEWHERE", "api_app_id": "A0REHEARSE",
                       "event_id": "EvX1", "event": {"type": "app_home_opened", "user": REP, "tab": "home"}})
    r = harness.slack.post(body, "application/json")
    assert r.status_code in (401, 403), r.text
    time.sleep(0.3)
    assert not harness.standin.views


@pytest.mark.parametrize("user", ["U" + "A" * 5000, "0", "U1", 'U0"; DROP TABLE reps; --', "u0alex", "", "U0ALEX\n"])
def test_ids_that_cannot_be_slack_ids_are_refused_before_the_database(harness, user):
    assert harness.send_calls(low_calls()).status_code == 202
    approval = harness.approval_message()
    r = harness.slack.post(interaction(_click_payload(approval, ids.APPROVE, user)),
                           "application/x-www-form-urlencoded")
    assert r.status_code == 400, r.text
    time.sleep(0.3)
    with harness.app.coach.db.reading() as session:
        actors = session.exec(select(AuditEntry.actor)).all()
        assert user not in actors and not any(len(a or "") > 64 for a in actors)
        assert session.exec(select(Nudge.state)).first() == NudgeState.PENDING_APPROVAL
        assert session.exec(select(Call)).first() is not None


def _click_payload(message: dict, action_id: str, user: str) -> dict:
    from bot.demo.driver import find_button
    button, block_id = find_button(message, action_id)
    return {"type": "block_actions", "team": {"id": TEAM_ID, "domain": "rehearse-demo"},
            "user": {"id": user, "username": "x", "team_id": TEAM_ID}, "api_app_id": "A0REHEARSE",
            "token": "legacy", "trigger_id": "1.1.abc",
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"]},
            "channel": {"id": message["channel"]},
            "actions": [{"type": "button", "action_id": action_id, "block_id": block_id,
                         "value": button.get("value"), "action_ts": "1.2"}]}


# --- 9. connections are closed ---------------------------------------------------------------------------------------

def test_a_connection_that_never_finishes_its_headers_is_closed(harness):
    host, port = harness.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        conn.settimeout(30)
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        assert time.monotonic() - started < 25, "the server kept a connection with unfinished headers"


def test_an_idle_keep_alive_connection_is_closed(harness):
    host, port = harness.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        assert b"200" in data.split(b"\r\n", 1)[0]
        assert time.monotonic() - started < 25, "an idle connection stayed open"

