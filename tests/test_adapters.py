"""Adapters: Gong answered scorecards, CSV bulk import, and the generic/Gong webhook bodies agreeing."""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bot.nudges import adapters
from bot.nudges.adapters import GongMapping, GongQuestion, PayloadError, ScoredCall, parse_body, parse_csv

# --- Gong answered scorecards (POST /v2/stats/activity/scorecards) -----------------------------------------------

MAPPING = GongMapping.model_validate({
    "questions": {
        "6543210987654321001": {"criterion": "discovery", "min_range": 1, "max_range": 5},
        "6543210987654321002": {"criterion": "objection_handling", "min_range": 0, "max_range": 10},
        "6543210987654321003": {"criterion": "next_steps"},  # Gong's default 1..5
    },
    "users": {"234599484848423": "Alex@example.com"},
})


def scorecards_body() -> dict:
    """One call reviewed by two managers, plus a second call of another rep (not in the users mapping)."""
    return {
        "requestId": "4al018gzaztcr8nbukw",
        "records": {"totalRecords": 3, "currentPageSize": 3, "currentPageNumber": 0},
        "answeredScorecards": [
            {"answeredScorecardId": "1111", "scorecardId": "9001", "scorecardName": "Discovery call",
             "callId": "7782342274025937895", "callStartTime": "2026-11-20T07:04:05-08:00",
             "reviewedUserId": "234599484848423", "reviewerUserId": "555000111", "reviewTime": "2026-11-21T09:00:00Z",
             "answers": [
                 {"questionId": "6543210987654321000", "isOverall": True, "score": 3, "answerText": "Decent call",
                  "notApplicable": False},
                 {"questionId": "6543210987654321001", "isOverall": False, "score": 2,
                  "answerText": "Jumped to the demo before asking about the current process", "notApplicable": False},
                 {"questionId": "6543210987654321002", "isOverall": False, "score": 4, "answerText": "",
                  "notApplicable": False},
                 {"questionId": "6543210987654321003", "isOverall": False, "score": None, "answerText": None,
                  "notApplicable": True},
                 {"questionId": "6543210987654329999", "isOverall": False, "score": 5, "answerText": "Good rapport",
                  "notApplicable": False},
             ]},
            {"answeredScorecardId": "1112", "scorecardId": "9001", "scorecardName": "Discovery call",
             "callId": "7782342274025937895", "callStartTime": "2026-11-20T07:04:05-08:00",
             "reviewedUserId": "234599484848423", "reviewerUserId": "555000222", "reviewTime": "2026-11-22T10:30:00Z",
             "answers": [
                 {"questionId": "6543210987654321001", "isOverall": False, "score": 3,
                  "answerText": "Asked two pain questions, no impact", "notApplicable": False},
                 {"questionId": "6543210987654321002", "isOverall": False, "score": 6,
                  "answerText": "Held the price once", "notApplicable": False},
                 {"questionId": "6543210987654321003", "isOverall": False, "score": 5, "answerText": "",
                  "notApplicable": False},
             ]},
            {"answeredScorecardId": "1113", "scorecardId": "9001", "scorecardName": "Discovery call",
             "callId": 7782342274025937000, "callStartTime": "2026-11-23T16:00:00Z",
             "reviewedUserId": 987654321, "reviewerUserId": "555000111", "reviewTime": "2026-11-24T08:00:00Z",
             "answers": [{"questionId": 6543210987654321001, "isOverall": False, "score": 5, "answerText": "",
                          "notApplicable": False}]},
        ],
    }


@pytest.fixture(autouse=True)
def fresh_unmapped_memo(monkeypatch):
    monkeypatch.setattr(adapters, "_unmapped_warned", set())


