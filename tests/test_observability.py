"""Observability: JSON log lines with request and nudge ids, no token or transcript in any of them (even at DEBUG),
and `/metrics` in Prometheus text format, moved by real traffic."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import telemetry
from bot.app import BackgroundServer, create_app
from bot.config import parse_config
from bot.demo.driver import SlackDriver, webhook_headers
from bot.demo.slack_standin import SlackStandIn
from bot.practice.llm_buyer import LLMBuyer
from bot.practice.roleplay import ScriptedBuyer
from bot.practice.transcript import Turn
from bot.slack import ids
from bot.slack.sender import wait_until_sent
from bot.worker import shared_metrics
from storage.models import NudgeState
from tests.conftest import (
    MANAGER,
    REP,
    SIGNING_SECRET,
    TEST_CONFIG,
    USERS,
    WEBHOOK_SECRET,
    Harness,
    assert_valid_slack_ui,
    low_calls,
    make_settings,
)
from tests.fake_openai import FakeOpenAI, error, reply_json

BOT_TOKEN = f"xoxb-7311-{secrets.token_hex(6)}-{secrets.token_hex(12)}"
OPENAI_KEY = f"sk-proj-{secrets.token_hex(20)}"
TRANSCRIPT = [
    "Our Tulsa yard loses four hours a day to idle trucks waiting on dispatch.",
    "The board wants the Kestrel renewal signed before the Halvorsen audit.",
]
TURNS = [
    "Before we talk numbers, what is the Ostrava quote being weighed against?",
    "If the Ostrava pilot saved ninety thousand, would the price still feel high?",
]
BUYER_LINE = "Honestly, the Saskatoon depot manager hates surprises on the invoice."
NAMES_SAID = ["Tulsa", "Kestrel", "Halvorsen", "Ostrava", "Saskatoon"]


def _fragments(sentence: str) -> list[str]:
    """The sentence, and its head and tail: what a clipped repr (pydantic's `'Before we ... against?'`) keeps."""
    return [sentence, sentence[:20], sentence[-20:]]


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Every logger at DEBUG, through the handler `rehearse serve` installs (JSON, context, redaction)."""
    monkeypatch.delenv("REHEARSE_LOG_FORMAT", raising=False)
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in ("sqlalchemy", "slack_sdk", "slack_bolt",
                                                                           "openai", "httpx", "httpcore", "bot"))]
    levels = [logger.level for logger in loggers]
    buffer = io.StringIO()
    handler = telemetry.configure_logging(logging.DEBUG, default_format="json", stream=buffer)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield buffer
    logging.getLogger().removeHandler(handler)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def _parsed(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.fixture
def with_model(database_url: str, log_lines: io.StringIO) -> Iterator[tuple[Harness, FakeOpenAI]]:
    """Rehearse with a model buyer and grader (the real openai client against the fake), a real-looking bot token
    and OpenAI key, serving on loopback."""
    with SlackStandIn(users=[dict(u) for u in USERS], bot_token=BOT_TOKEN) as slack, FakeOpenAI() as model:
        settings = make_settings(database_url, slack).model_copy(
            update={"openai_base_url": model.base_url, "openai_api_key": OPENAI_KEY})
        app = create_app(settings, config=parse_config(TEST_CONFIG))
        app.start()
        try:
            with BackgroundServer(app) as server, httpx.Client(timeout=10) as http:
                yield Harness(app, server.url, http, SlackDriver(server.url, SIGNING_SECRET, http), slack), model
        finally:
            app.stop()
        assert_valid_slack_ui(slack)


def _call_with_transcript() -> list[dict]:
    calls = low_calls()
    calls[-1]["transcript"] = [{"speaker": "customer", "start_s": 0.0, "end_s": 6.0, "text": TRANSCRIPT[0]},
                               {"speaker": "rep", "start_s": 6.0, "end_s": 9.0, "text": TRANSCRIPT[1]}]
    return calls


def _post_calls(harness: Harness, calls: list[dict], request_id: str | None = None) -> httpx.Response:
    body = json.dumps(calls).encode()
    headers = webhook_headers(WEBHOOK_SECRET, body)
    if request_id:
        headers["X-Request-Id"] = request_id
    return harness.http.post(f"{harness.url}/webhooks/calls", content=body, headers=headers)


def _whole_flow(harness: Harness, model: FakeOpenAI) -> dict:
    """Webhook with a transcript, approval, two practice turns with the model buyer, a grade; returns the grade."""
    model.always(lambda request: reply_json({"criteria": {"acknowledge": {"quotes": TURNS[0]}}})
                 if request["response_format"]["json_schema"]["name"] == "rubric_grade"  # one the schema refuses
                 else reply_json({"line": BUYER_LINE, "ends_call": False}))
    assert _post_calls(harness, _call_with_transcript(), request_id="obs-webhook-1").status_code == 202
    assert harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER).status_code == 200
    invite = harness.invite()
    assert harness.slack.click(invite, ids.START_PRACTICE, user=REP).status_code == 200
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    grade = harness.practise(invite, TURNS)
    wait_until_sent(harness.app.coach.db, harness.app.sender)
    return grade


def test_tokens_secrets_and_transcripts_never_reach_the_logs_even_at_debug(with_model, log_lines):
    harness, model = with_model
    grade = _whole_flow(harness, model)
    assert "Score" in grade["text"]
    # The text really went through the libraries that log bodies at DEBUG ...
    sent = json.dumps(model.requests)
    assert TURNS[0] in sent and TURNS[1] in sent
    assert any(BUYER_LINE in m["text"] for m in harness.thread(harness.invite()))
    lines = _parsed(log_lines)
    loggers = {line["logger"].split(".")[0] for line in lines}
    assert {"slack_sdk", "slack_bolt", "openai", "httpx", "sqlalchemy"} <= loggers, loggers
    # ... and none of it, nor any credential, is in a log line.
    text = log_lines.getvalue()
    quoted = "I guess we could knock 30% off"  # the evidence quote on the approval card
    said = [fragment for sentence in [*TRANSCRIPT, *TURNS, BUYER_LINE, quoted] for fragment in _fragments(sentence)]
    for leak in [BOT_TOKEN, OPENAI_KEY, SIGNING_SECRET, WEBHOOK_SECRET, *said, *NAMES_SAID]:
        assert leak not in text, f"{leak!r} was written to the log"
        assert json.dumps(leak)[1:-1] not in text
    assert any(line["logger"] == "bot.practice.llm_grader" and "ValidationError" in line["message"]
               for line in lines), "the failed grade is logged, without the model's answer"


def test_log_lines_carry_the_request_id_slack_ids_and_the_nudge_id(with_model, log_lines):
    harness, model = with_model
    _whole_flow(harness, model)
    answer = _post_calls(harness, low_calls(prefix="again"), request_id="obs-webhook-2")
    assert answer.headers["x-request-id"] == "obs-webhook-2"
    forged = 'bad id {"level": "error"}'  # not a sane id: a fresh one is made instead
    generated = _post_calls(harness, low_calls(prefix="more"), request_id=forged)
    assert generated.headers["x-request-id"] not in (forged, "") and " " not in generated.headers["x-request-id"]
    lines = _parsed(log_lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)

    webhook = [line for line in lines if line.get("request_id") == "obs-webhook-1"]
    assert any(line["logger"].startswith("sqlalchemy") for line in webhook), "ingest's work on a worker thread"
    approve = [line for line in lines if line.get("slack_action") == ids.APPROVE]
    assert approve and all(line.get("request_id") for line in approve)
    assert any(line.get("nudge_id") == 1 for line in approve), "the decision is about nudge 1"
    turns = [line for line in lines if line.get("slack_event") == "message"]
    model_calls = [line for line in turns if line["logger"].startswith("openai")]
    assert model_calls, "the buyer's model calls run on the practice pool, with the request's ids"
    assert all(line.get("nudge_id") == 1 and line.get("slack_event_id") for line in model_calls)
    assert any(line.get("outbox_id") and line.get("nudge_id") == 1 for line in lines), "the sender's lines"


def test_text_format_and_a_wrong_format_is_named(monkeypatch):
    buffer, level = io.StringIO(), logging.getLogger().level
    user_token = f"xoxp-{secrets.token_hex(10)}"  # a token Rehearse was never configured with: caught by its shape
    monkeypatch.setenv("REHEARSE_LOG_FORMAT", "text")
    handler = telemetry.configure_logging(logging.INFO, default_format="json", stream=buffer)
    try:
        with telemetry.bound(request_id="r-1", nudge_id=7):
            logging.getLogger("bot.example").warning("token %s refused; header Authorization: Bearer %s",
                                                     user_token, OPENAI_KEY)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(level)
    line = buffer.getvalue()
    assert "bot.example: token xoxp-[redacted] refused; header Authorization: [redacted] request_id=r-1 nudge_id=7" \
        in line
    assert user_token not in line and OPENAI_KEY not in line
    monkeypatch.setenv("REHEARSE_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="REHEARSE_LOG_FORMAT: 'xml' is not one of json, text"):
        telemetry.configure_logging(logging.INFO)


def _scrape(harness: Harness) -> dict[tuple[str, tuple], float]:
    answer = harness.http.get(f"{harness.url}/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _delta(after: dict, before: dict, name: str, **labels: str) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


def test_metrics_parse_and_move_with_real_traffic(start_app, standin):
    harness = start_app(background=False)  # no sender running: what is committed stays in the outbox
    before = _scrape(harness)
    assert _value(before, "rehearse_database_up") == 1
    assert _value(before, "rehearse_outbox_pending") == 0
    assert _value(before, "rehearse_nudges", state="pending_approval") == 0

    assert harness.send_calls(low_calls()).json() == {"accepted": 3, "duplicates": 0}
    assert harness.send_calls(low_calls()[:1]).json() == {"accepted": 0, "duplicates": 1}
    time.sleep(1.1)
    after = _scrape(harness)
    assert _delta(after, before, "rehearse_calls_ingested_total", source="generic", result="accepted") == 3
    assert _delta(after, before, "rehearse_calls_ingested_total", source="generic", result="duplicate") == 1
    assert _value(after, "rehearse_nudges", state="pending_approval") == 1
    assert _value(after, "rehearse_outbox_pending") == 1, "the approval message, not sent yet"
    assert _value(after, "rehearse_outbox_oldest_pending_age_seconds") >= 1

    standin.fail_next("chat.postMessage", status=200, error="channel_not_found")
    harness.app.sender.drain()
    failed = _scrape(harness)
    assert _delta(failed, after, "rehearse_slack_api_errors_total", method="chat.postMessage",
                  error="channel_not_found") == 1
    assert _value(failed, "rehearse_outbox_pending") == 0
    assert _value(failed, "rehearse_outbox_oldest_pending_age_seconds") == 0
    assert _value(failed, "rehearse_nudges", state="expired") == 1, "its approval message failed for good"
    assert {str(s) for s in NudgeState} <= {dict(labels)["state"] for name, labels in failed
                                           if name == "rehearse_nudges"}, "every state is reported, even at 0"


def test_a_model_failure_is_a_fallback_observation_in_metrics(start_app):
    harness = start_app(background=False)
    scenario = harness.app.coach.scenarios["price-objection"]
    before = _scrape(harness)
    with FakeOpenAI() as model:
        model.script(error(500), reply_json({"line": BUYER_LINE, "ends_call": False}))
        buyer = LLMBuyer(openai.OpenAI(base_url=model.base_url, api_key=OPENAI_KEY), "m", fallback=ScriptedBuyer())
        turns = [Turn("buyer", scenario.opening_line), Turn("rep", TURNS[0])]
        assert buyer.reply(scenario, turns).text != BUYER_LINE, "the scripted buyer answered the failed turn"
        assert buyer.reply(scenario, turns).text == BUYER_LINE
    after = _scrape(harness)
    assert _delta(after, before, "rehearse_model_latency_seconds_count", role="buyer", outcome="fallback") == 1
    assert _delta(after, before, "rehearse_model_latency_seconds_count", role="buyer", outcome="ok") == 1


def test_metrics_directories_left_by_a_killed_serve_are_removed_at_the_next_start(tmp_path, monkeypatch):
    """`serve` killed with SIGKILL cannot remove its metrics directory; the next `serve` on the machine does, and
    leaves alone the directory of a serve still running (its lock is held; pids would not tell, across containers)."""
    import fcntl

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    killed, running = tmp_path / "rehearse-metrics-x1", tmp_path / "rehearse-metrics-x2"
    for left in (killed, running):
        left.mkdir()
        (left / "counter_1.db").write_bytes(b"\0" * 64)
        (left / ".serve").touch()
    held = os.open(running / ".serve", os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)  # as the running serve holds it
    try:
        with shared_metrics() as path:
            assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path) and path.is_dir()
            assert path.name.startswith("rehearse-metrics-") and (path / ".serve").exists()
            assert not killed.exists() and running.exists()
        assert not path.exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    finally:
        os.close(held)
