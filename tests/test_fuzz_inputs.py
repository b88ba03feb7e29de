"""Bad input, fuzzed with hypothesis against the real server on loopback.

What a caller sends (a scored-call webhook, Slack events, clicks, modal submissions, slash commands) and what an
admin writes (`coach.yaml`) is generated, mutated from valid examples, and checked for the promises of issue 8:
never an HTTP 500, never a traceback or Python exception text in the answer, a clear message naming what is wrong
(the webhook's field, the config's path), a sensible ephemeral answer to a command, and the database unchanged by
anything rejected (every table's rows compared before and after).

Each property runs twice: a quick, derandomized profile in the default suite, and a long random one marked `slow`
(`pytest -m slow`, which `.ci/run` runs on SQLite and PostgreSQL). Plain regression tests for the bugs the
fuzzing found are at the end.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel
from typer.testing import CliRunner

from bot.cli import cli
from bot.config import CoachConfig, ConfigError, load_config, parse_config
from bot.demo.driver import TEAM_ID, webhook_headers
from bot.problems import field_path
from bot.slack import ids
from bot.slack.payloads import SLACK_ID
from tests.conftest import (
    APPROVALS,
    MANAGER,
    OUTSIDER,
    REP,
    TEST_CONFIG,
    WEBHOOK_SECRET,
    Harness,
    low_calls,
    scored_call,
)

ROOT = Path(__file__).resolve().parents[1]
QUICK = 30  # examples per property in the default suite


def profiles(long: int, quick: int = QUICK) -> list:
    """The quick profile for the default suite and the long one for `pytest -m slow`."""
    return [pytest.param(quick, id="quick"), pytest.param(long, id="long", marks=pytest.mark.slow)]


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, derandomize=examples <= QUICK,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


# Python's own words in an answer mean an exception escaped to the caller.
LEAK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|\b[A-Z]\w*(Error|Exception):"
                  r"|sqlalchemy|psycopg|pydantic\.dev|Internal Server Error")


def assert_no_leak(text: str) -> None:
    assert not LEAK.search(text), f"Python internals in the answer: {text[:500]!r}"


def snapshot(h: Harness, *, skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every table's rows (as sorted reprs), to compare before and after a request."""
    with h.app.coach.db.engine.connect() as conn:
        return {table.name: sorted(repr(tuple(row)) for row in conn.execute(table.select()))
                for table in SQLModel.metadata.tables.values() if table.name not in skip}


def settled(h: Harness, skip: tuple[str, ...], timeout: float = 3.0) -> dict[str, list[str]]:
    """The snapshot once listeners that run after Slack's ack have finished (two equal snapshots in a row)."""
    deadline = time.monotonic() + timeout
    last = snapshot(h, skip=skip)
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = snapshot(h, skip=skip)
        if now == last:
            return now
        last = now
    return last


# --- values ------------------------------------------------------------------------------------------------------

HUGE = [2**31, 2**63, -(2**63) - 1, 10**30, 10**400, 1e308, -1e308, 5e-324]
ODD_TEXT = ["", " ", "\x00", "a\x00b", "\ud800", "\udfff x", "\U0001f3af target", "Ünïcödé", "\u202eevil",
            "x" * 300, "<@U0ALEX>", "<!channel>", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+05:00",
            "2026-11-20T15:04:05", "2026-13-45T99:00:00Z", "NaN", "1e999", "null", "{}", "[]"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
                    st.sampled_from(HUGE), st.sampled_from(ODD_TEXT))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=10) | st.sampled_from(ODD_TEXT), kids, max_size=4),
                           max_leaves=12)


