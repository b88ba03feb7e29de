"""`POST /webhooks/calls`: signature, size, idempotency and errors exactly as the contract says."""

from __future__ import annotations

import json
import time

from sqlmodel import select
from starlette.testclient import TestClient

from bot.app import create_app
from bot.config import parse_config
from storage.models import Call, Signal
from tests.conftest import TEST_CONFIG, low_calls, make_settings, scored_call


def test_duplicate_calls_make_no_second_signal(harness):
    assert harness.send_calls(low_calls()).json() == {"accepted": 3, "duplicates": 0}
    again = harness.send_calls(low_calls())
    assert again.status_code == 202 and again.json() == {"accepted": 0, "duplicates": 3}
    harness.approval_message()
    with harness.app.coach.db.session() as session:
        assert len(session.exec(select(Signal)).all()) == 1
        assert len(session.exec(select(Call)).all()) == 3
    harness.app.sender.drain()
    assert len(harness.standin.calls_to("chat.postMessage")) == 1


def test_one_call_object_is_accepted(harness):
    assert harness.send_calls(scored_call("single", 80)).json() == {"accepted": 1, "duplicates": 0}


def test_forged_and_stale_signatures_are_refused(harness):
    forged = harness.send_calls(low_calls(), secret="not-the-secret")
    stale = harness.send_calls(low_calls(), timestamp=int(time.time()) - 301)
    assert forged.status_code == 401 and "does not match" in forged.json()["error"]
    assert stale.status_code == 401 and "5 minutes" in stale.json()["error"]
    with harness.app.coach.db.session() as session:
        assert session.exec(select(Call)).all() == []


def test_malformed_json_is_400(harness):
    answer = harness.send_calls(None, raw=b'{"call_id": ')
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]


def test_schema_errors_name_the_field_and_store_nothing(harness):
    bad = low_calls()
    bad[1]["scores"][0]["score"] = 140
    del bad[2]["started_at"]
    answer = harness.send_calls(bad)
    assert answer.status_code == 422
    fields = {p["field"]: p["message"] for p in answer.json()["problems"]}
    assert fields["[1].scores[0].score"] == "score 140 is outside 0..100"
    assert fields["[2].started_at"] == "required"
    with harness.app.coach.db.session() as session:
        assert session.exec(select(Call)).all() == []


def test_body_over_one_mebibyte_is_413(harness):
    call = scored_call("big", 50)
    call["title"] = "x" * (1024 * 1024)
    assert harness.send_calls(call).status_code == 413


def test_gong_test_fire_is_acknowledged_and_not_stored(harness):
    answer = harness.send_calls({"callData": {"metaData": {"id": "g1"}}, "isTest": True})
    assert answer.status_code == 202 and answer.json() == {"accepted": 0, "duplicates": 0}


def test_gong_body_is_stored_with_its_metrics(harness):
    body = {"isTest": False, "callData": {
        "metaData": {"id": "7782342274025937895", "started": "2026-11-20T15:04:05Z", "duration": 1834,
                     "title": "Acme - pricing", "url": "https://app.gong.io/call?id=7782342274025937895",
                     "primaryUserId": "234599484848423"},
        "parties": [{"userId": "234599484848423", "emailAddress": "Alex@example.com", "affiliation": "Internal"},
                    {"emailAddress": "buyer@acme.com", "affiliation": "External"}],
        "interaction": {"interactionStats": [{"name": "Talk Ratio", "value": 72},
                                             {"name": "Longest Monologue", "value": 190}],
                        "questions": {"companyCount": 4, "nonCompanyCount": 2}},
    }}
    assert harness.send_calls(body).json() == {"accepted": 1, "duplicates": 0}
    with harness.app.coach.db.session() as session:
        call = session.exec(select(Call)).one()
    assert (call.source, call.rep_ref) == ("gong", "alex@example.com")
    assert call.metrics == {"talk_ratio": 0.72, "longest_monologue_s": 190.0, "questions": 4.0}


def test_healthz_checks_the_database(harness):
    answer = harness.http.get(f"{harness.url}/healthz")
    assert answer.status_code == 200 and answer.json()["database"] == "up"


