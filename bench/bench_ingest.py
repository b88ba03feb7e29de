"""Ingest throughput: 20,000 signed scored calls over `POST /webhooks/calls` and through `rehearse ingest FILE`.

The calls (seeded, generic v1): 400 reps in 4 teams, each call scored on 3 criteria with an evidence quote per
score, a talk ratio and a question count, spread over the last 120 days in time order. One rep in five is weak on
one criterion (below its threshold most of the time), so signals fire, nudges are made and approval messages are
queued, as on a real day.

Three measurements per run, each on a fresh SQLite file:
  * HTTP: `rehearse serve` in its own process (against the Slack Web API stand-in, which receives the approval
    messages), one call per request as a scorer's webhook sends them, signed with `X-Rehearse-Signature`, from
    CLIENTS keep-alive connections at once (one asyncio loop, raw HTTP/1.1 with bodies serialised beforehand);
  * CLI: `python -m bot ingest calls.jsonl` end to end in its own process, and the same command on an empty file
    (start-up alone), so that the ingest itself can be told apart;
  * baseline: the same calls' rows (reps, calls, call_scores) inserted with SQLAlchemy Core `insert()`
    executemany into the project's own tables (migrated by the app), in one transaction, same database kind.

    python bench/bench_ingest.py [calls] [runs] [clients]          # default: 20000 5 8
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app import free_port  # noqa: E402
from bot.demo.slack_standin import SlackStandIn  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Call, CallScore, Rep  # noqa: E402

WEBHOOK_SECRET = "bench-webhook-secret"
TEAMS = 4
REPS_PER_TEAM = 100
CRITERIA = {"objection_handling": "price-objection", "discovery": "discovery-impact",
            "closing": "stall-think-about-it"}
QUOTES = {
    "objection_handling": ["I guess we could knock 20% off", "Let me see what I can do on price",
                           "That's a fair point, the price is high", "Most customers see payback in six months"],
    "discovery": ["So what does a missed delivery cost you today?", "Tell me about your current process",
                  "Who else is involved in this decision?", "Okay, let me show you the dashboard"],
    "closing": ["Can we put a pilot start date on the calendar?", "I'll send over some info and circle back",
                "What would stop you signing by the 15th?", "Let's touch base next quarter"],
}
CALL_TYPES = ["discovery", "demo", "negotiation", "follow_up"]


def rep_ids(teams: int = TEAMS, per_team: int = REPS_PER_TEAM) -> list[list[str]]:
    return [[f"U0T{t}R{r:04d}" for r in range(per_team)] for t in range(teams)]


def coach_config(teams: list[list[str]], *, approvals_channels: list[str] | None = None,
                 talk_ratio_rule: bool = True) -> dict:
    """coach.yaml for the bench: every criterion at 60% on 3 calls in a row, any hour of any day."""
    channels = approvals_channels or [f"C0APPROVE{t:03d}" for t in range(len(teams))]
    config = {
        "teams": [{"id": f"team-{t}", "managers": [f"U0BOSS{t:04d}"], "approvals_channel": channels[t],
                   "reps": reps} for t, reps in enumerate(teams)],
        "criteria": {name: {"scenario": scenario, "threshold": 60, "consecutive_calls": 3}
                     for name, scenario in CRITERIA.items()},
        "metric_rules": {"over_talking": {"metric": "talk_ratio", "above": 0.65, "scenario": "active-listening"}},
        "budget": {"working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "working_hours": None},
    }
    if not talk_ratio_rule:
        del config["metric_rules"]
    return config


def scored_call(rng: random.Random, number: int, rep: str, started: datetime, weak: str | None) -> dict:
    scores = []
    for criterion in CRITERIA:
        low = criterion == weak and rng.random() < 0.8
        score = rng.randint(25, 55) if low else rng.randint(55 if rng.random() < 0.1 else 62, 98)
        scores.append({"criterion": criterion, "score": score, "max": 100,
                       "evidence": [{"quote": rng.choice(QUOTES[criterion]), "at_s": rng.randint(30, 2400)}]})
    return {
        "call_id": f"bench-{number:07d}", "source": "generic", "rep": rep,
        "started_at": started.isoformat().replace("+00:00", "Z"), "duration_s": rng.randint(600, 3600),
        "title": f"Account {number % 997} - {rng.choice(CALL_TYPES)}", "call_type": rng.choice(CALL_TYPES),
        "recording_url": f"https://ci.example.com/calls/{number}",
        "scores": scores,
        "metrics": {"talk_ratio": round(rng.uniform(0.35, 0.7), 2), "questions": rng.randint(3, 18),
                    "longest_monologue_s": rng.randint(20, 200)},
    }


def make_calls(count: int, teams: list[list[str]], *, seed: int = 8, days: int = 120) -> list[dict]:
    """`count` calls in time order over the last `days` days; one rep in five weak on one criterion."""
    rng = random.Random(seed)
    reps = [rep for team in teams for rep in team]
    weak = {rep: rng.choice(list(CRITERIA)) for rep in reps if rng.random() < 0.2}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)
    step = timedelta(days=days) / max(count, 1)
    calls = []
    for number in range(count):
        rep = rng.choice(reps)
        calls.append(scored_call(rng, number, rep, start + step * number, weak.get(rep)))
    return calls


def sign(body: bytes, timestamp: int) -> tuple[str, str]:
    ts = str(timestamp)
    return ts, "v1=" + hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_request(port: int, body: bytes) -> bytes:
    """The raw, freshly signed HTTP/1.1 request a scorer's webhook sends (keep-alive)."""
    ts, signature = sign(body, int(time.time()))
    return (f"POST /webhooks/calls HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"X-Rehearse-Timestamp: {ts}\r\nX-Rehearse-Signature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def post_all(port: int, bodies: list[bytes], clients: int) -> tuple[float, dict[int, int], list[float]]:
    """Send every body once over `clients` keep-alive connections; (seconds, statuses, per-request latencies)."""
    queue = list(reversed(bodies))
    statuses: dict[int, int] = {}
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            body = queue.pop()
            begun = time.monotonic()
            writer.write(webhook_request(port, body))
            status, answer = await read_answer(reader)
            latencies.append(time.monotonic() - begun)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 202:
                raise RuntimeError(f"webhook answered {status}: {answer[:300]!r}")
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.monotonic() - started, statuses, latencies


def server_env(slack: SlackStandIn, db_url: str, config: Path, port: int) -> dict[str, str]:
    return {**os.environ, "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": "bench-signing-secret",
            "SLACK_API_URL": slack.base_url, "DATABASE_URL": db_url, "REHEARSE_CONFIG": str(config),
            "REHEARSE_WEBHOOK_SECRET": WEBHOOK_SECRET, "PORT": str(port)}


def wait_healthy(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=5) as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"rehearse serve exited with {server.returncode}")
            try:
                if http.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError("rehearse serve did not come up")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def over_http(tmp: Path, calls: list[dict], config: Path, clients: int, slack: SlackStandIn) -> dict:
    bodies = [json.dumps(c, separators=(",", ":")).encode() for c in calls]
    port = free_port()
    env = server_env(slack, f"sqlite:///{tmp / 'http.db'}", config, port)
    server = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--no-verbose"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server)
        if os.environ.get("BENCH_PROFILE"):
            subprocess.Popen(["py-spy", "record", "-r", "200", "-d", "20", "-f", "raw",
                              "-o", os.environ["BENCH_PROFILE"], "--pid", str(server.pid)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        cpu_before = cpu_seconds(server.pid)
        seconds, statuses, latencies = asyncio.run(post_all(port, bodies, clients))
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    return {"seconds": seconds, "rate": len(calls) / seconds, "statuses": statuses, "server_cpu_s": cpu,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
            "approvals_posted": len(slack.calls_to("chat.postMessage"))}


def through_cli(tmp: Path, calls: list[dict], config: Path, slack: SlackStandIn) -> dict:
    path, empty = tmp / "calls.jsonl", tmp / "empty.jsonl"
    path.write_text("".join(json.dumps(c, separators=(",", ":")) + "\n" for c in calls))
    empty.write_text("")

    def run(file: Path, db: str) -> tuple[float, str]:
        env = server_env(slack, f"sqlite:///{tmp / db}", config, 0)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "bot", "ingest", str(file)], env=env, capture_output=True,
                              text=True, check=False)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"rehearse ingest failed: {done.stdout}{done.stderr}")
        return seconds, done.stdout.strip()

    startup, _ = run(empty, "cli-empty.db")
    seconds, summary = run(path, "cli.db")
    return {"seconds": seconds, "rate": len(calls) / seconds, "startup_s": startup,
            "rate_without_startup": len(calls) / (seconds - startup), "summary": summary}