def _places(doc: Any, path: tuple = ()) -> list[tuple[tuple, Any, Any]]:
    """(path, container, key) of every value inside `doc`."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        out.append((path + (key,), doc, key))
        out += _places(value, path + (key,))
    return out


@st.composite
def mutated(draw: Callable, template: Any) -> tuple[Any, list[tuple]]:
    """A valid document with one to three values replaced, deleted or added; returns it and the paths touched."""
    doc = copy.deepcopy(template)
    touched = []
    for _ in range(draw(st.integers(1, 3))):
        places = _places(doc)
        if not places:
            break
        path, container, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            del container[key]
        elif action == "add" and isinstance(container, dict):
            path = path[:-1] + (draw(st.text(min_size=1, max_size=12)),)
            container[path[-1]] = draw(json_values)
        else:
            container[key] = draw(json_values)
        touched.append(path)
    return doc, touched


def encode(draw: Callable, doc: Any) -> bytes:
    """JSON as senders write it: ASCII-escaped, UTF-8, or (rarely) with invalid UTF-8 from a lone surrogate."""
    style = draw(st.sampled_from(["ascii", "utf-8", "utf-8", "surrogatepass"]))
    text = json.dumps(doc, ensure_ascii=style == "ascii")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass") if style == "surrogatepass" else json.dumps(doc).encode()


# --- (a) POST /webhooks/calls --------------------------------------------------------------------------------------

GONG_CONFIG = {**TEST_CONFIG, "gong": {"questions": {"333": {"criterion": "objection_handling", "min_range": 1,
                                                              "max_range": 5}}, "users": {"222": REP}}}
CALL = {**scored_call("fz-1", 45, quote="I guess we could knock 20% off"),
        "call_type": "negotiation", "metrics": {"talk_ratio": 0.72, "longest_monologue_s": 190, "questions": 4},
        "transcript": [{"speaker": "rep", "start_s": 0.0, "end_s": 4.2, "text": "Thanks for making time."},
                       {"speaker": "customer", "start_s": 4.2, "end_s": 9.0, "text": "Sure. Price is the issue."}]}
GONG_CALL = {"isTest": False, "callData": {
    "metaData": {"id": "7782342274025937895", "url": "https://app.gong.io/call?id=778", "title": "Acme - pricing",
                 "started": "2026-11-20T15:04:05Z", "duration": 1834, "primaryUserId": "2345", "purpose": "Demo"},
    "parties": [{"id": "1", "emailAddress": "alex@example.com", "userId": "2345", "affiliation": "Internal"},
                {"id": "2", "name": "Buyer", "affiliation": "External"}],
    "interaction": {"interactionStats": [{"name": "Talk Ratio", "value": 62}, {"name": "Longest Monologue",
                                                                               "value": 121}],
                    "questions": {"companyCount": 5}},
    "content": {"trackers": [{"name": "Pricing", "count": 2}, {"name": "Competitors", "occurrences": [{}]}]}}}
GONG_CARDS = {"answeredScorecards": [{"callId": 111, "callStartTime": "2026-11-20T15:04:05Z", "reviewedUserId": 222,
                                      "answers": [{"questionId": 333, "score": 2, "answerText": "Caved on price"},
                                                  {"questionId": 444, "isOverall": True, "score": 3}]}]}
TEMPLATES = [CALL, [CALL, scored_call("fz-2", 80)], GONG_CALL, GONG_CARDS]
WEBHOOK_ANSWERS = {202, 400, 401, 413, 422}


@pytest.fixture
def webhook(start_app) -> Harness:
    """The app without its background jobs: nothing but the request under test changes the database."""
    return start_app(config=GONG_CONFIG, background=False)


def post_calls(h: Harness, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    """Send a body and check what every answer promises; the database must be unchanged unless it is a 202."""
    before = snapshot(h)
    r = h.http.post(f"{h.url}/webhooks/calls", content=raw, headers=headers)
    assert r.status_code in WEBHOOK_ANSWERS, f"{r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert_no_leak(r.text)
    answer = r.json()
    if r.status_code == 202:
        assert set(answer) == {"accepted", "duplicates"}
        return r
    assert isinstance(answer["error"], str) and answer["error"].strip(), answer
    if r.status_code == 422:
        problems = answer["problems"]
        assert problems and all(p["field"].strip() and p["message"].strip() for p in problems), problems
        assert answer["error"] == f"{problems[0]['field']}: {problems[0]['message']}"
    assert snapshot(h) == before, f"a rejected body ({r.status_code}) changed the database: {answer}"
    return r


def signed(raw: bytes) -> dict[str, str]:
    return webhook_headers(WEBHOOK_SECRET, raw)


def count_calls(doc: Any) -> int | None:
    if isinstance(doc, list):
        return len(doc)
    return 1 if isinstance(doc, dict) and "answeredScorecards" not in doc else None


@pytest.mark.parametrize("examples", profiles(400))
def test_webhook_any_json_is_answered_plainly(webhook, examples):
    @fuzz(examples)
    @given(data=st.data(), doc=json_values)
    def run(data, doc):
        raw = encode(data.draw, doc)  # the body and its signature are the same bytes
        r = post_calls(webhook, raw, signed(raw))
        if not isinstance(doc, dict | list) or doc == []:
            assert r.status_code in {400, 422}

    run()


@pytest.mark.parametrize("examples", profiles(600))
def test_webhook_near_valid_calls_are_accepted_or_named(webhook, examples):
    @fuzz(examples)
    @given(data=st.data(), template=st.sampled_from(TEMPLATES))
    def run(data, template):
        doc, touched = data.draw(mutated(template))
        raw = encode(data.draw, doc)
        r = post_calls(webhook, raw, signed(raw))
        if r.status_code == 202 and (n := count_calls(doc)) is not None and not (isinstance(doc, dict)
                                                                                   and doc.get("isTest")):
            assert sum(r.json().values()) == n, (doc, r.json())

    run()


@pytest.mark.parametrize("examples", profiles(300))
def test_webhook_non_json_bytes_and_deep_nesting_are_400(webhook, examples):
    nesting = st.integers(1, 200_000).map(lambda d: b"[" * d + b"1" + b"]" * d) | \
        st.integers(1, 100_000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d)

    @fuzz(examples)
    @given(raw=st.binary(max_size=300) | nesting | st.sampled_from([b"", b"{", b"NaN", b"1" * 5000, b"\xff\xfe{}"]))
    def run(raw):
        r = post_calls(webhook, raw, signed(raw))
        assert r.status_code in {202, 400, 422}

    run()


visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)


@pytest.mark.parametrize("examples", profiles(300))
def test_webhook_bad_signatures_are_401_and_store_nothing(webhook, examples):
    raw = json.dumps(scored_call("sig-1", 40)).encode()
    good = signed(raw)

    def headers_for(kind: str, junk: str, skew: int) -> dict[str, str]:
        if kind == "none":
            return {"Content-Type": "application/json"}
        if kind == "no-signature":
            return {k: v for k, v in good.items() if k != "X-Rehearse-Signature"}
        if kind == "no-timestamp":
            return {k: v for k, v in good.items() if k != "X-Rehearse-Timestamp"}
        if kind == "wrong-secret":
            return webhook_headers(junk or "x", raw)
        if kind == "junk-signature":
            return {**good, "X-Rehearse-Signature": junk}
        if kind == "junk-timestamp":
            return {**good, "X-Rehearse-Timestamp": junk}
        if kind == "stale":
            # Whole seconds: rounded down, "now + 301" could be 300.x s ahead by the time the server reads it.
            return webhook_headers(WEBHOOK_SECRET, raw, math.ceil(time.time()) + skew if skew > 0
                                   else int(time.time()) + skew)
        return good  # "tampered": a good signature of another body

    @fuzz(examples)
    @given(kind=st.sampled_from(["none", "no-signature", "no-timestamp", "wrong-secret", "junk-signature",
                                 "junk-timestamp", "stale", "tampered"]),
           junk=visible.filter(lambda s: s != WEBHOOK_SECRET and s != good["X-Rehearse-Signature"]),
           skew=st.integers(301, 10**9) | st.integers(-(10**9), -301))
    def run(kind, junk, skew):
        body = raw.replace(b"sig-1", b"sig-2") if kind == "tampered" else raw
        if kind == "junk-timestamp" and junk.lstrip("-").isdigit() and abs(int(junk) - time.time()) <= 300:
            return  # a valid timestamp by chance
        r = post_calls(webhook, body, headers_for(kind, junk, skew))
        assert r.status_code == 401, r.text
        assert "X-Rehearse" in r.json()["error"]

    run()


def test_webhook_body_over_a_mebibyte_is_413_even_without_a_length(webhook):
    raw = json.dumps([scored_call(f"big-{i}", 50, quote="x" * 1500) for i in range(700)]).encode()
    assert len(raw) > 1024 * 1024
    r = post_calls(webhook, raw, signed(raw))
    assert r.status_code == 413
    before = snapshot(webhook)
    chunked = webhook.http.post(f"{webhook.url}/webhooks/calls", content=iter([raw[:500_000], raw[500_000:]]),
                                headers=signed(raw))
    assert chunked.status_code == 413 and "smaller batches" in chunked.json()["error"]
    assert snapshot(webhook) == before


def _numeric_places(doc: Any) -> list[tuple]:
    """The path of every number (not a boolean) in a document."""
    return [path for path, container, key in _places(doc)
            if isinstance(container[key], int | float) and not isinstance(container[key], bool)]


def _set(doc: Any, path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize("template", [CALL, GONG_CALL, GONG_CARDS], ids=["generic", "gong", "scorecards"])
def test_webhook_huge_integers_in_every_numeric_field_are_refused_by_name(webhook, template):
    refused = 0
    for path in _numeric_places(template):
        for huge in (10**400, -(10**30), 10**30):
            raw = json.dumps(_set(template, path, huge)).encode()
            r = post_calls(webhook, raw, signed(raw))
            if r.status_code == 202:  # a number no rule reads as one (a Gong id becomes text)
                continue
            assert r.status_code == 422, (field_path(path), r.text)
            assert field_path(path) in {p["field"] for p in r.json()["problems"]}, (field_path(path), r.json())
            refused += 1
    assert refused, "no field was refused: the test checked nothing"


# Slack's markup (mrkdwn): pings, mentions, channel links, links, formatting, entities, the characters that end a
# link early. Text from outside that reaches a message must show these literally.
MARKUP = ["<!channel>", "<!here>", "<!everyone>", "<@U07MGR0EAST>", "<#C0SECRET>", "<!subteam^S0123>",
          "<https://evil.example|click>", "<mailto:x@evil.example|mail>", "<!date^1^{date}|x>", "*bold*", "_it_",
          "~s~", "`code`", "```", "&lt;!channel&gt;", "&amp;", "|", ">", "<", "\n> quote"]
storable = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=4)
markup_text = st.lists(st.sampled_from(MARKUP) | storable, min_size=1, max_size=5).map("".join).filter(str.strip)
# The markup Rehearse itself writes: its people, Slack's dates, and links to the calls' recordings.
OUR_MARKUP = re.compile(r"<@U0(ALEX|DANA|SAM)>|<!date\^\d+\^[^|<>]*\|[^<>]*>"
                        r"|<https://ci\.example\.com/[^|<> ]*\|[^<>]*>")


def foreign_markup(h: Harness) -> list[str]:
    """Every `<...>` in what the bot posted or published that Rehearse did not write itself."""
    shown = [*h.standin.messages, *h.standin.modals, *h.standin.views.values()]
    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key not in ("value", "action_id", "block_id", "private_metadata", "url", "ts", "channel"):
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(shown)
    return [token for text in texts for token in re.findall(r"<[^<>]*>?", OUR_MARKUP.sub("", text))]


@pytest.mark.parametrize("examples", profiles(30, quick=12))
def test_slack_markup_in_any_call_text_is_shown_literally(harness, examples):
    """Titles, call types and evidence quotes full of markup: the approval message (and each update of it as the
    evidence grows) pings, mentions and links nobody."""
    count = iter(range(10**6))

    @fuzz(examples)
    @given(title=markup_text, call_type=markup_text, quotes=st.lists(markup_text, min_size=1, max_size=3))
    def run(title, call_type, quotes):
        n = next(count)
        calls = [{**scored_call(f"mk-{n}-{i}", 30 + i, days_ago=3 - i * 0.1, quote=quote), "title": title,
                  "call_type": call_type} for i, quote in enumerate(quotes * (3 // len(quotes) + 1))][:3]
        assert harness.send_calls(calls).status_code == 202
        settled(harness, ())
        assert not foreign_markup(harness)

    run()
    assert harness.standin.messages_in(APPROVALS), "no approval message was posted: the property checked nothing"


# --- (b) Slack events and interactions, signed as Slack signs them -------------------------------------------------

LISTENED_EVENTS = {"message", "app_home_opened", "app_uninstalled", "tokens_revoked"}
UNINSTALL_EVENTS = {"app_uninstalled", "tokens_revoked"}
ACTIONS = [ids.APPROVE, ids.SKIP, ids.START_PRACTICE, ids.CHANGE_SCENARIO, ids.DISPUTE, ids.KEEP, ids.WITHDRAW,
           ids.RETAKE, ids.PICK_DRILL, ids.HOME_START, ids.HOME_PAGE, ids.PRACTICE_DONE]
# Clicks and submissions that decide or change someone's nudge: refused to a person with no say in it.
DECIDING = {ids.APPROVE, ids.SKIP, ids.CHANGE_SCENARIO, ids.KEEP, ids.WITHDRAW, ids.RETAKE, ids.PRACTICE_DONE,
            ids.HOME_START, ids.SKIP_REASON_VIEW, ids.DISPUTE_VIEW}
STRANGERS = [OUTSIDER, "U0NOBODY"]
# What a rejected Slack request may still change: the answer it queues (outbox), its event id (retry dedupe) and
# the audit entry of a refused attempt.
ANSWERS_ONLY = ("outbox", "slack_events", "audit_log")


@pytest.fixture
def slack(harness) -> tuple[Harness, dict]:
    """The app with one nudge waiting for the manager's approval, and that approval message."""
    assert harness.send_calls(low_calls()).status_code == 202
    return harness, harness.approval_message()