def test_scorecards_of_one_call_become_one_scored_call_averaged_per_criterion():
    first, second = adapters.from_gong_scorecards(scorecards_body(), MAPPING)
    assert (first.source, first.call_id, first.rep) == ("gong", "7782342274025937895", "alex@example.com")
    assert first.started_at == datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
    scores = {s.criterion: s for s in first.scores}
    # discovery 1..5: 2 → 25, 3 → 50; objection_handling 0..10: 4 → 40, 6 → 60; next_steps 1..5: only 5 → 100
    assert {c: (s.score, s.max) for c, s in scores.items()} == {
        "discovery": (37.5, 100), "objection_handling": (50.0, 100), "next_steps": (100.0, 100)}
    assert [e.quote for e in scores["discovery"].evidence] == [
        "Jumped to the demo before asking about the current process", "Asked two pain questions, no impact"]
    assert [e.quote for e in scores["objection_handling"].evidence] == ["Held the price once"]
    assert scores["next_steps"].evidence == [] and all(e.at_s is None for s in first.scores for e in s.evidence)
    # numeric ids are read as the strings they are; an unmapped reviewed user stays identifiable as unmatched
    assert (second.call_id, second.rep) == ("7782342274025937000", "gong-user:987654321")
    assert [(s.criterion, s.score) for s in second.scores] == [("discovery", 100.0)]


def test_overall_not_applicable_and_unmapped_answers_are_skipped_and_unmapped_ids_warned_once(caplog):
    with caplog.at_level(logging.WARNING, logger="bot.nudges.adapters"):
        adapters.from_gong_scorecards(scorecards_body(), MAPPING)
        adapters.from_gong_scorecards(scorecards_body(), MAPPING)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "6543210987654329999" in warnings[0]
    assert "6543210987654321000" not in warnings[0]  # the overall answer is not a question to map


@pytest.mark.parametrize(("min_range", "max_range", "score", "percent"), [
    (1, 5, 1, 0.0),
    (1, 5, 5, 100.0),
    (1, 5, 4, 75.0),
    (0, 10, 7, 70.0),
    (1, 3, 2, 50.0),
    (0, 1, 1, 100.0),
    (-2, 2, 0, 50.0),
    (1, 5, 2.5, 37.5),
])
def test_scores_are_normalised_by_the_question_range(min_range, max_range, score, percent):
    mapping = GongMapping(questions={"42": GongQuestion(criterion="closing", min_range=min_range,
                                                        max_range=max_range)})
    body = {"answeredScorecards": [{"callId": "c1", "callStartTime": "2026-11-20T15:04:05Z", "reviewedUserId": "7",
                                    "answers": [{"questionId": "42", "score": score}]}]}
    [call] = adapters.from_gong_scorecards(body, mapping)
    assert call.scores[0].score == pytest.approx(percent) and call.scores[0].max == 100


@pytest.mark.parametrize(("card", "answer", "score", "message"), [
    (0, 1, 6, "score 6 is outside 1..5 (question 6543210987654321001)"),
    (0, 1, 0, "score 0 is outside 1..5 (question 6543210987654321001)"),
    (1, 1, 10.5, "score 10.5 is outside 0..10 (question 6543210987654321002)"),
    (1, 0, None, "required (or mark the answer notApplicable)"),
])
def test_a_score_outside_its_question_range_names_the_answer(card, answer, score, message):
    body = scorecards_body()
    body["answeredScorecards"][card]["answers"][answer]["score"] = score
    with pytest.raises(PayloadError) as raised:
        parse_body(body, gong=MAPPING)
    assert raised.value.problems == [(f"answeredScorecards[{card}].answers[{answer}].score", message)]


def test_out_of_range_on_an_unmapped_overall_or_not_applicable_answer_is_ignored():
    body = scorecards_body()
    answers = body["answeredScorecards"][0]["answers"]
    answers[0]["score"] = 99  # overall
    answers[3]["score"] = 99  # not applicable
    answers[4]["score"] = 99  # unmapped
    assert len(parse_body(body, gong=MAPPING)) == 2


def test_every_scorecard_problem_is_reported_at_once():
    body = scorecards_body()
    del body["answeredScorecards"][0]["callStartTime"]
    body["answeredScorecards"][1]["answers"][2]["score"] = 9
    body["answeredScorecards"][2]["callStartTime"] = "2026-11-23T16:00:00"
    body["answeredScorecards"][2]["answers"][0]["score"] = "lots"
    with pytest.raises(PayloadError) as raised:
        parse_body(body, gong=MAPPING)
    fields = dict(raised.value.problems)
    assert fields["answeredScorecards[0].callStartTime"] == "required"
    assert fields["answeredScorecards[1].answers[2].score"].startswith("score 9 is outside 1..5")
    assert "time zone" in fields["answeredScorecards[2].callStartTime"]
    assert "answeredScorecards[2].answers[0].score" in fields