def core_rows(calls: list[dict], now: datetime) -> tuple[list[dict], list[dict], list[dict]]:
    """The reps, calls and call_scores rows intake stores for these calls (same columns, same JSON)."""
    reps: dict[str, int] = {}
    call_rows, score_rows = [], []
    for number, call in enumerate(calls, start=1):
        rep_id = reps.setdefault(call["rep"], len(reps) + 1)
        call_rows.append({
            "id": number, "source": call["source"], "call_id": call["call_id"], "rep_ref": call["rep"],
            "rep_id": rep_id, "started_at": datetime.fromisoformat(call["started_at"]),
            "duration_s": call["duration_s"], "title": call["title"], "call_type": call["call_type"],
            "recording_url": call["recording_url"], "metrics": call["metrics"], "received_at": now})
        score_rows.extend({"call_pk": number, "criterion": s["criterion"], "score": s["score"], "max": s["max"],
                           "evidence": s["evidence"]} for s in call["scores"])
    rep_rows = [{"id": i, "slack_user_id": ref, "created_at": now} for ref, i in reps.items()]
    return rep_rows, call_rows, score_rows


def core_baseline(tmp: Path, calls: list[dict]) -> dict:
    url = f"sqlite:///{tmp / 'core.db'}"
    db = Database(url)
    db.migrate()  # the project's own tables, indexes and SQLite settings
    engine = create_engine(url)
    started = time.monotonic()
    reps, call_rows, score_rows = core_rows(calls, datetime.now(UTC))
    with engine.begin() as conn:
        conn.execute(insert(Rep.__table__), reps)
        conn.execute(insert(Call.__table__), call_rows)
        conn.execute(insert(CallScore.__table__), score_rows)
    seconds = time.monotonic() - started
    engine.dispose()
    db.dispose()
    return {"seconds": seconds, "rate": len(calls) / seconds, "rows": len(reps) + len(call_rows) + len(score_rows)}