def post_slack(h: Harness, body: str, content_type: str) -> httpx.Response:
    r = h.slack.post(body, content_type)
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    assert r.elapsed.total_seconds() < 2.5, f"answered after {r.elapsed}: Slack gives up at 3 s"
    assert_no_leak(r.text)
    return r


def interaction(payload: dict) -> str:
    return "payload=" + urllib.parse.quote(json.dumps(payload))


def nudge_values(nudge_id: int) -> st.SearchStrategy:
    return st.one_of(st.sampled_from([str(nudge_id), f"nudge:{nudge_id}", f"{nudge_id}:price-objection",
                                      "scenario:price-objection", "followup:1", "1", "0", "-1", "999999999999",
                                      "nudge:", ":", "abc", ""]), st.text(max_size=30), json_values)


def events(users: st.SearchStrategy, kinds: st.SearchStrategy) -> st.SearchStrategy:
    event = st.fixed_dictionaries(
        {"type": kinds},
        optional={"channel_type": st.sampled_from(["im", "channel", "group", "mpim"]) | json_values,
                  "subtype": st.sampled_from(["message_changed", "message_deleted", "bot_message", "file_share",
                                              "thread_broadcast", "channel_join"]) | json_values,
                  "user": users | json_values, "text": st.text() | json_values, "bot_id": json_values,
                  "channel": st.sampled_from(["D0ALEX", "C0APPROVALS"]) | json_values,
                  "thread_ts": st.sampled_from(["1700000000.000100"]) | json_values, "ts": json_values,
                  "tab": st.sampled_from(["home", "messages"]) | json_values, "view": json_values})
    return st.fixed_dictionaries(
        {"token": st.just("legacy"), "team_id": st.just(TEAM_ID), "api_app_id": st.just("A0REHEARSE"),
         "type": st.just("event_callback"), "event": event,
         "event_id": st.text(st.characters(min_codepoint=0x30, max_codepoint=0x7A), min_size=1, max_size=12)
         .map(lambda s: f"EvFZ{s}"), "event_time": st.integers(0, 2**31)},
        optional={"authorizations": json_values})