def test_two_reps_on_one_call_are_refused_by_path():
    body = scorecards_body()
    body["answeredScorecards"][1]["reviewedUserId"] = "111"
    with pytest.raises(PayloadError) as raised:
        parse_body(body, gong=MAPPING)
    [(field, message)] = raised.value.problems
    assert field == "answeredScorecards[1].reviewedUserId" and "answeredScorecards[0]" in message


@pytest.mark.parametrize(("body", "field"), [
    ({"answeredScorecards": {"callId": "1"}}, "answeredScorecards"),
    ({"answeredScorecards": ["not a scorecard"]}, "answeredScorecards[0]"),
    ({"answeredScorecards": [{"callId": True, "callStartTime": "2026-11-20T15:04:05Z", "reviewedUserId": "7"}]},
     "answeredScorecards[0].callId"),
])
def test_malformed_scorecards_bodies_name_the_field(body, field):
    with pytest.raises(PayloadError) as raised:
        parse_body(body, gong=MAPPING)
    assert raised.value.problems[0][0] == field


def test_an_empty_scorecards_page_is_nothing_to_ingest():
    assert parse_body({"answeredScorecards": []}) == []


def test_without_a_mapping_scorecards_are_kept_with_no_scores_for_later():
    calls = parse_body(scorecards_body())
    assert [(c.call_id, c.rep, c.scores) for c in calls] == [
        ("7782342274025937895", "gong-user:234599484848423", []), ("7782342274025937000", "gong-user:987654321", [])]


@pytest.mark.parametrize(("data", "message"), [
    ({"questions": {"1": {"criterion": "x", "min_range": 5, "max_range": 5}}}, "must be above min_range"),
    ({"questions": {"1": {"criterion": "x", "scale": 5}}}, "Extra inputs"),
    ({"questions": {"1": {"min_range": 1}}}, "required"),
    ({"teams": []}, "Extra inputs"),
])
def test_gong_mapping_mistakes_are_refused(data, message):
    with pytest.raises(ValidationError) as raised:
        GongMapping.model_validate(data)
    assert message in str(raised.value)


def test_gong_mapping_reads_yaml_number_keys_as_ids():
    mapping = GongMapping.model_validate({"questions": {6543210987654321001: {"criterion": "discovery"}},
                                          "users": {234599484848423: "U024BE7LH"}})
    assert set(mapping.questions) == {"6543210987654321001"} and mapping.users == {"234599484848423": "U024BE7LH"}
    assert (mapping.questions["6543210987654321001"].min_range, mapping.questions["6543210987654321001"].max_range) \
        == (1, 5)


# --- CSV bulk import ---------------------------------------------------------------------------------------------

CSV_OK = """\
call_id,source,rep,started_at,duration_s,title,criterion,score,max,evidence_quote,evidence_at_s,metric:talk_ratio
c-1042,generic,Alex@example.com,2026-11-20T15:04:05Z,1834,Acme Corp - pricing,objection_handling,45,100,"I guess we \
could knock 20% off",754,0.72
c-1042,generic,alex@example.com,2026-11-20T16:04:05+01:00,1834,Acme Corp - pricing,discovery,3,5,,,0.72
c-1043,,U024BE7LH,2026-11-21T10:00:00Z,,,objection_handling,80,,"Let's look at what the 20% buys you",,
c-1043,,U024BE7LH,2026-11-21T10:00:00Z,,,discovery,70,,,,0.41
"""


def test_csv_rows_of_one_call_group_into_one_scored_call():
    first, second = parse_csv(CSV_OK)
    assert (first.call_id, first.source, first.rep, first.duration_s, first.title) == (
        "c-1042", "generic", "alex@example.com", 1834, "Acme Corp - pricing")
    assert first.started_at == datetime(2026, 11, 20, 15, 4, 5, tzinfo=UTC)
    assert [(s.criterion, s.score, s.max, s.percent) for s in first.scores] == [
        ("objection_handling", 45, 100, 45.0), ("discovery", 3, 5, 60.0)]
    assert first.scores[0].evidence[0].quote == "I guess we could knock 20% off"
    assert first.scores[0].evidence[0].at_s == 754 and first.scores[1].evidence == []
    assert first.metrics == {"talk_ratio": 0.72}
    assert (second.call_id, second.source, second.rep, second.duration_s) == ("c-1043", "generic", "U024BE7LH", None)
    assert [(s.criterion, s.score) for s in second.scores] == [("objection_handling", 80), ("discovery", 70)]
    assert second.scores[0].evidence[0].at_s is None
    assert second.metrics == {"talk_ratio": 0.41}  # a blank cell on one of the call's rows is not a disagreement


