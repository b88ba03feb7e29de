"""The audit log: who decided what and when, filtered by rep and date, exported as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from bot.nudges.audit_trail import as_csv, audit_entries
from bot.slack import ids
from tests.conftest import MANAGER, OUTSIDER, low_calls


def test_decisions_and_refusals_are_audited_and_exported(harness):
    harness.send_calls(low_calls())
    harness.send_calls(low_calls(rep="sam@example.com", prefix="s"))
    approval = harness.standin.wait_for(lambda: (lambda m: m if len(m) == 2 else None)(
        harness.standin.messages_in("C0APPROVALS")))[0]
    harness.slack.click(approval, ids.APPROVE, user=OUTSIDER)
    harness.slack.click(approval, ids.APPROVE, user=MANAGER)
    harness.invite()
    with harness.app.coach.db.session() as session:
        everything = audit_entries(session)
        alex = audit_entries(session, rep="U0ALEX")
        later = audit_entries(session, since=everything[-1].at + timedelta(seconds=1))
    actions = [(e.actor, e.action) for e in alex]
    assert ("rehearse", "nudge_manual") in actions and (OUTSIDER, "approval_refused") in actions
    assert (MANAGER, "approved") in actions
    assert all(e.subject != "nudge:2" for e in alex), "Sam's nudge is not in Alex's trail"
    assert later == []
    rows = list(csv.DictReader(io.StringIO(as_csv(alex))))
    assert rows[-1]["actor"] == MANAGER and rows[-1]["action"] == "approved"


def test_rehearse_audit_prints_and_exports(harness, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from bot.cli import cli

    harness.send_calls(low_calls())
    harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER)
    harness.invite()
    config = tmp_path / "coach.yaml"
    config.write_text("teams:\n  - id: west\n    managers: [U0DANA]\n    approvals_channel: C0APPROVALS\n"
                      "    reps: [U0ALEX]\ncriteria:\n  objection_handling: {scenario: price-objection}\n")
    monkeypatch.setenv("REHEARSE_CONFIG", str(config))
    monkeypatch.setenv("DATABASE_URL", harness.app.settings.database_url)
    result = CliRunner().invoke(cli, ["audit", "--rep", "U0ALEX", "--csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["action"] for r in rows][-1] == "approved"
    assert CliRunner().invoke(cli, ["audit", "--since", "yesterday"]).exit_code == 1