def unstorable(value: Any) -> bool:
    """Whether any string in a document, key or value, holds a NUL or half of a surrogate pair: no database
    stores them, so the door refuses such a payload with a 400 whatever its shape."""
    if isinstance(value, str):
        return "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    return isinstance(value, list) and any(unstorable(v) for v in value)


def odd_event(body: dict) -> bool:
    """Shapes Slack never sends: Bolt reads the envelope and the event's ids before any listener, the door refuses
    a person or a channel that is not shaped as Slack's ids, and text no database stores, so these may be a 400."""
    event = body["event"]
    return ("authorizations" in body or not all(isinstance(v, str) for v in event.values())
            or any(not SLACK_ID.fullmatch(event[k]) for k in ("user", "channel") if k in event)
            or unstorable(body))


@pytest.mark.parametrize("examples", profiles(120))
def test_slack_events_with_odd_contents_are_acked_and_change_nothing_of_a_stranger(slack, examples):
    h, _ = slack

    @fuzz(examples)
    @given(body=events(st.sampled_from(STRANGERS), st.sampled_from(sorted(LISTENED_EVENTS - UNINSTALL_EVENTS))
                       | st.text(max_size=20).filter(lambda kind: kind not in UNINSTALL_EVENTS)))
    def run(body):
        before = settled(h, ANSWERS_ONLY)  # what earlier examples started has landed
        r = post_slack(h, json.dumps(body), "application/json")
        kind = body["event"]["type"]
        expected = 200 if kind in LISTENED_EVENTS else 404  # Slack sends only the events the app subscribes to
        assert r.status_code == expected or (odd_event(body) and r.status_code == 400), (kind, r.status_code, r.text)
        assert settled(h, ANSWERS_ONLY) == before

    run()


@pytest.mark.parametrize("examples", profiles(100))
def test_uninstall_events_with_odd_contents_are_acked(slack, examples):
    """`app_uninstalled` and `tokens_revoked` change the installation's state, as they should: no 500 either way."""
    h, _ = slack

    @fuzz(examples)
    @given(body=events(st.sampled_from(STRANGERS), st.sampled_from(sorted(UNINSTALL_EVENTS))))
    def run(body):
        r = post_slack(h, json.dumps(body), "application/json")
        assert r.status_code == 200 or (odd_event(body) and r.status_code == 400), r.text

    run()


@pytest.mark.parametrize("examples", profiles(150))
def test_url_verification_echoes_any_challenge(slack, examples):
    h, _ = slack

    @fuzz(examples)
    @given(challenge=st.text(max_size=100))
    def run(challenge):
        r = post_slack(h, json.dumps({"token": "legacy", "challenge": challenge, "type": "url_verification"}),
                       "application/json")
        if "\x00" in challenge:  # no Slack payload has one: refused at the door, as in every other request
            assert r.status_code == 400 and "NUL" in r.json()["error"], r.text
            return
        assert r.status_code == 200 and r.json() == {"challenge": challenge}

    run()