def test_csv_and_the_generic_json_give_the_same_call():
    [from_csv, _] = parse_csv(CSV_OK)
    [from_json] = parse_body({
        "call_id": "c-1042", "source": "generic", "rep": "alex@example.com", "started_at": "2026-11-20T15:04:05Z",
        "duration_s": 1834, "title": "Acme Corp - pricing", "metrics": {"talk_ratio": 0.72},
        "scores": [{"criterion": "objection_handling", "score": 45, "max": 100,
                    "evidence": [{"quote": "I guess we could knock 20% off", "at_s": 754}]},
                   {"criterion": "discovery", "score": 3, "max": 5}]})
    assert from_csv == from_json


def test_csv_header_order_is_free_and_spreadsheet_leftovers_are_tolerated():
    text = ("\ufeffscore,Criterion,started_at,rep,call_id,\r\n"
            "55,closing,2026-11-20T15:04:05Z,alex@example.com,c-1,\r\n"
            ",,,,,\r\n"
            "\r\n"
            "65,discovery,2026-11-20T15:04:05Z,alex@example.com,c-1,\r\n")
    [call] = parse_csv(text)
    assert [(s.criterion, s.score) for s in call.scores] == [("closing", 55), ("discovery", 65)]


def test_a_csv_row_may_carry_call_level_fields_only():
    text = ("call_id,rep,started_at,criterion,score,metric:questions\n"
            "c-9,alex@example.com,2026-11-20T15:04:05Z,,,4\n")
    [call] = parse_csv(text)
    assert call.scores == [] and call.metrics == {"questions": 4.0}


HEADER = "call_id,rep,started_at,criterion,score"


