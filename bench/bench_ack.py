"""Acknowledgement latency while a slow model plays the buyer (issue 5).

Starts `rehearse serve` in its own process against the Slack Web API stand-in, with the buyer played
by a fake OpenAI-compatible model that takes MODEL_DELAY seconds to answer. 200 reps each have a practice thread
open; then 100 thread replies and 100 clicks (/progress) arrive at once, signed as Slack signs them. It measures
how long each request takes to be answered (Slack's 3-second acknowledgement) and waits until every buyer reply
has replaced its "typing…" placeholder.

    python bench/bench_ack.py [reps] [model_delay_s]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.app import free_port  # noqa: E402
from bot.demo.driver import SlackDriver  # noqa: E402
from bot.demo.slack_standin import SlackStandIn  # noqa: E402
from tests.fake_openai import FakeOpenAI, reply  # noqa: E402

SECRET = "bench-signing-secret"


def main(reps: int = 200, delay: float = 10.0) -> None:
    users = [f"U0REP{i:04d}" for i in range(reps)]
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn(users=[{"id": u} for u in users]) as slack, \
            FakeOpenAI() as model:
        model.always(reply("Fair question. What would it save us per truck?", delay=delay))
        config = Path(tmp) / "coach.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "teams": [{"id": "bench", "managers": ["U0BOSS"], "approvals_channel": "C0APPROVALS", "reps": users}],
            "criteria": {"objection_handling": {"scenario": "price-objection"}},
            "budget": {"working_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "working_hours": None},
        }))
        port = free_port()
        env = {**os.environ, "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_API_URL": slack.base_url, "DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
               "OPENAI_BASE_URL": model.base_url, "REHEARSE_CONFIG": str(config), "PORT": str(port),
               "REHEARSE_PRACTICE_WORKERS": str(max(8, reps)), "REHEARSE_OUTBOX_SWEEP_SECONDS": "0.5",
               "REHEARSE_SLACK_WORKERS": os.environ.get("REHEARSE_SLACK_WORKERS", "16")}
        server = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--no-verbose"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=400)) as http:
                _wait_healthy(http, url)
                driver = SlackDriver(url, SECRET, http)
                threads = _open_threads(driver, slack, users)
                jobs = [lambda u=u, t=threads[u]: driver.dm(user=u, channel=t[0], text="What is that compared to?",
                                                         thread_ts=t[1]) for u in users[: reps // 2]]
                jobs += [lambda u=u: driver.command("/progress", user=u) for u in users[reps // 2:]]
                started = time.monotonic()
                with ThreadPoolExecutor(len(jobs)) as pool:
                    timings = list(pool.map(_timed, jobs))
                acks = sorted(t for t, _ in timings)
                statuses = {s for _, s in timings}
                slack.wait_for(lambda: sum(1 for m in slack.messages if "per truck" in m["text"]) >= reps // 2,
                               timeout=delay * 4 + 120)
                delivered_s = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
    p50, p99 = statistics.median(acks), acks[int(len(acks) * 0.99) - 1]
    print(f"{len(acks)} requests ({reps // 2} thread replies, {reps - reps // 2} clicks), model {delay:g} s, "
          f"HTTP statuses {sorted(statuses)}")
    print(f"acknowledgement: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {acks[-1] * 1000:.0f} ms, "
          f"over 3 s: {sum(a > 3 for a in acks)}")
    print(f"every buyer reply delivered after {delivered_s:.1f} s")


def _wait_healthy(http: httpx.Client, url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if http.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("rehearse serve did not come up")


def _open_threads(driver: SlackDriver, slack: SlackStandIn, users: list[str]) -> dict[str, tuple[str, str]]:
    """A practice thread per rep, opened the way a rep does (`/drill price`, then Start practice)."""
    for user in users:
        driver.command("/drill", user=user, text="price-objection")  # starts the roleplay in the rep's DM
    slack.wait_for(lambda: sum(1 for m in slack.messages if not m.get("thread_ts")) >= len(users), timeout=120)
    threads = {"U" + m["channel"][1:]: (m["channel"], m["ts"]) for m in slack.messages if not m.get("thread_ts")}
    slack.wait_for(lambda: sum(1 for m in slack.messages if m.get("thread_ts")) >= 2 * len(users), timeout=300)
    return threads


def _timed(job) -> tuple[float, int]:  # noqa: ANN001
    begun = time.monotonic()
    status = job().status_code
    return time.monotonic() - begun, status


if __name__ == "__main__":
    main(*(int(sys.argv[1]),) if len(sys.argv) > 1 else (), *(float(sys.argv[2]),) if len(sys.argv) > 2 else ())