def clicks(approval: dict, nudge_id: int, users: st.SearchStrategy) -> st.SearchStrategy:
    message_container = st.fixed_dictionaries(
        {"type": st.just("message"), "message_ts": st.sampled_from([approval["ts"], "1.2"]) | json_values,
         "channel_id": st.sampled_from([approval["channel"], "D0ALEX"]) | json_values})
    view_container = st.fixed_dictionaries({"type": st.just("view"), "view_id": st.just("V0HOME")})
    action = st.fixed_dictionaries(
        {"type": st.sampled_from(["button", "static_select"]), "action_id": st.sampled_from(ACTIONS),
         "block_id": st.text(max_size=10), "action_ts": st.just("1700000000.000200")},
        optional={"value": nudge_values(nudge_id),
                  "selected_option": st.fixed_dictionaries({"value": nudge_values(nudge_id)}) | json_values})
    return st.fixed_dictionaries(
        {"type": st.just("block_actions"), "team": st.just({"id": TEAM_ID, "domain": "rehearse-demo"}),
         "user": users.map(lambda u: {"id": u, "username": "fuzz", "team_id": TEAM_ID}),
         "api_app_id": st.just("A0REHEARSE"), "token": st.just("legacy"), "trigger_id": st.just("13345.1.abc"),
         "container": message_container | view_container | json_values,
         "actions": st.lists(action, min_size=1, max_size=2)},
        optional={"response_url": st.just("https://hooks.slack.invalid/actions/1"),
                  "channel": st.just({"id": approval["channel"]}), "view": json_values, "message": json_values})


def submissions(nudge_id: int, users: st.SearchStrategy) -> st.SearchStrategy:
    metadata = st.one_of(
        st.fixed_dictionaries({"nudge_id": st.sampled_from([nudge_id, 0, -1, 10**20]) | json_values},
                              optional={"channel": json_values, "message_ts": json_values}).map(json.dumps),
        st.text(max_size=50))
    typed = st.fixed_dictionaries({"type": st.just("plain_text_input"), "value": st.none() | st.text()})
    state = st.dictionaries(st.sampled_from([ids.REASON_BLOCK, ids.COMMENT_BLOCK, "other"]),
                            st.dictionaries(st.sampled_from([ids.REASON_INPUT, ids.COMMENT_INPUT, "x"]),
                                            typed | json_values, max_size=2), max_size=2)
    view = st.fixed_dictionaries(
        {"id": st.just("V0FUZZ"), "type": st.just("modal"), "hash": st.just("1.hash"),
         "callback_id": st.sampled_from([ids.SKIP_REASON_VIEW, ids.DISPUTE_VIEW]),
         "private_metadata": metadata, "state": st.fixed_dictionaries({"values": state})})
    return st.fixed_dictionaries(
        {"type": st.just("view_submission"), "team": st.just({"id": TEAM_ID, "domain": "rehearse-demo"}),
         "user": users.map(lambda u: {"id": u, "username": "fuzz", "team_id": TEAM_ID}),
         "api_app_id": st.just("A0REHEARSE"), "token": st.just("legacy"), "trigger_id": st.just("13345.1.abc"),
         "view": view, "response_urls": st.just([])})


@pytest.mark.parametrize("examples", profiles(120))
def test_strangers_clicks_and_submissions_are_acked_and_change_nothing(slack, caplog, examples):
    h, approval = slack
    nudge_id = first_nudge_id(h)

    @fuzz(examples)
    @given(payload=clicks(approval, nudge_id, st.sampled_from(STRANGERS)) | submissions(nudge_id,
                                                                                        st.sampled_from(STRANGERS)))
    def run(payload):
        before = settled(h, ANSWERS_ONLY)  # what earlier examples started has landed
        r = post_slack(h, interaction(payload), "application/x-www-form-urlencoded")
        assert r.status_code == 200 or refused_as_odd(r), r.text
        view = payload["view"] if payload["type"] == "view_submission" else {}
        deciding = {a["action_id"] for a in payload.get("actions", [])} | {view.get("callback_id")}
        if deciding & DECIDING and not deciding - DECIDING - {None}:
            assert settled(h, ANSWERS_ONLY) == before, payload

    with caplog.at_level(logging.ERROR):
        run()
    assert_listener_failures_logged(caplog)


@pytest.mark.parametrize("examples", profiles(150))
def test_anyones_mutated_clicks_never_fail_the_request(slack, caplog, examples):
    """The manager and the rep too (their clicks may legitimately change things): Slack always gets its 200 (a 400
    only for a shape Slack never sends)."""
    h, approval = slack
    nudge_id = first_nudge_id(h)
    people = st.sampled_from([MANAGER, REP, *STRANGERS])

    @fuzz(examples)
    @given(payload=clicks(approval, nudge_id, people) | submissions(nudge_id, people))
    def run(payload):
        r = post_slack(h, interaction(payload), "application/x-www-form-urlencoded")
        assert r.status_code == 200 or refused_as_odd(r), r.text

    with caplog.at_level(logging.ERROR):
        run()
    settled(h, ())
    assert_listener_failures_logged(caplog)


def refused_as_odd(r: httpx.Response) -> bool:
    """A 400 naming the payload as not Slack's (a container, a view, an id not shaped as Slack sends them)."""
    return r.status_code == 400 and r.json()["error"].startswith("not a Slack payload")


def first_nudge_id(h: Harness) -> int:
    from sqlmodel import select

    from storage.models import Nudge

    with h.app.coach.db.reading() as session:
        return session.exec(select(Nudge.id)).first()


def assert_listener_failures_logged(caplog) -> None:
    """A listener that failed after the ack was logged by the app (with its exception), not lost with its thread."""
    for record in caplog.records:
        if record.levelno >= logging.ERROR and record.name in ("bot.handlers", "bot.coach"):
            assert record.exc_info, f"an error logged without its exception: {record.getMessage()}"


# Timestamps and signatures that are not what Slack sends: the request is not Slack's (401), whatever its body.
header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
junk_timestamps = st.one_of(
    header_text.filter(lambda t: not (t.isdigit() and len(t) <= 12)),
    st.integers(10**12, 10**40).map(str), st.integers(-(10**12), -1).map(str),
    st.sampled_from(["abc", "1.5", "", "-1", "1e3", "0x10", "1" * 500, "９９", "١٢٣", "+1700000000"]))
