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


def test_the_demo_shows_the_short_feedback_and_a_buyer_who_never_repeats_herself():
    output = CliRunner().invoke(cli, ["demo"]).output
    lines = [line.strip() for line in output.splitlines()]
    buyer = [line for line in lines if line.startswith("*Dana Whitfield:*")]
    assert len(buyer) >= 3 and len(set(buyer)) == len(buyer), buyer
    grade = output[output.index("*Score "):output.index("[Retake] [Details] [Done]")]
    assert "*Strength · " in grade and "*Fix · " in grade and "*Try:*" in grade
    quotes = [line for line in grade.splitlines() if line.strip().startswith(">")]
    assert len(quotes) == len(set(quotes))
