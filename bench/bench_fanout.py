"""Fan-out under Slack's limits (issue 8): 5,000 refresher DMs through the outbox against a rate-limiting stand-in.

Each run builds REPS reps with PER_REP completed nudges each, one follow-up due now per nudge, and lets Rehearse's
own follow-up job (`send_due_followups`) compose the refresher DMs into the outbox. Then the app starts as
`rehearse serve` does (scheduler sweep, the one OutboxSender with its ChannelPacer and MethodPacer) and delivers
them to a Slack stand-in that enforces
  * chat.postMessage: a token bucket per channel, bursts of 3, then 1 message per second;
  * the method tiers (bot/slack/pacing.py METHOD_TIERS): a bucket per method holding a minute's allowance;
  * 10% random 429s (seeded per run) with Retry-After 1-3 s; the channel (or method) stays shut until it passed.
Checks: every follow-up DM in the stand-in exactly once (by its button value, and by outbox id in the message
metadata when the sender adds it), no other post. Time: from starting the app to the stand-in accepting the last
post, against the minimum the stand-in's own rules allow given the 429s it actually served (`minimum_seconds`).

    python bench/bench_fanout.py [--reps 50] [--per-rep 100] [--runs 5] [--rate 0.1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert
from sqlmodel import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app import create_app  # noqa: E402
from bot.config import parse_config  # noqa: E402
from bot.demo.slack_standin import SlackStandIn  # noqa: E402
from bot.nudges.followups import send_due_followups  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.slack import ids  # noqa: E402
from bot.slack.pacing import METHOD_TIERS, TIER_CALLS_PER_MINUTE  # noqa: E402
from storage.models import FollowUp, Nudge, NudgeState, OutboxMessage, OutboxStatus, Rep  # noqa: E402

POST = "chat.postMessage"
CHANNEL_BURST, CHANNEL_PER_SECOND = 3.0, 1.0  # the stand-in's chat.postMessage bucket


def _fill(url: str, reps: int, per_rep: int, now: datetime) -> None:
    """`reps` reps, each with `per_rep` completed nudges and one follow-up due now per nudge."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(Rep.__table__), [{"id": r + 1, "slack_user_id": f"U{r:07d}", "team_id": "bench",
                                             "created_at": now} for r in range(reps)])
        nudges = [{"id": r * per_rep + k + 1, "rep_id": r + 1, "team_id": "bench", "criterion": "objection_handling",
                   "scenario_id": "price-objection", "state": str(NudgeState.COMPLETED), "policy": "manual",
                   "created_at": now - timedelta(days=20), "completed_at": now - timedelta(days=15)}
                  for r in range(reps) for k in range(per_rep)]
        conn.execute(insert(Nudge.__table__), nudges)
        conn.execute(insert(FollowUp.__table__), [{"nudge_id": n["id"], "rep_id": n["rep_id"], "step": 1,
                                                  "due_at": now - timedelta(minutes=1), "status": "scheduled"}
                                                 for n in nudges])
    engine.dispose()


def earliest_finish(attempts: list[int | None], *, burst: float, per_second: float) -> float:
    """Seconds from the start until the last success, for a client that calls the moment the rules allow.

    `attempts` are one channel's (or method's) calls in order: None for a success, else the Retry-After of a
    random 429. A call needs a token (bucket of `burst`, refilled at `per_second`); a success spends it, a 429
    does not, but shuts the channel for its Retry-After.
    """
    t = last = finish = 0.0
    tokens = burst
    for retry_after in attempts:
        tokens = min(burst, tokens + (t - last) * per_second)
        last = t
        if tokens < 1:
            t += (1 - tokens) / per_second
            tokens, last = 1.0, t
        if retry_after is None:
            tokens -= 1
            finish = t
        else:
            t += retry_after
    return finish


def minimum_seconds(slack: SlackStandIn) -> tuple[float, str]:
    """The fastest the stand-in's rules allow, given the random 429s it served: max over channels and methods."""
    attempts: dict[tuple[str, str], list[tuple[float, int | None]]] = defaultdict(list)
    for call in slack.calls:
        if call.status == 200 and (call.method == POST or call.method in METHOD_TIERS):
            key = slack._resolve_channel(call.params.get("channel")) if call.method == POST else call.method
            attempts[(call.method, key)].append((call.at, None))
    for limited in slack.rate_limited:
        if limited.reason == "random":
            attempts[(limited.method, limited.key)].append((limited.at, limited.retry_after))
    best, bound = 0.0, "nothing sent"
    for (method, key), events in attempts.items():
        if method == POST:
            burst, per_second = CHANNEL_BURST, CHANNEL_PER_SECOND
        else:
            burst = float(TIER_CALLS_PER_MINUTE[METHOD_TIERS[method]])
            per_second = burst / 60
        finish = earliest_finish([r for _, r in sorted(events, key=lambda e: e[0])], burst=burst,
                                 per_second=per_second)
        if finish > best:
            best, bound = finish, key
    return best, bound