junk_signatures = st.one_of(header_text, st.sampled_from(["v0=é", "v0=" + "0" * 64, "v0=☃", "v1=00", ""]))


def slack_template(approval: dict, user: str) -> st.SearchStrategy:
    """A correct request of each kind Slack sends: an event, a click, a modal submission, a slash command."""
    event = {"token": "legacy", "team_id": TEAM_ID, "api_app_id": "A0REHEARSE", "type": "event_callback",
             "event_id": "EvFZ1", "event_time": 1, "authorizations": [{"team_id": TEAM_ID, "user_id": "U0BOT"}],
             "event": {"type": "message", "channel_type": "im", "channel": "D0ALEX", "user": user, "text": "hi",
                       "ts": "1700000000.000100", "thread_ts": "1700000000.000001"}}
    click = {"type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": user, "team_id": TEAM_ID},
             "api_app_id": "A0REHEARSE", "token": "legacy", "trigger_id": "1.1.abc",
             "container": {"type": "message", "message_ts": approval["ts"], "channel_id": approval["channel"]},
             "actions": [{"type": "button", "action_id": ids.APPROVE, "block_id": "b", "value": "1",
                          "action_ts": "1.2"}]}
    submission = {"type": "view_submission", "team": {"id": TEAM_ID}, "user": {"id": user, "team_id": TEAM_ID},
                  "api_app_id": "A0REHEARSE", "token": "legacy", "trigger_id": "1.1.abc",
                  "view": {"id": "V0X", "type": "modal", "callback_id": ids.SKIP_REASON_VIEW, "state": {"values": {}},
                           "private_metadata": json.dumps({"nudge_id": 1, "channel": approval["channel"],
                                                           "message_ts": approval["ts"]})}}
    command = {"token": "legacy", "team_id": TEAM_ID, "channel_id": "C0GENERAL", "user_id": user,
               "command": ids.DRILL_COMMAND, "text": "price", "trigger_id": "1.1.abc"}
    return st.sampled_from([("json", event), ("form", click), ("form", submission), ("command", command)])


def slack_body(kind: str, doc: Any) -> tuple[str, str]:
    if kind == "json":
        return json.dumps(doc), "application/json"
    if kind == "command":
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
        return urllib.parse.urlencode(fields, errors="surrogatepass"), "application/x-www-form-urlencoded"
    return interaction(doc), "application/x-www-form-urlencoded"


@pytest.mark.parametrize("examples", profiles(150))
def test_slack_requests_with_timestamps_or_signatures_slack_never_sends_are_401(slack, examples):
    h, approval = slack

    @fuzz(examples)
    @given(template=slack_template(approval, MANAGER), timestamp=junk_timestamps, signature=junk_signatures,
           which=st.sampled_from(["timestamp", "signature", "both"]))
    def run(template, timestamp, signature, which):
        body, content_type = slack_body(*template)
        headers = h.slack.signed_headers(body, content_type)
        if which != "signature":
            headers["X-Slack-Request-Timestamp"] = timestamp
        if which != "timestamp":
            headers["X-Slack-Signature"] = signature
        before = settled(h, ())  # what the fixture's calls started (the approval message) has landed
        r = h.http.post(h.slack.url, content=body.encode(), headers={k: v.encode() for k, v in headers.items()})
        assert r.status_code == 401, (r.status_code, r.text, headers)
        assert_no_leak(r.text)
        assert settled(h, ()) == before

    run()


@pytest.mark.parametrize("examples", profiles(200))
def test_signed_requests_with_null_or_wrong_typed_parts_are_answered_plainly_without_a_failure(slack, caplog,
                                                                                                examples):
    """Any part of an envelope (the event, the actions, the view, the user, the team...) null, false, a string, a
    number, missing: a 4xx or Slack's 200, never a failure in the log, and a stranger's click, submission or message
    changes nothing."""
    h, approval = slack

    @fuzz(examples)
    @given(data=st.data(), template=slack_template(approval, OUTSIDER))
    def run(data, template):
        kind, doc = template
        mutant, _ = data.draw(mutated(doc))
        before = settled(h, ANSWERS_ONLY)
        body, content_type = slack_body(kind, mutant)
        r = post_slack(h, body, content_type)
        assert r.status_code in {200, 400, 403, 404}, (r.status_code, r.text)
        if kind != "command":  # `/drill price` starts the caller's own drill, stranger or not
            assert settled(h, ANSWERS_ONLY) == before, mutant

    with caplog.at_level(logging.WARNING):
        run()
        settled(h, ())
    failures = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR or rec.exc_info]
    assert not failures, failures[:5]


# --- (c) slash commands --------------------------------------------------------------------------------------------

command_text = st.one_of(
    st.text(max_size=200), st.text(st.characters(codec="utf-8"), max_size=3000),
    st.sampled_from(["price", "objection handling", "disc", "<@U0ALEX>", "<@U0ALEX|alex>", "<@U0EVE> please",
                     "<@", "<@>", "<@u0alex>", "<!channel>", "*bold* _it_ `code`", "   ", "\n\t", "🎯" * 50,
                     "price-objection", "x" * 4000, "&lt;@U0ALEX&gt;", "%00", "\u202e"]))


def ephemeral_text(r: httpx.Response) -> str:
    """A slash command's answer as Slack shows it: plain text, or JSON that is not posted in the channel."""
    assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
    if r.headers.get("content-type", "").startswith("application/json"):
        answer = r.json()
        assert answer.get("response_type", "ephemeral") == "ephemeral", answer
        text = answer.get("text") or json.dumps(answer.get("blocks"))
    else:
        text = r.text
    assert text.strip(), "an empty answer"
    assert_no_leak(text)
    return text


