"""coach.yaml: typed models, and `rehearse config check` explaining every mistake by path."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import cli
from bot.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[1]


def _problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return caught.value.problems


def test_the_example_config_is_valid():
    result = CliRunner().invoke(cli, ["config", "check", str(ROOT / "coach.example.yaml")])
    assert result.exit_code == 0, result.output
    assert "is fine" in result.output


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["teams"].append({"id": "east", "managers": ["U0B"]}), "teams[1].approvals_channel: required"),
    (lambda d: d["teams"][0].update(managers=[]), "teams[0].managers: needs at least one manager"),
    (lambda d: d["teams"][0].update(managers=["dana"]), "teams[0].managers: 'dana' is neither a Slack user ID"),
    (lambda d: d["teams"][0].update(timezone="Mars/Base"), "teams[0].timezone: 'Mars/Base' is not an IANA"),
    (lambda d: d["teams"][0].update(approvals_channel="#sales"), "teams[0].approvals_channel: '#sales' is not"),
    (lambda d: d["criteria"]["discovery"].update(threshold=160), "criteria.discovery.threshold:"),
    (lambda d: d["criteria"]["discovery"].update(treshold=50), "criteria.discovery.treshold: unknown setting"),
    (lambda d: d.update(followups={"ladder_days": [60, 14]}), "followups.ladder_days: must be positive"),
    (lambda d: d.update({".": None}), '["."]: unknown setting'),
    (lambda d: d["criteria"]["discovery"].update({"threshold.pct": 50}),
     'criteria.discovery["threshold.pct"]: unknown setting'),
    (lambda d: d["teams"][0].update({"time zone": "UTC"}), 'teams[0]["time zone"]: unknown setting'),
])
def test_each_mistake_is_named_by_its_path(change, expected):
    data = {"teams": [{"id": "west", "managers": ["U0A"], "approvals_channel": "C0A"}],
            "criteria": {"discovery": {"scenario": "discovery-impact"}}}
    change(data)
    assert any(p.startswith(expected) for p in _problems(data)), _problems(data)


def test_config_check_lists_every_mistake_and_exits_non_zero(tmp_path):
    bad = tmp_path / "coach.yaml"
    bad.write_text("teams:\n  - id: west\n    managers: [U0A]\n  - id: East\n    managers: [U0B]\n"
                   "    approvals_channel: C0B\ncriteria:\n  discovery: {scenario: nope}\n")
    result = CliRunner().invoke(cli, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "teams[0].approvals_channel: required" in result.output
    assert "teams[1].id: 'East': use lowercase" in result.output
    assert "criteria.discovery.scenario: no scenario 'nope'" in result.output


def test_broken_yaml_says_where(tmp_path):
    bad = tmp_path / "coach.yaml"
    bad.write_text("teams:\n  - id: west\n   managers: [U0A\n")
    result = CliRunner().invoke(cli, ["config", "check", str(bad)])
    assert result.exit_code == 1 and "not valid YAML at line" in result.output


def test_missing_file_says_how_to_fix_it(tmp_path):
    result = CliRunner().invoke(cli, ["config", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "copy coach.example.yaml" in result.output
