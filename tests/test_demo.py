"""`rehearse demo` plays the whole loop offline and prints it."""

from __future__ import annotations

from typer.testing import CliRunner

from bot.cli import cli


def test_the_demo_shows_every_stage_of_the_loop():
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    stages = ["202 {\"accepted\":3,\"duplicates\":0}", "Practice suggested for @Alex", "Approved by @Maria",
              "clicks [Start practice]", "Dana Whitfield:", "Score", "follow-up 1:", "Refresher:", "Demo finished"]
    positions = [result.output.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions), dict(zip(stages, positions, strict=True))
    assert positions == sorted(positions), "in the order the loop runs"