@pytest.mark.parametrize(("text", "problems"), [
    pytest.param(
        "call_id,started_at,criterion,score\nc-1,2026-11-20T15:04:05Z,closing,40\n",
        [("header.rep", "required column is missing")], id="missing required column"),
    pytest.param(
        f"{HEADER},talk_ratio,colour\nc-1,a@example.com,2026-11-20T15:04:05Z,closing,40,0.5,red\n",
        [("header.talk_ratio", "unknown column"), ("header.colour", "unknown column")], id="unknown columns"),
    pytest.param(
        f"{HEADER},scroe\nc-1,a@example.com,2026-11-20T15:04:05Z,closing,40,\n",
        [("header.scroe", "unknown column; did you mean score?")], id="misspelt column"),
    pytest.param(
        f"{HEADER},score\n", [("header.score", "the column appears twice")], id="column twice"),
    pytest.param(
        f"{HEADER},metric:\n", [("header.metric:", "a metric column needs a name")], id="metric without a name"),
    pytest.param(
        f"{HEADER},max\n"
        "c-1042,a@example.com,2026-11-20T15:04:05Z,closing,forty,100\n"
        "c-1042,a@example.com,2026-11-20T15:04:05Z,discovery,40,1o0\n",
        [("row 2 (call c-1042).score", "'forty' is not a number"),
         ("row 3 (call c-1042).max", "'1o0' is not a number")], id="bad numbers"),
    pytest.param(
        f"{HEADER},duration_s,metric:talk_ratio\n"
        "c-1,a@example.com,2026-11-20T15:04:05Z,closing,40,90.5,nan\n",
        [("row 2 (call c-1).duration_s", "'90.5' is not a whole number of seconds"),
         ("row 2 (call c-1).metric:talk_ratio", "'nan' is not a finite number")], id="bad duration and metric"),
    pytest.param(
        f"{HEADER},title\n"
        "c-1042,a@example.com,2026-11-20T15:04:05Z,closing,40,Acme\n"
        "c-1042,b@example.com,2026-11-20T15:04:05Z,discovery,50,Acme\n"
        "c-1042,a@example.com,2026-11-20T15:04:05Z,pricing,50,Acme - pricing\n",
        [("row 3 (call c-1042).rep", "'b@example.com' disagrees with 'a@example.com' in row 2 (call c-1042): "
                                     "a call's rows must agree"),
         ("row 4 (call c-1042).title", "'Acme - pricing' disagrees with 'Acme' in row 2 (call c-1042): a call's "
                                       "rows must agree")], id="inconsistent call-level fields"),
    pytest.param(
        f"{HEADER}\n"
        "c-1,a@example.com,2026-11-20T15:04:05Z,closing,40\n"
        "c-1,a@example.com,2026-11-21T15:04:05Z,discovery,40\n",
        [("row 3 (call c-1).started_at", "'2026-11-21T15:04:05Z' disagrees with '2026-11-20T15:04:05Z' in row 2 "
                                         "(call c-1): a call's rows must agree")], id="inconsistent start"),
    pytest.param(
        f"{HEADER}\n"
        "c-1,a@example.com,2026-11-20T15:04:05Z,closing,40\n"
        "c-1,a@example.com,2026-11-20T15:04:05Z,closing,60\n",
        [("row 3 (call c-1).criterion", "'closing' is already scored for this call in row 2 (call c-1)")],
        id="criterion twice"),
    pytest.param(
        f"{HEADER},max\n"
        "c-1,a@example.com,2026-11-20T15:04:05Z,closing,40,100\n"
        "c-1,a@example.com,2026-11-20T15:04:05Z,discovery,6,5\n",
        [("row 3 (call c-1).score", "score 6 is outside 0..5")], id="score outside its max"),
    pytest.param(
        f"{HEADER}\n"
        ",a@example.com,2026-11-20T15:04:05Z,closing,40\n"
        "c-2,,2026-11-20T15:04:05Z,,40\n",
        [("row 2.call_id", "required"), ("row 3 (call c-2).rep", "required"),
         ("row 3 (call c-2).criterion", "required (leave both criterion and score blank for a row of call-level "
                                        "fields only)")], id="blank required cells"),
    pytest.param(
        f"{HEADER}\nc-1,a@example.com,2026-11-20 15:04:05,closing,40\n",
        [("row 2 (call c-1).started_at", "needs a time zone, e.g. 2026-11-20T15:04:05Z")], id="naive time"),
    pytest.param(
        f"{HEADER},evidence_at_s\nc-1,a@example.com,2026-11-20T15:04:05Z,closing,40,754\n",
        [("row 2 (call c-1).evidence_quote", "required when evidence_at_s is given")], id="timestamp, no quote"),
    pytest.param(
        f"{HEADER}\nc-1,a@example.com,2026-11-20T15:04:05Z,closing,40,surplus\n",
        [("row 2 (call c-1)", "has a value in column 6 (past the header's last column)")], id="surplus cell"),
    pytest.param(f"{HEADER}\n", [("(file)", "no calls: the CSV has a header but no rows")], id="no rows"),
    pytest.param("", [("row 1 (header)", "the CSV needs a header row: call_id,rep,started_at,criterion,score,...")],
                 id="empty file"),
])
def test_csv_mistakes_are_named_by_row_and_column(text, problems):
    with pytest.raises(PayloadError) as raised:
        parse_csv(text)
    got = raised.value.problems
    assert [field for field, _ in got] == [field for field, _ in problems]
    for (_, message), (_, expected) in zip(got, problems, strict=True):
        assert message.startswith(expected)


def test_csv_rows_count_like_a_spreadsheet_with_multiline_quotes():
    text = (f"{HEADER},evidence_quote\n"
            'c-1,a@example.com,2026-11-20T15:04:05Z,closing,40,"line one\nline two"\n'
            "c-1,a@example.com,2026-11-20T15:04:05Z,discovery,x,\n")
    with pytest.raises(PayloadError) as raised:
        parse_csv(text)
    assert raised.value.problems == [("row 3 (call c-1).score", "'x' is not a number")]


# --- generic and Gong webhook bodies of the same call ------------------------------------------------------------

