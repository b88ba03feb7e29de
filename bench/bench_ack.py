"""Acknowledgement latency while a slow model plays the buyer (issue 5).

Starts `rehearse serve` (its web process and the worker it starts) against the Slack Web API stand-in, with the
buyer played by a fake OpenAI-compatible model that takes MODEL_DELAY seconds to answer. Half the reps have a
practice thread open, the other half have the `/drill` picker in front of them. Then every rep acts at the same
instant: a thread reply to the buyer, or a click on the picker's Start button, signed as Slack signs them. It
measures how long each request takes to be answered (Slack's 3-second acknowledgement) and waits until every buyer
reply has replaced its "typing…" placeholder and every picked drill has opened.

The requests are built and signed before the burst and sent over connections opened beforehand, from one
asyncio loop, so the load generator's own work does not land inside the figures. Two baselines, the same burst
against the same server: `GET /healthz` (a database read), and signed `url_verification` requests (Bolt's whole
dispatch, signature check included, with no listener and no work after the answer).

    python bench/bench_ack.py [reps] [model_delay_s] [runs]
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_ingest import cpu_seconds, wait_healthy  # noqa: E402 - a sibling script: the same two helpers

from bot.app import free_port  # noqa: E402
from bot.demo.driver import SlackDriver  # noqa: E402
from bot.demo.slack_standin import SlackStandIn  # noqa: E402
from bot.slack import ids  # noqa: E402
from tests.fake_openai import FakeOpenAI, reply  # noqa: E402

SECRET = "bench-signing-secret"
BUYER_LINE = "Fair question. What would it save us per truck?"


def main(reps: int = 200, delay: float = 10.0, runs: int = 1) -> None:
    results = [one_run(reps, delay) for _ in range(runs)]
    print(f"{reps} requests per burst ({reps // 2} thread replies, {reps - reps // 2} clicks), model {delay:g} s, "
          f"{runs} run(s), {os.cpu_count()} CPUs")
    for name in ("slack", "replies", "clicks", "healthz", "bolt_only"):
        p50 = statistics.median(r[name]["p50"] for r in results)
        p99 = statistics.median(r[name]["p99"] for r in results)
        worst = max(r[name]["max"] for r in results)
        over = sum(r[name]["over_3s"] for r in results)
        statuses = sorted(set().union(*(r[name]["statuses"] for r in results)))
        print(f"{name:8s} median of runs: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; "
              f"worst {worst * 1000:.0f} ms, over 3 s: {over}, statuses {statuses}")
    print("per run:", json.dumps([{k: v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items()
                                                                          if kk != "statuses"}
                                   for k, v in r.items()} for r in results]))


def one_run(reps: int, delay: float) -> dict:
    users = [f"U0REP{i:04d}" for i in range(reps)]
    talkers, clickers = users[: reps // 2], users[reps // 2:]
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn(users=[{"id": u} for u in users]) as slack, \
            FakeOpenAI() as model:
        model.always(reply(BUYER_LINE, delay=delay))
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
               "REHEARSE_PRACTICE_WORKERS": str(max(8, reps)), "REHEARSE_OUTBOX_SWEEP_SECONDS": "0.5"}
        log_path = os.environ.get("BENCH_SERVER_LOG")  # the server's own log lines, for looking into a run
        server_log = open(log_path, "a") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed with the run
        server = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--verbose" if log_path else "--no-verbose"],
                                  env=env, stdout=server_log, stderr=server_log)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(timeout=60) as http:
                wait_healthy(url, server)
                driver = SlackDriver(url, SECRET, http)
                threads = _open_threads(driver, slack, talkers)
                pickers = {u: driver.command(ids.DRILL_COMMAND, user=u, channel=f"D{u[1:]}").json()
                           for u in clickers}
            burst = _signed_requests(url, lambda d: [
                *(d.dm(user=u, channel=threads[u][0], text="What is that compared to?", thread_ts=threads[u][1])
                  for u in talkers),
                *(d.click({**pickers[u], "ts": "1.000000", "channel": f"D{u[1:]}"}, ids.PICK_DRILL, user=u)
                  for u in clickers)])
            health = [_raw_request("GET", f"{url}/healthz", {}, b"")] * reps
            baseline = asyncio.run(_burst(port, health))
            challenges = _signed_requests(url, lambda d: [
                d.post(json.dumps({"type": "url_verification", "token": "legacy", "challenge": f"c{i}"}),
                       "application/json") for i in range(reps)])
            bolt_only = asyncio.run(_burst(port, challenges))
            if os.environ.get("BENCH_PROFILE"):
                subprocess.Popen(["py-spy", "record", "--gil", "--nonblocking", "-r", "1000", "-d", "2", "-f", "raw",
                                  "-o", os.environ["BENCH_PROFILE"], "--pid", str(server.pid)])
                time.sleep(1)
            started = time.monotonic()
            worker = _worker_pid(server.pid)
            cpu_before = cpu_seconds(server.pid), cpu_seconds(worker)
            timings = asyncio.run(_burst(port, burst))
            cpu_used = cpu_seconds(server.pid) - cpu_before[0], cpu_seconds(worker) - cpu_before[1]
            slack.wait_for(lambda: sum(BUYER_LINE in m["text"] for m in slack.messages) >= len(talkers),
                           timeout=delay * 4 + 120)
            replies_s = time.monotonic() - started
            slack.wait_for(lambda: len({m["channel"] for m in slack.messages if not m.get("thread_ts")})
                           >= len(users), timeout=120)
            opened_s = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"slack": _summary(timings), "replies": _summary(timings[: len(talkers)]),
            "clicks": _summary(timings[len(talkers):]), "healthz": _summary(baseline),
            "bolt_only": _summary(bolt_only),
            "web_cpu_s_in_burst": round(cpu_used[0], 2), "worker_cpu_s_in_burst": round(cpu_used[1], 2),
            "buyer_replies_delivered_s": round(replies_s, 1), "picked_drills_opened_s": round(opened_s, 1)}


def _worker_pid(pid: int) -> int:
    """The `rehearse worker` that `rehearse serve` started (its one child, from whichever of its threads)."""
    return next(int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split())


def _summary(timings: list[tuple[float, int]]) -> dict:
    acks = sorted(t for t, _ in timings)
    return {"p50": statistics.median(acks), "p99": acks[max(0, int(len(acks) * 0.99) - 1)], "max": acks[-1],
            "over_3s": sum(a > 3 for a in acks), "statuses": {s for _, s in timings}}


def _signed_requests(url: str, make) -> list[bytes]:  # noqa: ANN001
    """The raw HTTP requests `make(driver)` would send, signed now, captured instead of sent."""
    captured: list[bytes] = []

    def capture(request: httpx.Request) -> httpx.Response:
        captured.append(_raw_request(request.method, str(request.url), dict(request.headers), request.content))
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(capture)) as http:
        list(make(SlackDriver(url, SECRET, http)))
    return captured


def _raw_request(method: str, url: str, headers: dict[str, str], body: bytes) -> bytes:
    target = httpx.URL(url)
    lines = [f"{method} {target.raw_path.decode()} HTTP/1.1", f"Host: {target.host}:{target.port}",
             *(f"{k}: {v}" for k, v in headers.items() if k.lower() not in {"host", "content-length", "connection"}),
             f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + body


async def _burst(port: int, requests: list[bytes]) -> list[tuple[float, int]]:
    """Open a connection per request, then send them all at once; each one's time to its full answer."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in requests]

    async def one(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes) -> tuple[float, int]:
        reader, writer = conn
        begun = time.monotonic()
        writer.write(raw)
        answer = await reader.read()  # Connection: close, so the whole answer
        elapsed = time.monotonic() - begun
        writer.close()
        return elapsed, int(answer.split(b" ", 2)[1]) if answer else 0

    return await asyncio.gather(*(one(c, r) for c, r in zip(connections, requests, strict=True)))


def _open_threads(driver: SlackDriver, slack: SlackStandIn, users: list[str]) -> dict[str, tuple[str, str]]:
    """A practice thread per rep, opened the way a rep does (`/drill price-objection` starts it in the DM)."""
    for user in users:
        driver.command(ids.DRILL_COMMAND, user=user, text="price-objection")
    slack.wait_for(lambda: sum(1 for m in slack.messages if not m.get("thread_ts")) >= len(users), timeout=120)
    threads = {"U" + m["channel"][1:]: (m["channel"], m["ts"]) for m in slack.messages if not m.get("thread_ts")}
    slack.wait_for(lambda: sum(1 for m in slack.messages if m.get("thread_ts")) >= 2 * len(users), timeout=300)
    return threads


if __name__ == "__main__":
    main(*(int(sys.argv[1]),) if len(sys.argv) > 1 else (), *(float(sys.argv[2]),) if len(sys.argv) > 2 else (),
         *(int(sys.argv[3]),) if len(sys.argv) > 3 else ())
