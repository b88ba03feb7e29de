"""`rehearse forget --rep X`: every trace of one person gone, everyone else untouched, an audit entry naming nobody."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, select
from typer.testing import CliRunner

from bot.cli import cli
from bot.nudges.forget import was_forgotten
from bot.slack import ids
from storage.models import AuditEntry, Call, Nudge, NudgeState, OutboxMessage, OutboxStatus, Rep
from storage.outbox import enqueue
from tests.conftest import EMAIL_REP, MANAGER, REP, TEST_CONFIG, low_calls, scored_call
from tests.transcripts import TRANSCRIPTS

SAM_EMAIL = "sam@example.com"


def _everything(db) -> str:  # noqa: ANN001
    """Every row of every table, as text."""
    rows = []
    with db.reading() as session:
        for table in SQLModel.metadata.tables.values():
            rows += [f"{table.name}: {dict(r._mapping)}" for r in session.execute(sa_select(table))]
    return json.dumps(rows, default=str)


def _held_dm(harness, user: str, text: str) -> None:
    """A DM waiting for the person's working hours: an unsent outbox row addressed to them."""
    coach = harness.app.coach
    with coach.db.session() as session:
        enqueue(session, method="chat.postMessage", channel=user, payload={"channel": user, "text": text},
                now=coach.clock(), not_before=coach.clock() + timedelta(days=1))


@pytest.fixture
def two_reps(harness, tmp_path, database_url, standin, monkeypatch):
    """Alex practised (nudge completed, follow-ups due, winning lines); Sam has a nudge waiting for approval."""
    calls = low_calls()
    calls.append(scored_call("by-email", 80, rep="alex@example.com", days_ago=10, quote="Alex said this by email"))
    harness.send_calls(calls)
    harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER)
    invite = harness.invite()
    harness.slack.click(invite, ids.START_PRACTICE, user=REP)
    harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
    harness.practise(invite, TRANSCRIPTS["price-objection"]["strong"])
    sam = low_calls(rep=SAM_EMAIL, prefix="s")
    for call in sam:
        call["scores"][0]["evidence"][0]["quote"] = "Sam would rather not discount"
    harness.send_calls(sam)
    harness.standin.wait_for(lambda: len(harness.standin.messages_in("C0APPROVALS")) >= 2 or None)
    _held_dm(harness, REP, "Alex, your refresher is ready")
    _held_dm(harness, EMAIL_REP, "Sam, your drill is ready")
    harness.app.sender.drain()
    config = tmp_path / "coach.yaml"
    config.write_text(yaml.safe_dump(TEST_CONFIG))
    for name, value in {"REHEARSE_CONFIG": str(config), "DATABASE_URL": database_url}.items():
        monkeypatch.setenv(name, value)
    return harness


def test_forget_removes_every_trace_of_the_rep_and_nothing_of_anyone_else(two_reps):
    db = two_reps.app.coach.db
    before = _everything(db)
    assert REP in before and "alex@example.com" in before and "knock 10% off" in before
    with db.reading() as session:
        sam_calls = len(session.exec(select(Call).where(Call.rep_ref == SAM_EMAIL)).all())

    result = CliRunner().invoke(cli, ["forget", "--rep", REP, "--yes"])

    assert result.exit_code == 0, result.output
    assert f"Forgot {REP}: " in result.output and "4 calls" in result.output
    assert "still listed in" in result.output, "coach.yaml would bring them back: say so"
    after = _everything(db)
    assert "Sam would rather not discount" in after
    for trace in (REP, "alex@example.com", "D0ALEX", "knock 10% off", "Alex said this by email",
                  "Alex, your refresher is ready", TRANSCRIPTS["price-objection"]["strong"][0][:30]):
        assert trace not in after, trace
    with db.reading() as session:
        assert session.exec(select(Rep.slack_user_id)).all() == [EMAIL_REP]
        assert len(session.exec(select(Call)).all()) == sam_calls == 3
        assert session.exec(select(Nudge)).one().state == NudgeState.PENDING_APPROVAL, "Sam's nudge untouched"
        waiting = session.exec(select(OutboxMessage).where(OutboxMessage.status == OutboxStatus.PENDING)).all()
        assert [m.payload["text"] for m in waiting] == ["Sam, your drill is ready"]
        entry = session.exec(select(AuditEntry).where(AuditEntry.action == "forgotten")).one()
        kept = session.exec(select(AuditEntry).where(AuditEntry.action == "approved")).one()
    assert was_forgotten(entry, REP) and not was_forgotten(entry, EMAIL_REP)
    assert entry.detail["deleted"]["calls"] == 4 and entry.detail["deleted"]["practice_turns"] > 0
    assert kept.actor == MANAGER and kept.detail == {}, "the manager's decision stays on record, about nobody"


def test_forget_by_email_and_unmatched_calls_go_too(two_reps):
    two_reps.send_calls([scored_call("unmatched", 50, rep="sam.old@example.com", quote="an unmatched quote")])
    result = CliRunner().invoke(cli, ["forget", "--rep", "Sam.Old@Example.com", "--yes"])
    assert result.exit_code == 0 and "1 calls" in result.output
    assert "an unmatched quote" not in _everything(two_reps.app.coach.db)
    assert "still listed" not in result.output


def _settled(db) -> str:  # noqa: ANN001
    """`_everything` once the sender has delivered what the calls queued (two equal readings in a row)."""
    last, deadline = _everything(db), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := _everything(db)) == last:
            return now
        last = now
    return last


def test_forget_asks_first_and_no_changes_nothing(two_reps):
    before = _settled(two_reps.app.coach.db)
    refused = CliRunner().invoke(cli, ["forget", "--rep", REP], input="n\n")
    assert refused.exit_code == 1 and "Nothing deleted" in refused.output
    assert _everything(two_reps.app.coach.db) == before
    agreed = CliRunner().invoke(cli, ["forget", "--rep", REP], input="y\n")
    assert agreed.exit_code == 0 and REP not in _everything(two_reps.app.coach.db).replace(
        "Delete everything", "")


def test_forget_names_a_wrong_identifier(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = CliRunner().invoke(cli, ["forget", "--rep", "alex", "--yes"])
    assert result.exit_code == 1 and "--rep: 'alex' is neither a Slack user ID" in result.output


def test_forgetting_someone_unknown_still_leaves_a_record(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REHEARSE_CONFIG", str(tmp_path / "missing.yaml"))
    result = CliRunner().invoke(cli, ["forget", "--rep", "nobody@example.com", "--yes"])
    assert result.exit_code == 0 and "nothing was stored" in result.output
    from storage.db import Database

    db = Database(database_url)
    with db.reading() as session:
        entry = session.exec(select(AuditEntry)).one()
    db.dispose()
    assert was_forgotten(entry, "nobody@example.com") and "nobody" not in json.dumps(entry.detail)