@pytest.mark.parametrize("examples", profiles(150))
def test_slash_command_text_gets_an_ephemeral_answer(slack, examples):
    h, _ = slack

    @fuzz(examples)
    @given(command=st.sampled_from([ids.DRILL_COMMAND, ids.PROGRESS_COMMAND]), text=command_text,
           user=st.sampled_from([MANAGER, REP, *STRANGERS]))
    def run(command, text, user):
        before = settled(h, ANSWERS_ONLY)  # what earlier examples started has landed
        if "\x00" in text:  # no Slack payload has one, and no database stores it: refused at the door
            r = h.slack.command(command, user=user, text=text)
            assert r.status_code == 400 and "NUL" in r.json()["error"], r.text
            return
        answer = ephemeral_text(h.slack.command(command, user=user, text=text))
        if command == ids.PROGRESS_COMMAND or "No drill matches" in answer or not text.strip():
            assert settled(h, ANSWERS_ONLY) == before, (command, text)

    run()


# --- (d) coach.yaml ------------------------------------------------------------------------------------------------

EXAMPLE = yaml.safe_load((ROOT / "coach.example.yaml").read_text())


_STEP = r'(?:[^.\[\]":\s]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])'
PROBLEM = re.compile(rf"(\(top level\)|{_STEP}(?:\.?{_STEP})*): (\S.*)", re.DOTALL)


def assert_problems_by_path(exc: ConfigError) -> list[str]:
    """Each problem is `path: message`, the path one a person can follow (odd keys quoted)."""
    assert exc.problems, "a ConfigError without problems"
    paths = []
    for problem in exc.problems:
        match = PROBLEM.fullmatch(problem)
        assert match, f"a problem without a readable path: {problem!r}"
        assert_no_leak(problem)
        paths.append(match.group(1))
    return paths


yaml_documents = st.one_of(
    st.text(max_size=300),
    json_values.map(lambda v: yaml.safe_dump(v, allow_unicode=True) if not isinstance(v, str) else v),
    st.sampled_from(["teams: [", "a: b: c", "- [\n", "*alias", "!!python/object:os.system {}", "? [a]\n: b",
                     "teams: &t [*t]", "[" * 300, "{a: " * 300, "key: !!binary 'not base64'", "\t- tab"]))


@pytest.mark.parametrize("examples", profiles(500))
def test_any_yaml_text_is_a_config_or_problems_by_path(tmp_path, examples):
    path = tmp_path / "coach.yaml"

    @fuzz(examples)
    @given(text=yaml_documents, as_bytes=st.binary(max_size=200))
    def run(text, as_bytes):
        for content in (text.encode("utf-8", "surrogatepass"), as_bytes):
            path.write_bytes(content)
            try:
                assert isinstance(load_config(path), CoachConfig)
            except ConfigError as exc:
                assert_problems_by_path(exc)

    run()


def _related(problem_path: str, touched: list[tuple]) -> bool:
    """A problem names a path the mutation touched (or a cross-field rule at the top)."""
    if problem_path == "(top level)":
        return True
    heads = {field_path(t[:1]) for t in touched if t}
    return any(problem_path == h or problem_path.startswith((h + ".", h + "[")) for h in heads)


@pytest.mark.parametrize("examples", profiles(600))
def test_mutated_valid_config_is_accepted_or_names_the_mutated_path(examples):
    parse_config(EXAMPLE)

    @fuzz(examples)
    @given(data=st.data())
    def run(data):
        doc, touched = data.draw(mutated(EXAMPLE))
        try:
            parse_config(doc)
        except ConfigError as exc:
            paths = assert_problems_by_path(exc)
            assert any(_related(p, touched) for p in paths), (paths, touched)

    run()


@pytest.mark.parametrize("examples", profiles(80, quick=10))
def test_config_check_explains_mutated_configs_without_a_traceback(tmp_path, examples):
    path = tmp_path / "coach.yaml"
    runner = CliRunner()

    @fuzz(examples)
    @given(data=st.data())
    def run(data):
        doc, _ = data.draw(mutated(EXAMPLE))
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        result = runner.invoke(cli, ["config", "check", str(path)])
        assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert_no_leak(result.output)
        if result.exit_code == 1:
            assert "problem(s)" in result.output

    run()


# --- (e) what reaches a terminal ------------------------------------------------------------------------------------

# What a terminal acts on: C0 and C1 control characters (ESC sequences, CSI, BEL, backspace) and bidi overrides.
TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ESCAPES = ["\x1b]0;pwned\x07", "\x1b[2J", "\x1b[31m", "\x9b31m", "\x08\x08", "\r", "\u202e", "\x07", "\x7f",
           "[bold red]rich[/]", "\x1bP+q\x1b\\"]
terminal_text = st.lists(st.sampled_from(ESCAPES) | storable, min_size=1, max_size=4).map("".join).filter(str.strip)


@pytest.fixture
def cli_env(tmp_path, database_url, standin, monkeypatch) -> Path:
    config = tmp_path / "coach.yaml"
    config.write_text(yaml.safe_dump(TEST_CONFIG))
    for name, value in {"REHEARSE_CONFIG": str(config), "DATABASE_URL": database_url,
                        "SLACK_BOT_TOKEN": standin.bot_token, "SLACK_API_URL": standin.base_url}.items():
        monkeypatch.setenv(name, value)
    return tmp_path