GONG_WEBHOOK = {"isTest": False, "callData": {
    "metaData": {"id": "7782342274025937895", "url": "https://app.gong.io/call?id=7782342274025937895",
                 "title": "Acme Corp - pricing", "scheduled": "2026-11-20T15:00:00Z", "started": "2026-11-20T15:04:05Z",
                 "duration": 1834, "primaryUserId": "234599484848423", "direction": "Conference", "scope": "External",
                 "language": "eng", "purpose": "negotiation"},
    "parties": [
        {"id": "1", "name": "Alex Rep", "emailAddress": "alex@example.com", "affiliation": "Internal",
         "speakerId": "6432345678555530067", "userId": "234599484848423"},
        {"id": "2", "name": "Bea Buyer", "emailAddress": "bea@acme.com", "affiliation": "External",
         "speakerId": "6432345678555530068"},
    ],
    "content": {
        "trackers": [
            {"id": "t1", "name": "Pricing", "type": "KEYWORD", "count": 3,
             "occurrences": [{"speakerId": "6432345678555530067", "startTime": 754.2}]},
            {"id": "t2", "name": "Competitors", "type": "SMART", "occurrences": [
                {"speakerId": "6432345678555530068", "startTime": 120.0},
                {"speakerId": "6432345678555530068", "startTime": 980.5}]},
            {"id": "t3", "name": "", "count": 9},
        ],
        "topics": [{"name": "Pricing", "duration": 410}],
    },
    "interaction": {
        "interactionStats": [{"name": "Talk Ratio", "value": 0.72}, {"name": "Longest Monologue", "value": 190},
                             {"name": "Longest Customer Story", "value": 45}, {"name": "Interactivity", "value": 6.1},
                             {"name": "Patience", "value": 0.8}, {"name": "Question Rate", "value": 2.5}],
        "questions": {"companyCount": 4, "nonCompanyCount": 2},
        "speakers": [{"id": "6432345678555530067", "userId": "234599484848423", "talkTime": 1210}],
    },
}}

GENERIC = {
    "call_id": "7782342274025937895", "source": "generic", "rep": "alex@example.com",
    "started_at": "2026-11-20T15:04:05Z", "duration_s": 1834, "title": "Acme Corp - pricing",
    "call_type": "negotiation", "recording_url": "https://app.gong.io/call?id=7782342274025937895",
    "metrics": {"talk_ratio": 0.72, "longest_monologue_s": 190, "longest_customer_story_s": 45,
                "interactivity": 6.1, "patience_s": 0.8, "questions": 4,
                "tracker:Pricing": 3, "tracker:Competitors": 2},
}


def test_generic_and_gong_webhook_bodies_of_one_call_give_the_same_metrics():
    [gong] = parse_body(GONG_WEBHOOK)
    [generic] = parse_body(GENERIC)
    assert gong.metrics == generic.metrics
    assert gong.model_dump(exclude={"source"}) == generic.model_dump(exclude={"source"})
    assert gong.source == "gong"


@pytest.mark.parametrize(("stat", "value", "metric", "expected"), [
    ("Talk Ratio", 72, "talk_ratio", 0.72),
    ("Talk Ratio", 0.43, "talk_ratio", 0.43),
    ("Interactivity", 6.1, "interactivity", 6.1),
    ("Patience", 1.2, "patience_s", 1.2),
    ("Longest Customer Story", 45, "longest_customer_story_s", 45.0),
])
def test_gong_interaction_stats_become_metrics(stat, value, metric, expected):
    body = copy.deepcopy(GONG_WEBHOOK)
    body["callData"]["interaction"]["interactionStats"] = [{"name": stat, "value": value}]
    [call] = parse_body(body)
    assert call.metrics[metric] == pytest.approx(expected)


@pytest.mark.parametrize("junk", [None, "three", True, float("nan")])
def test_gong_stats_and_trackers_that_are_not_numbers_are_left_out(junk):
    body = copy.deepcopy(GONG_WEBHOOK)
    body["callData"]["interaction"]["interactionStats"] = [{"name": "Interactivity", "value": junk}]
    body["callData"]["content"]["trackers"] = [{"name": "Pricing", "count": junk}]
    [call] = parse_body(body)
    assert "interactivity" not in call.metrics and "tracker:Pricing" not in call.metrics


def test_the_original_public_names_still_work():
    call = ScoredCall.model_validate(GENERIC)
    assert adapters.from_gong(GONG_WEBHOOK).call_id == call.call_id
    assert {"Evidence", "CriterionScore", "TranscriptTurn"} <= set(vars(adapters))


@pytest.mark.parametrize("text", [CSV_OK, f"{HEADER}\nc-1,a@example.com,2026-11-20T15:04:05Z,closing,x\n"])
def test_csv_parsing_leaves_the_garbage_collector_as_it_found_it(text):
    import gc

    try:
        parse_csv(text)
    except PayloadError:
        pass
    assert gc.isenabled()
