"""`rehearse ingest`: JSON, JSONL and CSV files, errors by place, and the unmatched list."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bot.cli import cli
from tests.conftest import low_calls


@pytest.fixture
def env(tmp_path, database_url, standin, monkeypatch):
    config = tmp_path / "coach.yaml"
    config.write_text("teams:\n  - id: west\n    managers: [U0DANA]\n    approvals_channel: C0APPROVALS\n"
                      "    reps: [U0ALEX]\ncriteria:\n  objection_handling: {scenario: price-objection}\n")
    for name, value in {"REHEARSE_CONFIG": str(config), "DATABASE_URL": database_url,
                        "SLACK_BOT_TOKEN": standin.bot_token, "SLACK_API_URL": standin.base_url}.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def test_ingest_jsonl_then_csv_then_list_unmatched(env):
    calls = low_calls()
    (env / "calls.jsonl").write_text("\n".join(json.dumps(c) for c in calls))
    result = CliRunner().invoke(cli, ["ingest", str(env / "calls.jsonl")])
    assert result.exit_code == 0, result.output
    assert "accepted 3, duplicates 0, unmatched 0, nudges proposed 1" in result.output

    (env / "more.csv").write_text(
        "call_id,rep,started_at,criterion,score\n"
        "x-1,U0STRANGER,2026-11-20T15:04:05Z,objection_handling,40\n"
        "x-2,U0STRANGER,2026-11-21T15:04:05Z,objection_handling,45\n")
    result = CliRunner().invoke(cli, ["ingest", str(env / "more.csv")])
    assert "accepted 2, duplicates 0, unmatched 2" in result.output

    result = CliRunner().invoke(cli, ["ingest", "--unmatched"])
    assert result.exit_code == 0 and "U0STRANGER" in result.output and "coach.yaml" in result.output


def test_a_broken_file_names_each_problem_and_imports_nothing(env):
    (env / "bad.jsonl").write_text('{"call_id": "a"\n' + json.dumps(low_calls()[0]) + "\n")
    result = CliRunner().invoke(cli, ["ingest", str(env / "bad.jsonl")])
    assert result.exit_code == 1 and "line 1: not valid JSON" in result.output
    (env / "bad.csv").write_text("call_id,rep,started_at,criterion,score\nx-1,U0ALEX,yesterday,discovery,40\n")
    result = CliRunner().invoke(cli, ["ingest", str(env / "bad.csv")])
    assert result.exit_code == 1 and "row 2 (call x-1).started_at" in result.output


def test_text_no_database_stores_is_named_by_line_and_nothing_is_imported(env):
    good, bad = low_calls()[:2]
    (env / "nul.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**bad, "title": "Acme \x00 pricing"}))
    result = CliRunner().invoke(cli, ["ingest", str(env / "nul.jsonl")])
    assert result.exit_code == 1 and "line 2: title: contains a NUL character" in result.output, result.output
    (env / "nul.csv").write_text("call_id,rep,started_at,criterion,score\nx-1,U0ALEX,2026-11-20,disc\x00,40\n")
    result = CliRunner().invoke(cli, ["ingest", str(env / "nul.csv")])
    assert result.exit_code == 1 and "line 2: contains a NUL character" in result.output, result.output
    (env / "latin1.jsonl").write_bytes(json.dumps(good).replace("Acme", "Caf\u00e9").encode("latin-1"))
    result = CliRunner().invoke(cli, ["ingest", str(env / "latin1.jsonl")])
    assert result.exit_code == 1 and "not UTF-8" in result.output, result.output
    (env / "good.jsonl").write_text(json.dumps(good))
    result = CliRunner().invoke(cli, ["ingest", str(env / "good.jsonl")])
    assert "accepted 1, duplicates 0" in result.output, "the refused file had stored nothing, not even its good line"


def test_rehearse_practice_runs_a_roleplay_in_the_terminal():
    from tests.transcripts import TRANSCRIPTS

    lines = "\n".join(TRANSCRIPTS["price-objection"]["strong"]) + "\n"
    result = CliRunner().invoke(cli, ["practice", "price-objection"], input=lines)
    assert result.exit_code == 0, result.output
    assert "Dana Whitfield:" in result.output and "Passed: " in result.output and "Strength · " in result.output
    assert "Details" in result.output and all(c in result.output for c in ("level 4/4", "> “"))
    weak = CliRunner().invoke(cli, ["practice", "price-objection"], input="Sure, I can do 20% off.\ndone\n")
    assert "Not yet: " in weak.output and "Fix · Holds the price without discounting" in weak.output
    assert "> “Sure, I can do 20% off.”" in weak.output and "Try: “" in weak.output
    missing = CliRunner().invoke(cli, ["practice", "nope"])
    assert missing.exit_code == 1 and "price-objection" in missing.output