def run(reps: int, per_rep: int, rate: float, seed: int) -> dict:
    now = datetime.now(UTC)
    url = f"sqlite:///{tempfile.mkdtemp()}/fanout.db"
    config = parse_config({
        "teams": [{"id": "bench", "managers": ["U9999999"], "approvals_channel": "C0APPROVALS", "reps": []}],
        "criteria": {"objection_handling": {"scenario": "price-objection"}},
        "budget": {"working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "working_hours": None},
    })
    with SlackStandIn(enforce_channel_pacing=True, enforce_tiers=True, random_429_rate=rate, seed=seed) as slack:
        settings = Settings(SLACK_BOT_TOKEN=slack.bot_token, SLACK_SIGNING_SECRET="x", SLACK_API_URL=slack.base_url,
                            DATABASE_URL=url)
        app = create_app(settings, config=config)  # migrates the empty database
        _fill(url, reps, per_rep, now)
        started = time.perf_counter()
        while send_due_followups(app.coach, now=now, limit=500):
            pass
        dispatch_s = time.perf_counter() - started
        with app.coach.db.session() as session:
            rows = {r.id: r.payload for r in session.exec(select(OutboxMessage).where(OutboxMessage.method == POST))}
        slack.calls.clear()
        slack.rate_limited.clear()
        start = time.monotonic()
        app.start()  # the scheduler's outbox sweep and the one OutboxSender, as `rehearse serve` runs them
        try:
            while True:
                time.sleep(0.2)
                with app.coach.db.session() as session:
                    unsent = len(session.exec(select(OutboxMessage.id).where(
                        OutboxMessage.status != OutboxStatus.SENT)).all())
                if not unsent:
                    break
                if time.monotonic() - start > 3600:
                    raise TimeoutError(f"{unsent} outbox rows still unsent after an hour")
        finally:
            app.stop()
        posted = [c for c in slack.calls if c.method == POST and c.status == 200]
        elapsed = max(c.at for c in posted) - start
        minimum, bound = minimum_seconds(slack)
        with slack._lock:
            messages = [m for m in slack.messages if not m["ephemeral"]]
            limited = Counter(r.reason for r in slack.rate_limited)
            methods = Counter(c.method for c in slack.calls)

    # exactly once: by the follow-up's button value (content) and by outbox id (message metadata, when present)
    values = Counter(v for m in messages for v in _button_values(m))
    wanted = {_button_value(p) for p in rows.values()}
    by_content = len(messages) == len(rows) and set(values) == wanted and set(values.values()) == {1}
    outbox_ids = Counter(((m.get("metadata") or {}).get("event_payload") or {}).get("outbox_id") for m in messages)
    by_id = None if None in outbox_ids else (set(outbox_ids) == set(rows) and set(outbox_ids.values()) == {1})
    return {"dms": len(rows), "messages": len(messages), "exactly_once": by_content and by_id is not False,
            "by_content": by_content, "by_outbox_id": by_id, "dispatch_s": dispatch_s, "elapsed_s": elapsed,
            "minimum_s": minimum, "bound": bound, "ratio": elapsed / minimum if minimum else float("inf"),
            "limited": dict(limited), "calls": dict(methods)}


def _button_value(payload: dict) -> str:
    found = [e["value"] for b in payload.get("blocks") or [] for e in b.get("elements") or [] if e.get("value")]
    return next(v for v in found if v.startswith(ids.practice_value("followup", "")))


def _button_values(message: dict) -> list[str]:
    return [e["value"] for b in message.get("blocks") or [] for e in b.get("elements") or []
            if str(e.get("value", "")).startswith(ids.practice_value("followup", ""))]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--per-rep", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=0.10, help="share of calls answered with a random 429")
    args = parser.parse_args()
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running" while a drain lingers
    print(f"machine: {os.cpu_count()} CPUs ({_cpu_model()}), Python {platform.python_version()}, SQLite; "
          f"{args.reps} reps x {args.per_rep} DMs, {args.rate:.0%} random 429s", flush=True)
    results = []
    for i in range(args.runs):
        r = run(args.reps, args.per_rep, args.rate, seed=i + 1)
        results.append(r)
        print(f"run {i + 1}: {r['messages']:,}/{r['dms']:,} DMs, exactly once: {r['exactly_once']} "
              f"(content {r['by_content']}, outbox id {r['by_outbox_id']}); delivered in {r['elapsed_s']:.1f} s, "
              f"minimum {r['minimum_s']:.1f} s (channel {r['bound']}), ratio {r['ratio']:.3f}; "
              f"429s served {json.dumps(r['limited'])}; calls {json.dumps(r['calls'])}; "
              f"dispatch {r['dispatch_s']:.1f} s", flush=True)
    ratio = statistics.median(r["ratio"] for r in results)
    print(f"median of {len(results)}: delivered in {statistics.median(r['elapsed_s'] for r in results):.1f} s, "
          f"minimum {statistics.median(r['minimum_s'] for r in results):.1f} s, ratio {ratio:.3f} "
          f"(target <= 1.15: {'met' if ratio <= 1.15 else 'MISSED'}); exactly once in every run: "
          f"{all(r['exactly_once'] for r in results)}", flush=True)


if __name__ == "__main__":
    main()