def test_webhook_without_a_secret_says_how_to_enable_it(database_url, standin):
    settings = make_settings(database_url, standin).model_copy(update={"webhook_secret": None})
    app = create_app(settings, config=parse_config(TEST_CONFIG))
    try:
        with TestClient(app.web) as client:
            answer = client.post("/webhooks/calls", content=json.dumps(scored_call("x", 50)))
    finally:
        app.stop()
    assert answer.status_code == 503 and "REHEARSE_WEBHOOK_SECRET" in answer.json()["error"]


def test_a_criterion_scored_twice_in_one_call_is_refused(harness):
    call = scored_call("twice", 40)
    call["scores"].append(dict(call["scores"][0]))
    answer = harness.send_calls(call)
    assert answer.status_code == 422 and "scored twice" in answer.json()["error"]


def test_absurdly_nested_json_is_a_400_not_a_crash(harness):
    answer = harness.send_calls(None, raw=b"[" * 200_000 + b"]" * 200_000)
    assert answer.status_code == 400


def test_slack_not_answering_a_lookup_keeps_the_call_as_unmatched(harness):
    harness.standin.fail_next("users.lookupByEmail", status=500, times=10)
    answer = harness.send_calls(low_calls(rep="sam@example.com", prefix="s"))
    assert answer.status_code == 202 and answer.json() == {"accepted": 3, "duplicates": 0}
    with harness.app.coach.db.session() as session:
        assert len(session.exec(select(Call)).all()) == 3
        assert session.exec(select(Signal)).all() == []


def test_one_person_known_first_by_id_then_by_email_becomes_one_rep(harness):
    from bot.slack import ids
    from storage.models import Rep

    harness.slack.command(ids.DRILL_COMMAND, user="U0SAM", text="price")
    drill = harness.invite(user="U0SAM")  # a Rep row with the Slack id only
    harness.standin.wait_for(lambda: len(harness.thread(drill)) >= 2)
    harness.standin.fail_next("users.lookupByEmail", status=500, times=3)  # the first try and both retries
    harness.send_calls(scored_call("e-1", 40, rep="sam@example.com"))  # a Rep row with the email only
    assert harness.send_calls(low_calls(rep="sam@example.com", prefix="s")).status_code == 202
    with harness.app.coach.db.session() as session:
        reps = session.exec(select(Rep).where(Rep.slack_user_id == "U0SAM")).all()
        assert len(reps) == 1 and reps[0].email == "sam@example.com"
        assert {c.rep_id for c in session.exec(select(Call))} == {reps[0].id}
    assert "<@U0SAM>" in str(harness.approval_message()["blocks"])


def test_gong_scorecards_complete_a_call_the_gong_webhook_sent_earlier(start_app):
    import copy

    from tests.conftest import TEST_CONFIG

    config = copy.deepcopy(TEST_CONFIG)
    config["gong"] = {"questions": {"6543": {"criterion": "objection_handling", "min_range": 1, "max_range": 5}},
                      "users": {"2345": "alex@example.com"}}
    harness = start_app(config=config)
    body = {"isTest": False, "callData": {
        "metaData": {"id": "778", "started": "2026-11-20T15:04:05Z", "primaryUserId": "2345"},
        "parties": [{"userId": "2345", "emailAddress": "alex@example.com", "affiliation": "Internal"}],
        "interaction": {"interactionStats": [{"name": "Talk Ratio", "value": 61}]}}}
    scorecards = {"answeredScorecards": [{
        "answeredScorecardId": "1", "scorecardId": "9", "scorecardName": "Negotiation", "callId": "778",
        "callStartTime": "2026-11-20T15:04:05Z", "reviewedUserId": "2345", "reviewerUserId": "77",
        "reviewTime": "2026-11-21T10:00:00Z",
        "answers": [{"questionId": "6543", "isOverall": False, "score": 2, "answerText": "Gave 20% away",
                     "notApplicable": False}]}]}
    assert harness.send_calls(body).json() == {"accepted": 1, "duplicates": 0}
    assert harness.send_calls(scorecards).json() == {"accepted": 1, "duplicates": 0}
    assert harness.send_calls(scorecards).json() == {"accepted": 0, "duplicates": 1}
    with harness.app.coach.db.session() as session:
        call = session.exec(select(Call)).one()
        from storage.models import CallScore

        score = session.exec(select(CallScore)).one()
    assert call.metrics == {"talk_ratio": 0.61} and (score.criterion, score.percent) == ("objection_handling", 25)