@pytest.mark.parametrize("examples", profiles(20, quick=8))
def test_text_from_outside_never_reaches_the_terminal_as_control_characters(cli_env, examples):
    """Rep references, titles, call types and quotes with escape sequences, through `rehearse ingest`, its
    `--unmatched` list and `rehearse audit`: shown as escapes, never sent to the terminal as they are."""
    runner = CliRunner()
    count = iter(range(10**6))

    @fuzz(examples)
    @given(rep=terminal_text, title=terminal_text, call_type=terminal_text, quote=terminal_text,
           key=terminal_text)
    def run(rep, title, call_type, quote, key):
        n = next(count)
        calls = [{**scored_call(f"tt-{n}", 40, quote=quote), "rep": rep, "title": title, "call_type": call_type},
                 {**scored_call(f"tt-{n}-b", 40), "scores": [{"criterion": "objection_handling", "score": 40,
                                                              key: "x"}], "rep": rep}]
        path = cli_env / "calls.json"
        path.write_text(json.dumps(calls), encoding="utf-8")
        for args in (["ingest", str(path)], ["ingest", "--unmatched"], ["audit"]):
            result = runner.invoke(cli, args)
            assert result.exit_code in (0, 1), (args, result.output, result.exception)
            assert not TERMINAL_CONTROL.search(result.output), (args, result.output)

    run()


# --- regressions: what the fuzzing found ---------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "status", "field"), [
    (b'{"call_id": 1' + b"1" * 5000 + b"}", 400, None),  # Python reads no integer of over 4,300 digits
    (json.dumps({**scored_call("r-1", 50), "title": "Acme \ud800"}).encode(), 422, "title"),
    (json.dumps({**scored_call("r-2", 50), "title": "Acme \x00"}).encode(), 422, "title"),
    (json.dumps({**scored_call("r-3", 50), "duration_s": 10**30}).encode(), 422, "duration_s"),
    (json.dumps({**scored_call("r-4", 50), "started_at": "0001-01-01T00:00:00+05:00"}).encode(), 422, "started_at"),
    (json.dumps({**scored_call("r-5", 50), "metrics": {"talk_ratio": float("nan")}}).encode(), 422,
     "metrics.talk_ratio"),
    (b'{"call_id": "r-6", "rep": "U0ALEX", "started_at": "2026-11-20T15:04:05Z", '
     b'"scores": [{"criterion": "discovery", "score": 1e999, "max": 1e999}]}', 422, "scores[0].max"),
    (json.dumps({"callData": {"metaData": [], "parties": "alex"}}).encode(), 422, "callData.metaData"),
    (json.dumps({**GONG_CALL, "callData": {**GONG_CALL["callData"], "parties": [
        {"affiliation": "Internal", "emailAddress": 5}]}}).encode(), 422, "callData.parties.emailAddress"),
    (json.dumps({" ": "\ud800"}).encode(), 422, "[' ']"),  # a blank key is quoted, not a blank field
])
def test_webhook_rejects_what_no_database_stores_by_field(webhook, raw, status, field):
    r = post_calls(webhook, raw, signed(raw))
    assert r.status_code == status, r.text
    if field:
        assert r.json()["problems"][0]["field"] == field


def test_slack_payload_bolt_cannot_read_is_a_400_not_a_500(harness):
    body = json.dumps({"type": "event_callback", "team_id": TEAM_ID, "event_id": "EvODD", "authorizations": 5,
                       "event": {"type": "app_home_opened", "user": REP, "tab": "home"}})
    r = harness.slack.post(body, "application/json")
    assert r.status_code == 400 and "not a Slack payload" in r.json()["error"]


def test_a_listener_failing_after_the_ack_keeps_slacks_200_and_is_logged(harness, caplog, monkeypatch):
    from bot.nudges import approval

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - a bug in the service behind the listener
        raise RuntimeError("the service failed")

    monkeypatch.setattr(approval, "decide", broken)
    metadata = json.dumps({"nudge_id": 1, "channel": "C0APPROVALS", "message_ts": "1.2"})
    payload = {"type": "view_submission", "team": {"id": TEAM_ID}, "user": {"id": OUTSIDER, "team_id": TEAM_ID},
               "api_app_id": "A0REHEARSE", "token": "legacy", "trigger_id": "1.1.abc",
               "view": {"id": "V0X", "type": "modal", "callback_id": ids.SKIP_REASON_VIEW,
                        "private_metadata": metadata, "state": {"values": {}}}}
    with caplog.at_level(logging.ERROR):
        r = harness.slack.post(interaction(payload), "application/x-www-form-urlencoded")
        assert r.status_code == 200 and r.elapsed.total_seconds() < 1, (r.status_code, r.text, r.elapsed)
        deadline = time.monotonic() + 3
        while not any("skip_submitted failed after the ack" in rec.getMessage() for rec in caplog.records):
            assert time.monotonic() < deadline, "the failure was not logged"
            time.sleep(0.02)
    assert not LEAK.search(r.text)


def test_a_submission_no_modal_of_rehearse_has_is_refused_in_one_line_without_a_traceback(harness, caplog):
    payload = {"type": "view_submission", "team": {"id": TEAM_ID}, "user": {"id": OUTSIDER, "team_id": TEAM_ID},
               "api_app_id": "A0REHEARSE", "token": "legacy", "trigger_id": "1.1.abc",
               "view": {"id": "V0X", "type": "modal", "callback_id": ids.SKIP_REASON_VIEW, "private_metadata": "",
                        "state": {"values": {}}}}
    with caplog.at_level(logging.WARNING):
        r = harness.slack.post(interaction(payload), "application/x-www-form-urlencoded")
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 3
        while not any("skip_submitted refused a request" in rec.getMessage() for rec in caplog.records):
            assert time.monotonic() < deadline, "the refusal was not logged"
            time.sleep(0.02)
    assert not any(rec.exc_info for rec in caplog.records), [rec.getMessage() for rec in caplog.records]


def test_a_coach_yaml_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "coach.yaml"
    path.write_bytes(b"teams: \x80\xff")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize("text", ["founded: 0000-0-0T0:00:00", "holiday: 2026-02-30"])
def test_a_date_yaml_cannot_build_is_a_config_error(tmp_path, text):
    path = tmp_path / "coach.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="out of range"):
        load_config(path)
    result = CliRunner().invoke(cli, ["config", "check", str(path)])
    assert result.exit_code == 1 and "out of range" in result.output and "Traceback" not in result.output
