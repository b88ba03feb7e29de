"""The `rehearse` command."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from bot.config import CoachConfig, ConfigError, parse_config, read_yaml, unknown_scenarios
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.nudges.calibration import Calibration, RuleStats

cli = typer.Typer(help="Rehearse: scored sales calls in, targeted practice in Slack out.", no_args_is_help=True)
config_cli = typer.Typer(help="Check coach.yaml.", no_args_is_help=True)
jobs_cli = typer.Typer(help="Run the periodic jobs by hand.", no_args_is_help=True)
cli.add_typer(config_cli, name="config")
cli.add_typer(jobs_cli, name="jobs")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _logging(verbose: bool, default_format: str = "text") -> None:
    """One handler: JSON lines or text (REHEARSE_LOG_FORMAT), context ids on each line, secrets redacted."""
    from bot.telemetry import configure_logging

    try:
        configure_logging(logging.INFO if verbose else logging.WARNING, default_format=default_format)
    except ValueError as exc:
        _fail([str(exc)], "cannot start")


def shown(value: object, *, lines: bool = False) -> Text:
    """Text from outside (a rep reference, a call title, a typed reason, a model's reply) as a terminal can show it
    safely: control characters and right-to-left marks written as escapes (`\\x1b`), line breaks too unless `lines`,
    and Rich markup in it not read."""
    from bot.telemetry import showable

    return Text(showable(str(value), lines=lines))


def _fail(problems: list[str], what: str) -> None:
    err.print(f"[bold red]{what}: {len(problems)} problem(s)[/]")
    for problem in problems:
        err.print(Text("  ").append_text(shown(problem)), highlight=False)
    raise typer.Exit(1)


def _app(settings: Settings):  # noqa: ANN202 - imported lazily so `config check` stays light
    from bot.app import create_app
    from bot.practice.scenarios import ScenarioError

    if not settings.slack_bot_token:
        _fail(["SLACK_BOT_TOKEN: required (the bot token, xoxb-...), to look up reps and send messages"],
              "cannot start")
    try:
        return create_app(settings)
    except ConfigError as exc:
        _fail(exc.problems, f"{settings.config_path} has mistakes")
    except ScenarioError as exc:
        _fail(exc.problems, "the scenario library has mistakes")


@cli.command()
def serve(verbose: bool = typer.Option(True, help="Log at INFO level.")) -> None:
    """Run the web server, the outbox sender and the jobs (Socket Mode when SLACK_APP_TOKEN is set)."""
    from bot.worker import shared_metrics

    settings = Settings()
    # Over HTTP, the work behind Slack's answers runs in a worker process (`rehearse worker`) that serve starts;
    # both count their metrics in one directory, so /metrics adds them up.
    split = not settings.socket_mode
    with shared_metrics() if split else contextlib.nullcontext():
        _logging(verbose, default_format="json")
        if problems := settings.serve_problems():
            _fail(problems, "cannot serve")
        _app(settings).serve(worker_process=split)


@cli.command()
def worker(verbose: bool = typer.Option(True, help="Log at INFO level.")) -> None:
    """Run the work behind the web server (Slack inbox, practice, outbox sender, jobs); `serve` starts it."""
    _logging(verbose, default_format="json")
    from bot.worker import NICENESS

    settings = Settings()
    if problems := settings.serve_problems():
        _fail(problems, "cannot run the worker")
    os.nice(NICENESS)  # Slack's acknowledgements in the web process come first
    _app(settings).work()


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
    import gc

    # As in `calibrate`: reading and storing allocate objects that mostly live to the end of the command, and the
    # cyclic collector walking them again and again took most of the time of reading 20,000 calls (2.8 s of 3.3 s).
    gc.disable()
    try:
        calls = read_call_file(file, gong=app.coach.config.gong)
        result = ingest_calls(app.coach, calls)
    except PayloadError as exc:
        _fail([f"{field}: {message}" for field, message in exc.problems], f"{file} has mistakes")
    finally:
        gc.enable()
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
        table.add_row(shown(row.rep), str(row.calls), f"{row.latest:%Y-%m-%d}", shown(row.reason))
    out.print(table)


@cli.command()
def calibrate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Historical calls: JSONL, JSON or CSV")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables")] = False,
    team: Annotated[str | None, typer.Option("--team", help="Show only this team (by id)")] = None,
    config_path: Annotated[Path | None, typer.Option("--config", help="Defaults to REHEARSE_CONFIG or coach.yaml")]
    = None,
) -> None:
    """Replay historical calls through the rules and the budget, without Slack: who would be flagged, and how
    many nudges per rep per week, now and at other thresholds."""
    _logging(False)
    import gc
    import json
    import os

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from bot.config import load_config
    from bot.nudges.adapters import PayloadError
    from bot.nudges.calibration import calibrate as replay_history
    from bot.nudges.calibration import calibration_passes
    from bot.nudges.call_files import read_call_file

    config_path = config_path or Path(Settings().config_path)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail(exc.problems, f"{config_path} has mistakes")
    if team is not None and config.team(team) is None:
        _fail([f"--team: no team {team!r} in {config_path} (teams: {', '.join(t.id for t in config.teams)})"],
              "cannot calibrate")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    # Reading and replaying allocate millions of small objects that all live to the end; the cyclic collector
    # would walk them again and again (it tripled the time on 100,000 calls), and they make no cycles to free.
    gc.disable()
    try:
        with err.status(f"Reading {file}"):
            calls = read_call_file(file, gong=config.gong)
        if not calls:
            _fail([f"{file}: no calls"], "nothing to calibrate")
        # Refreshed by hand, not by Rich's thread: the replay forks workers, and a fork must not copy a held lock.
        with Progress(*columns, console=err, transient=True, auto_refresh=False) as progress:
            task = progress.add_task(f"Replaying {len(calls):,} calls", total=len(calls) * calibration_passes(config))

            def advance(calls_done: int) -> None:
                progress.advance(task, calls_done)
                progress.refresh()

            result = replay_history(calls, config, progress=advance,
                                    workers=cpus if len(calls) >= 10_000 else 1)  # forking pays off on big files
    except PayloadError as exc:
        _fail([f"{field}: {message}" for field, message in exc.problems], f"{file} has mistakes")
    finally:
        gc.enable()
    if as_json:
        typer.echo(json.dumps(result.as_dict(team), indent=2))
        return
    _print_calibration(result, config, team)


def _print_calibration(result: Calibration, config: CoachConfig, team: str | None) -> None:
    from rich import box
    from rich.table import Table

    current = result.current
    span = f"{current.first_call:%Y-%m-%d} to {current.last_call:%Y-%m-%d}, {current.weeks:.1f} weeks"
    for stats in (t for t in current.teams if team is None or t.team == team):
        title = (f"{config.team(stats.team).title} ({stats.team}): {stats.reps} reps, {stats.calls:,} calls, "
                 f"{span}")
        out.print(title, style="bold", highlight=False)
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("Criterion / rule", no_wrap=True)
        table.add_column("Threshold", min_width=10)
        table.add_column("Reps\nflagged", justify="right")
        table.add_column("Nudges per\nrep per week", justify="right")
        table.add_column("If the threshold were:\nnudges per rep per week", min_width=7)
        table.add_column("\nreps flagged", min_width=5)
        for rule in (r for r in current.rules if r.team == stats.team):
            others = {t: r.rule(stats.team, rule.rule) for t, r in result.alternatives.get(rule.rule, {}).items()}
            table.add_row(
                config.criterion_label(rule.rule), _limit_text(rule, config), str(rule.reps_flagged),
                f"{rule.nudges_per_rep_week:.2f}",
                " ".join(f"{t:g}→{r.nudges_per_rep_week:.2f}" for t, r in others.items()),
                " ".join(f"{t:g}→{r.reps_flagged}" for t, r in others.items()))
        table.add_section()
        table.add_row(f"All ({stats.nudges:,} nudges)", "", str(stats.reps_flagged), f"{stats.nudges_per_rep_week:.2f}")
        out.print(table)
        if stats.waits:
            waits = "; ".join(f"{reason}: {count:,}" for reason, count in sorted(stats.waits.items()))
            out.print(f"  signals that waited (each time they waited): {waits}", highlight=False)
        out.print()
    if current.duplicates:
        out.print(f"Duplicates skipped: {current.duplicates:,} (same source and call_id)")
    if current.unmatched_calls:
        reps = ", ".join(current.unmatched_reps[:5]) + (" …" if len(current.unmatched_reps) > 5 else "")
        out.print(Text(f"Unmatched: {current.unmatched_calls:,} calls from {len(current.unmatched_reps)} rep(s) on "
                       "no team in coach.yaml, not flagged: ").append_text(shown(reps)), highlight=False)
    teams = [t for t in current.teams if team is None or t.team == team]
    peak = max((t.max_nudges_7d for t in teams), default=0)
    verdict = "[green]holds[/]" if peak <= current.weekly_cap else "[bold red]is exceeded[/]"
    out.print(f"Weekly cap of {current.weekly_cap} {verdict}: the most nudges any rep got in any 7 days was {peak}.")


def _limit_text(rule: RuleStats, config: CoachConfig) -> str:
    sign = "<" if rule.comparison == "below" else ">"
    if rule.kind == "criterion":
        if rule.calibrated:
            return f"{sign} {rule.threshold:.1f}% (p{config.criteria[rule.rule].baseline_percentile:g} of team)"
        return f"{sign} {rule.threshold:g}%"
    metric = config.metric_rules[rule.rule]
    on = f" on {', '.join(metric.call_types)} calls" if metric.call_types else ""
    return f"{metric.metric} {sign} {rule.threshold:g}{on}"


@cli.command()
def practice(
    scenario_id: Annotated[str, typer.Argument(help="A scenario id, e.g. price-objection")],
    scenarios: Annotated[Path | None, typer.Option(help="Scenario folder (default: the shipped library)")] = None,
) -> None:
    """Run a roleplay and its grade in the terminal, offline with the scripted buyer: for scenario authors.

    Type your lines as the rep; `done` (or the turn limit, or the buyer's decision) ends it. Lines may be piped in.
    """
    from bot.app import REPO_SCENARIOS
    from bot.practice.feedback import feedback_for
    from bot.practice.grader import HeuristicGrader
    from bot.practice.roleplay import ScriptedBuyer, roleplay_over
    from bot.practice.scenarios import ScenarioError, load_scenarios
    from bot.practice.transcript import Turn

    try:
        library = load_scenarios(scenarios or REPO_SCENARIOS)
    except ScenarioError as exc:
        _fail(exc.problems, "the scenario library has mistakes")
    if scenario_id not in library:
        _fail([f"SCENARIO: no scenario {scenario_id!r} (known: {', '.join(sorted(library))})"], "cannot practise")
    scenario, buyer = library[scenario_id], ScriptedBuyer()
    persona = scenario.persona
    out.print(f"[bold]{scenario.title}[/]\n[dim]Your goal:[/] {scenario.goal}")
    out.print(f"[dim]The situation:[/] {scenario.context}")
    out.print(f"[dim]You are talking to {persona.name}, {persona.role} at {persona.company}. Type done to finish.[/]\n")
    turns = [Turn("buyer", scenario.opening_line)]
    out.print(Text(f"{persona.name}: ", style="bold cyan").append_text(shown(scenario.opening_line, lines=True)),
              highlight=False)
    while not roleplay_over(scenario, turns):
        line = sys.stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        turns.append(Turn("rep", line.strip()))
        if roleplay_over(scenario, turns):
            break
        reply = buyer.reply(scenario, turns)
        turns.append(reply)
        out.print(Text(f"{persona.name}: ", style="bold cyan").append_text(shown(reply.text, lines=True)),
                  highlight=False)
    grade = HeuristicGrader().grade(scenario, turns)
    verdict, *points = feedback_for(scenario, grade).lines()
    out.print(Text("\n").append_text(shown(verdict)), style="bold", highlight=False)
    for line in points:
        out.print(shown(line, lines=True), highlight=False)
    out.print("\n[bold]Details[/]")
    for c in grade.criteria:
        out.print(f"[bold]{c.label}: level {c.level}/4[/]", highlight=False)
        for quote in c.evidence:
            out.print(Text("  > “").append_text(shown(quote)).append("”"), highlight=False)
        out.print(Text("  ").append_text(shown(c.feedback, lines=True)), highlight=False)


@cli.command()
def digest(
    team: Annotated[str, typer.Option("--team", help="A team id from coach.yaml")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO time; the digest covers the week before")] = None,
) -> None:
    """Post the team's weekly digest (with its chart) now; a second run in the same week posts nothing new."""
    _logging(False)
    from bot.nudges.digest import post_digest
    from bot.slack.sender import wait_until_sent

    app = _app(Settings())
    if app.coach.config.team(team) is None:
        _fail([f"--team: no team {team!r} in coach.yaml (teams: {', '.join(t.id for t in app.coach.config.teams)})"],
              "cannot post the digest")
    try:
        now = datetime.fromisoformat(as_of) if as_of else None
    except ValueError:
        _fail([f"--as-of: {as_of!r} is not an ISO time such as 2026-12-07T09:00:00Z"], "cannot post the digest")
    now = now.replace(tzinfo=UTC) if now and now.tzinfo is None else now
    posted = post_digest(app.coach, team_id=team, now=now)
    try:
        wait_until_sent(app.coach.db, app.sender, timeout=120)
    except TimeoutError:
        _fail(["some Slack messages are still waiting; `rehearse serve` sends them"], "outbox not empty")
    out.print("Digest posted." if posted else "This week's digest was already posted; nothing new.")


@cli.command()
def audit(
    rep: Annotated[str | None, typer.Option("--rep", help="A rep's Slack user ID or email")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date or time, e.g. 2026-11-01")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout, for compliance exports")] = False,
) -> None:
    """Every decision, refusal, reminder, expiry and dispute, with who and when."""
    from rich.table import Table

    from bot.nudges.audit_trail import as_csv as to_csv
    from bot.nudges.audit_trail import audit_entries
    from bot.nudges.disputes import disputes_by_criterion

    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        _fail([f"--since: {since!r} is not an ISO date such as 2026-11-01"], "cannot read the audit log")
    start = start.replace(tzinfo=UTC) if start and start.tzinfo is None else start
    from storage.db import Database

    db = Database(Settings().database_url)  # the log needs no Slack token
    db.migrate()
    with db.session() as session:
        entries = audit_entries(session, rep=rep, since=start)
        disputed = disputes_by_criterion(session)
    if as_csv:
        typer.echo(to_csv(entries), nl=False)
        return
    table = Table("when (UTC)", "who", "what", "about", "detail", title=f"Audit log ({len(entries)} entries)")
    for e in entries:
        table.add_row(f"{e.at:%Y-%m-%d %H:%M}", shown(e.actor), shown(e.action), shown(e.subject),
                      shown(", ".join(f"{k}={v}" for k, v in e.detail.items())))
    out.print(table)
    if disputed:  # a criterion reps often dispute points at the scorer, not the reps
        out.print("Disputes per criterion: " + ", ".join(f"{c} {n}" for c, n in sorted(disputed.items())))


@cli.command()
def forget(
    rep: Annotated[str, typer.Option("--rep", help="The person's Slack user ID or email")],
    yes: Annotated[bool, typer.Option("--yes", help="Delete without asking for confirmation")] = False,
) -> None:
    """Delete everything Rehearse holds about one person (calls, scores, nudges, practice, messages not yet sent...)
    and record in the audit log that it was done, without naming them."""
    import getpass

    from bot.config import EMAIL, SLACK_USER
    from bot.nudges.forget import forget_person
    from storage.db import Database

    person = rep.strip()
    if not (SLACK_USER.match(person) or EMAIL.match(person)):
        _fail([f"--rep: {rep!r} is neither a Slack user ID (U...) nor an email address"], "cannot forget")
    if not yes and not typer.confirm(f"Delete everything Rehearse holds about {person}? This cannot be undone"):
        err.print("Nothing deleted.")
        raise typer.Exit(1)
    settings = Settings()
    db = Database(settings.database_url)  # needs no Slack token
    db.migrate()
    try:
        operator = getpass.getuser()
    except (KeyError, OSError):
        operator = "unknown"
    done = forget_person(db, identifier=person, now=datetime.now(UTC), operator=f"cli:{operator}")
    db.dispose()
    counts = {name.replace("_", " "): n for name, n in vars(done).items() if n}
    out.print(f"Forgot {person}: " + (", ".join(f"{n} {name}" for name, n in counts.items()) or "nothing was stored")
              + ". The audit log records the deletion without naming them.", highlight=False)
    try:
        listed = person.lower() in {p for team in load_config_quietly(settings.config_path) for p in team}
    except ConfigError:
        listed = False
    if listed:
        err.print(f"{person} is still listed in {settings.config_path}: remove them there, or their next scored call "
                  "is stored again.", highlight=False)


def load_config_quietly(path: str) -> list[list[str]]:
    """Every team's people (lower-cased) from coach.yaml, for the warning after `forget`."""
    config = parse_config(read_yaml(path))
    return [[p.lower() for p in (*t.reps, *t.managers, *t.approvers)] for t in config.teams]


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
    """Run every periodic job once as of --as-of (default now): re-match waiting calls, remind / expire / escalate
    approvals, delete text past coach.yaml's `retention`, send due follow-ups, post this week's digests (once), and
    wait until the outbox is sent."""
    _logging(False)
    try:
        now = datetime.fromisoformat(as_of) if as_of else datetime.now(UTC)
    except ValueError:
        _fail([f"--as-of: {as_of!r} is not an ISO time such as 2026-12-14T09:00:00Z"], "cannot run jobs")
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    from bot.nudges.digest import post_digest
    from bot.slack.sender import wait_until_sent

    app = _app(Settings())
    sent = app.run_due_jobs(now)
    digests = sum(post_digest(app.coach, team_id=t.id, now=now) for t in app.coach.config.teams)  # once a week
    try:
        wait_until_sent(app.coach.db, app.sender, timeout=120)
    except TimeoutError:
        _fail(["some Slack messages are still waiting (rate limits or Slack unreachable); "
               "`rehearse serve` sends them, or run this again"], "outbox not empty")
    out.print(f"follow-ups sent: {sent}; weekly digests posted: {digests}")


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)