def one_run(count: int, clients: int) -> dict:
    teams = rep_ids()
    calls = make_calls(count, teams)
    with tempfile.TemporaryDirectory() as tmp_name, SlackStandIn() as slack:
        tmp = Path(tmp_name)
        config = tmp / "coach.yaml"
        config.write_text(json.dumps(coach_config(teams)))  # JSON is YAML
        baseline = core_baseline(tmp, calls)
        cli = through_cli(tmp, calls, config, slack)
        http = over_http(tmp, calls, config, clients, slack)
    return {"baseline": baseline, "cli": cli, "http": http}


def main(count: int = 20_000, runs: int = 5, clients: int = 8) -> None:
    results = []
    for number in range(runs):
        result = one_run(count, clients)
        results.append(result)
        print(f"run {number + 1}: " + json.dumps(result, default=lambda v: round(v, 3)), flush=True)
    base = statistics.median(r["baseline"]["rate"] for r in results)
    cli = statistics.median(r["cli"]["rate"] for r in results)
    cli_net = statistics.median(r["cli"]["rate_without_startup"] for r in results)
    startup = statistics.median(r["cli"]["startup_s"] for r in results)
    http = statistics.median(r["http"]["rate"] for r in results)
    print(f"\n{count:,} calls, {runs} run(s), median; {os.cpu_count()} CPUs, {cpu_model()}")
    print(f"baseline, Core executemany (reps + calls + call_scores): {base:,.0f} calls/s")
    print(f"rehearse ingest FILE, end to end: {cli:,.0f} calls/s ({cli / base:.3f} of baseline; target 2,000/s"
          f" and 0.3); without its {startup:.1f} s start-up: {cli_net:,.0f} calls/s ({cli_net / base:.3f})")
    print(f"POST /webhooks/calls, one call per request, {clients} connections: {http:,.0f} calls/s "
          f"({http / base:.3f} of baseline; target 300/s and 0.3); p50 "
          f"{statistics.median(r['http']['p50_ms'] for r in results):.1f} ms, p99 "
          f"{statistics.median(r['http']['p99_ms'] for r in results):.1f} ms")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
