"""The `rehearse` command."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bot.config import ConfigError, parse_config, read_yaml, unknown_scenarios
from bot.settings import Settings

cli = typer.Typer(help="Rehearse: scored sales calls in, targeted practice in Slack out.", no_args_is_help=True)
config_cli = typer.Typer(help="Check coach.yaml.", no_args_is_help=True)
jobs_cli = typer.Typer(help="Run the periodic jobs by hand.", no_args_is_help=True)
cli.add_typer(config_cli, name="config")
cli.add_typer(jobs_cli, name="jobs")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(problems: list[str], what: str) -> None:
    err.print(f"[bold red]{what}: {len(problems)} problem(s)[/]")
    for problem in problems:
        err.print(f"  {problem}", markup=False, highlight=False)
    raise typer.Exit(1)


def _app(settings: Settings):  # noqa: ANN202 - imported lazily so `config check` stays light
    from bot.app import create_app
    from bot.practice.scenarios import ScenarioError

    try:
        return create_app(settings)
    except ConfigError as exc:
        _fail(exc.problems, f"{settings.config_path} has mistakes")
    except ScenarioError as exc:
        _fail(exc.problems, "the scenario library has mistakes")


@cli.command()
def serve(verbose: bool = typer.Option(True, help="Log at INFO level.")) -> None:
    """Run the web server, the outbox sender and the jobs (Socket Mode when SLACK_APP_TOKEN is set)."""
    _logging(verbose)
    settings = Settings()
    if problems := settings.serve_problems():
        _fail(problems, "cannot serve")
    _app(settings).serve()


@cli.command()
def demo(verbose: bool = typer.Option(False, help="Show the app's own logs.")) -> None:
    """Play the whole loop offline against a local Slack stand-in and print the conversation."""
    _logging(verbose)
    from bot.demo.run import run_demo

    run_demo(out)


@cli.command()
def ingest(
    file: Annotated[Path | None, typer.Argument(exists=True, dir_okay=False,
                                                help="JSON (a call or an array), JSONL or CSV")] = None,
    unmatched: Annotated[bool, typer.Option("--unmatched", help="List calls kept because their rep is unmatched")]
    = False,
) -> None:
    """Import scored calls from a file, as the webhook would; approval messages go out on the next serve."""
    _logging(False)
    from bot.nudges.adapters import PayloadError
    from bot.nudges.call_files import read_call_file
    from bot.nudges.intake import ingest_calls

    if unmatched:
        _list_unmatched(_app(Settings()).coach)
        return
    if file is None:
        _fail(["FILE: give a file to import, or --unmatched to list calls waiting for their rep"], "nothing to do")
    app = _app(Settings())
    try:
        calls = read_call_file(file, gong=app.coach.config.gong)
    except PayloadError as exc:
        _fail([f"{field}: {message}" for field, message in exc.problems], f"{file} has mistakes")
    result = ingest_calls(app.coach, calls)
    out.print(f"accepted {result.accepted}, duplicates {result.duplicates}, "
              f"unmatched {result.unmatched}, nudges proposed {len(result.nudges)}")


def _list_unmatched(coach) -> None:  # noqa: ANN001
    from rich.table import Table

    from bot.nudges.unmatched import list_unmatched

    rows = list_unmatched(coach)
    if not rows:
        out.print("No unmatched calls: every call belongs to a rep on a team.")
        return
    table = Table("rep", "calls", "latest call", "what to fix", title="Calls waiting for their rep")
    for row in rows:
        table.add_row(row.rep, str(row.calls), f"{row.latest:%Y-%m-%d}", row.reason)
    out.print(table)


@config_cli.command("check")
def config_check(
    path: Annotated[Path | None, typer.Argument(help="Defaults to REHEARSE_CONFIG or coach.yaml")] = None,
) -> None:
    """Explain every mistake in coach.yaml (and the scenarios it names) by path; exit 1 if any."""
    from bot.app import scenarios_dir
    from bot.practice.scenarios import load_scenarios, scenario_problems

    path = path or Path(Settings().config_path)
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        _fail(exc.problems, f"{path} has mistakes")
    problems, config = [], None
    try:
        config = parse_config(data)
    except ConfigError as exc:
        problems += exc.problems
    custom = data.get("scenarios_dir") if isinstance(data, dict) else None
    directory = scenarios_dir(custom, path)
    library = scenario_problems(directory)
    problems += library
    if not library:
        problems += unknown_scenarios(data, set(load_scenarios(directory)))
    if problems or config is None:
        _fail(problems, f"{path} has mistakes")
    out.print(f"[green]{path} is fine[/]: {len(config.teams)} team(s), {len(config.criteria)} criteria, "
              f"scenarios from {directory}")


@jobs_cli.command("run")
def jobs_run(as_of: str = typer.Option(None, "--as-of", help="ISO time to run as, e.g. 2026-12-14T09:00:00Z")
             ) -> None:
    """Expire stale nudges, send the follow-ups due at --as-of (default now), and wait until the outbox is sent."""
    _logging(False)
    try:
        now = datetime.fromisoformat(as_of) if as_of else datetime.now(UTC)
    except ValueError:
        _fail([f"--as-of: {as_of!r} is not an ISO time such as 2026-12-14T09:00:00Z"], "cannot run jobs")
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    from bot.slack.sender import wait_until_sent

    app = _app(Settings())
    sent = app.run_due_jobs(now)
    try:
        wait_until_sent(app.coach.db, app.sender, timeout=120)
    except TimeoutError:
        _fail(["some Slack messages are still waiting (rate limits or Slack unreachable); "
               "`rehearse serve` sends them, or run this again"], "outbox not empty")
    out.print(f"follow-ups sent: {sent}")


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
