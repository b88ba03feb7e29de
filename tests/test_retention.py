"""Retention (coach.yaml `retention`): call text and practice text go after the configured days; numbers stay."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot.config import ConfigError, parse_config
from bot.slack import ids
from storage.models import (
    AuditEntry,
    Call,
    CallScore,
    Grade,
    OutboxMessage,
    PracticeSession,
    PracticeTurn,
    Signal,
    WinningLine,
)
from tests.conftest import MANAGER, REP, TEST_CONFIG, low_calls, scored_call
from tests.transcripts import TRANSCRIPTS

AGED = {Call: "received_at", Signal: "detected_at", PracticeTurn: "created_at", WinningLine: "saved_at",
        Grade: "graded_at", OutboxMessage: "created_at", PracticeSession: "started_at"}


def _age_everything(harness, days: int) -> None:
    """Make everything stored so far `days` older, as if it had been written then."""
    with harness.app.coach.db.session() as session:
        for model, column in AGED.items():
            for row in session.exec(select(model)):
                setattr(row, column, getattr(row, column) - timedelta(days=days))
                session.add(row)


def _practised(harness) -> None:
    harness.send_calls(low_calls())
    harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER)
    invite = harness.invite()
    harness.slack.click(invite, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    harness.practise(invite, TRANSCRIPTS["price-objection"]["strong"])
    harness.app.sender.drain()


def _by_call(session) -> dict[str, CallScore]:  # noqa: ANN001
    rows = session.exec(select(Call, CallScore).where(Call.id == CallScore.call_pk)).all()
    return {call.call_id: score for call, score in rows}


def test_old_text_is_deleted_recent_text_kept_and_every_score_stays(harness):
    _practised(harness)
    with harness.app.coach.db.reading() as session:
        grade_before = session.exec(select(Grade)).one()
        turns_before = len(session.exec(select(PracticeTurn)).all())
        assert session.exec(select(WinningLine)).all(), "a strong attempt saves winning lines"
    _age_everything(harness, days=181)  # past the default 180 days
    harness.send_calls([scored_call("recent", 70, quote="Let me walk you through the value first")])

    harness.app.run_due_jobs(datetime.now(UTC))

    with harness.app.coach.db.reading() as session:
        scores = _by_call(session)
        assert [scores[c].evidence for c in ("c-1", "c-2", "c-3")] == [[], [], []], "old quotes gone"
        assert [scores[c].score for c in ("c-1", "c-2", "c-3")] == [42, 51, 38], "their scores stay"
        assert scores["recent"].evidence == [{"quote": "Let me walk you through the value first", "at_s": 754}]
        assert "quotes" not in session.exec(select(Signal)).one().detail
        assert session.exec(select(PracticeTurn)).all() == [] and turns_before > 0
        assert session.exec(select(WinningLine)).all() == []
        grade = session.exec(select(Grade)).one()
        assert (grade.score, grade.passed) == (grade_before.score, grade_before.passed)
        assert [c["level"] for c in grade.criteria] == [c["level"] for c in grade_before.criteria]
        assert all(c["evidence"] == [] and c["feedback"] == "" for c in grade.criteria)
        practice = session.exec(select(PracticeSession)).one()
        assert practice.attempt == 1, "the attempt stays"
        old_sent = [m for m in session.exec(select(OutboxMessage)) if m.status in ("sent", "failed")
                    and m.created_at < datetime.now(UTC) - timedelta(days=100)]
        assert old_sent and [m.id for m in old_sent if m.payload] == [], "sent messages no longer hold the text"
        assert "I guess we could knock" not in json.dumps([m.payload for m in old_sent])
        purge = session.exec(select(AuditEntry).where(AuditEntry.action == "retention_purge")).one()
    assert purge.detail["evidence_quotes"] == 3 and purge.detail["practice_turns"] == turns_before


def test_text_inside_the_window_is_kept(harness):
    _practised(harness)
    _age_everything(harness, days=179)
    harness.app.run_due_jobs(datetime.now(UTC))
    with harness.app.coach.db.reading() as session:
        assert all(s.evidence for s in _by_call(session).values())
        assert session.exec(select(PracticeTurn)).all() and session.exec(select(WinningLine)).all()
        assert "quotes" in session.exec(select(Signal)).one().detail
        assert session.exec(select(AuditEntry).where(AuditEntry.action == "retention_purge")).all() == []


def test_each_kind_of_text_has_its_own_limit_and_null_keeps_it(start_app):
    config = copy.deepcopy(TEST_CONFIG)
    config["retention"] = {"transcripts_days": None, "practice_turns_days": 30}
    harness = start_app(config=config)
    _practised(harness)
    _age_everything(harness, days=400)
    harness.app.run_due_jobs(datetime.now(UTC))
    with harness.app.coach.db.reading() as session:
        assert all(s.evidence for s in _by_call(session).values()), "call quotes kept for good"
        assert session.exec(select(PracticeTurn)).all() == [], "practice text gone after 30 days"


def test_an_abandoned_roleplay_is_closed_before_its_turns_go(harness):
    harness.slack.command(ids.DRILL_COMMAND, user=REP, text="price")
    drill = harness.invite()
    harness.standin.wait_for(lambda: len(harness.thread(drill)) >= 2)
    _age_everything(harness, days=200)
    harness.app.run_due_jobs(datetime.now(UTC))
    with harness.app.coach.db.reading() as session:
        practice = session.exec(select(PracticeSession)).one()
        assert not practice.active and session.exec(select(PracticeTurn)).all() == []
    before = len(harness.thread(drill))
    harness.slack.dm(user=REP, channel=drill["channel"], text="hello again", thread_ts=drill["ts"])
    pointer = harness.standin.wait_for(lambda: harness.thread(drill)[before:] or None)[0]
    assert "/drill" in pointer["text"], "a late reply is pointed to a new drill, not answered from nothing"


def test_jobs_run_as_of_applies_retention(tmp_path, database_url, standin, monkeypatch):
    from bot.cli import cli

    config = tmp_path / "coach.yaml"
    config.write_text("teams:\n  - id: west\n    managers: [U0DANA]\n    approvals_channel: C0APPROVALS\n"
                      "    reps: [U0ALEX]\ncriteria:\n  objection_handling: {scenario: price-objection}\n"
                      "retention:\n  transcripts_days: 30\n")
    calls = tmp_path / "calls.json"
    calls.write_text(json.dumps([scored_call("old", 80, quote="we could knock 20% off")]))
    for name, value in {"REHEARSE_CONFIG": str(config), "DATABASE_URL": database_url,
                        "SLACK_BOT_TOKEN": standin.bot_token, "SLACK_API_URL": standin.base_url}.items():
        monkeypatch.setenv(name, value)
    assert CliRunner().invoke(cli, ["ingest", str(calls)]).exit_code == 0
    soon = (datetime.now(UTC) + timedelta(days=29)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=31)).isoformat()
    from storage.db import Database

    db = Database(database_url)
    for as_of, kept in ((soon, True), (later, False)):
        result = CliRunner().invoke(cli, ["jobs", "run", "--as-of", as_of])
        assert result.exit_code == 0, result.output
        with db.reading() as session:
            assert bool(session.exec(select(CallScore)).one().evidence) is kept, as_of
    db.dispose()


@pytest.mark.parametrize(("value", "message"), [
    (0, "retention.transcripts_days: 0 days: keep text between 1 and 3650 days"),
    ("ninety", "retention.transcripts_days: 'ninety': give a whole number of days"),
    (2.5, "retention.transcripts_days: 2.5: give a whole number of days"),
])
def test_a_wrong_retention_is_explained_by_path(value, message):
    with pytest.raises(ConfigError) as raised:
        parse_config({**TEST_CONFIG, "retention": {"transcripts_days": value}})
    assert any(p.startswith(message) for p in raised.value.problems), raised.value.problems


def test_a_misspelt_retention_key_is_named():
    with pytest.raises(ConfigError) as raised:
        parse_config({**TEST_CONFIG, "retention": {"transcript_days": 30}})
    assert raised.value.problems == ["retention.transcript_days: unknown setting (check the spelling against "
                                     "coach.example.yaml)"]
