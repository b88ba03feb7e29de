"""Due follow-ups among a million pending ones (issue 6): claim and dispatch 10,000, report time and peak memory.

For each database (SQLite file, and PostgreSQL when BENCH_POSTGRES_URL is set) and each size of backlog, it fills
the tables with Core bulk inserts, then measures
  * dispatch: `send_due_followups` until nothing is due (claim with SKIP LOCKED, compose the DM, enqueue it), and
  * delivery: the outbox sender until every DM reached the Slack Web API stand-in,
with the peak of Python memory allocated during dispatch (tracemalloc). Memory must not grow with the backlog.

    python bench/bench_followups.py [pending ...]        # default: 100000 1000000
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app import create_app  # noqa: E402
from bot.config import parse_config  # noqa: E402
from bot.demo.slack_standin import SlackStandIn  # noqa: E402
from bot.nudges.followups import send_due_followups  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.slack.pacing import ChannelPacer  # noqa: E402
from storage.models import FollowUp, Nudge, NudgeState, Rep  # noqa: E402

DUE = int(os.environ.get("BENCH_DUE", "10000"))
CHUNK = 50_000


def _fill(url: str, pending: int, now: datetime) -> None:
    """DUE reps, each with one completed nudge; one follow-up due now per rep, the rest of the backlog later."""
    engine = create_engine(url)
    steps = max(1, pending // DUE)
    with engine.begin() as conn:
        conn.execute(insert(Rep.__table__), [{"id": i + 1, "slack_user_id": f"U{i:07d}", "team_id": "bench",
                                             "created_at": now} for i in range(DUE)])
        conn.execute(insert(Nudge.__table__), [{
            "id": i + 1, "rep_id": i + 1, "team_id": "bench", "criterion": "objection_handling",
            "scenario_id": "price-objection", "state": str(NudgeState.COMPLETED), "policy": "manual",
            "created_at": now - timedelta(days=20), "completed_at": now - timedelta(days=15)} for i in range(DUE)])
        batch = []
        for i in range(DUE):
            for step in range(steps):
                due = now - timedelta(minutes=1) if step == 0 else now + timedelta(days=30 + step)
                batch.append({"nudge_id": i + 1, "rep_id": i + 1, "step": step + 1, "due_at": due,
                              "status": "scheduled"})
                if len(batch) == CHUNK:
                    conn.execute(insert(FollowUp.__table__), batch)
                    batch = []
        if batch:
            conn.execute(insert(FollowUp.__table__), batch)
    engine.dispose()


def run(url: str, pending: int) -> dict:
    now = datetime.now(UTC)
    config = parse_config({
        "teams": [{"id": "bench", "managers": ["U9999999"], "approvals_channel": "C0APPROVALS", "reps": []}],
        "criteria": {"objection_handling": {"scenario": "price-objection"}},
        "budget": {"working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "working_hours": None},
    })
    with SlackStandIn() as slack:
        settings = Settings(SLACK_BOT_TOKEN=slack.bot_token, SLACK_SIGNING_SECRET="x", SLACK_API_URL=slack.base_url,
                            DATABASE_URL=url)
        app = create_app(settings, config=config)  # migrates the empty database
        filled = time.perf_counter()
        _fill(url, pending, now)
        fill_s = time.perf_counter() - filled
        tracemalloc.start()
        started = time.perf_counter()
        dispatched = 0
        while batch := send_due_followups(app.coach, now=now, limit=500):
            dispatched += batch
        dispatch_s = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        app.sender.pacer = ChannelPacer()
        started = time.perf_counter()
        while app.sender.drain():
            pass
        deliver_s = time.perf_counter() - started
        delivered = len(slack.calls_to("chat.postMessage"))
        app.stop()
    return {"pending": pending, "dispatched": dispatched, "delivered": delivered, "fill_s": fill_s,
            "dispatch_s": dispatch_s, "deliver_s": deliver_s, "peak_mib": peak / 2**20}


def main(sizes: list[int]) -> None:
    targets = []
    for size in sizes:
        tmp = tempfile.mkdtemp()
        if not os.environ.get("BENCH_SKIP_SQLITE"):
            targets.append(("SQLite", f"sqlite:///{tmp}/bench.db", size))
        if os.environ.get("BENCH_POSTGRES_URL"):
            targets.append(("PostgreSQL", os.environ["BENCH_POSTGRES_URL"], size))
    for name, url, size in targets:
        if name == "PostgreSQL":
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
            engine.dispose()
        r = run(url, size)
        rate = r["dispatched"] / r["dispatch_s"]
        print(f"{name:10} pending {r['pending']:>9,}: filled in {r['fill_s']:.0f} s; dispatched {r['dispatched']:,} "
              f"due in {r['dispatch_s']:.1f} s ({rate:.0f}/s), peak {r['peak_mib']:.1f} MiB; "
              f"delivered {r['delivered']:,} DMs in {r['deliver_s']:.1f} s", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])
