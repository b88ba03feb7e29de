"""Signal to approval: from a scored call's webhook request to the manager's approval message reaching Slack.

`rehearse serve` runs in its own process (SQLite) against the Slack Web API stand-in, which runs in this process so
that both ends are timed on the same monotonic clock. 400 reps in 20 teams, each team with its own approvals
channel, each rep with 10 good calls of history (loaded beforehand with `rehearse ingest`). Then scored calls
arrive at `POST /webhooks/calls` at a steady RATE per second for SECONDS, one call per request, each on its own
connection, signed. 100 reps (5 per team) get three low objection-handling scores among them, spread through
the period; the third completes the signal (3 calls in a row under 60%), so a nudge is made and its approval
message is queued and posted to the team's approvals channel. Every other call scores well.

Measured per signal-completing call: from just before its request is written to the moment the stand-in
receives the `chat.postMessage` to the team's approvals channel naming that rep. Baseline: the webhook's own
answer time (request written to 202 read) for every call of the same run.

Slack allows about 1 message a second per channel: with 20 approvals channels and a signal every 0.6 s or so,
a channel gets a new approval about every 12 s, so the channel limit (and the sender's pacing) is not what is
measured.

    python bench/bench_signal_to_approval.py [seconds] [runs] [rate]     # default: 60 5 20
"""

from __future__ import annotations

import asyncio
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import coach_config, cpu_model, read_answer, scored_call, server_env, wait_healthy  # noqa: E402
from bench_ingest import webhook_request as signed_request  # noqa: E402

from bot.app import free_port  # noqa: E402
from bot.demo.slack_standin import SlackStandIn  # noqa: E402

TEAMS, REPS_PER_TEAM, SIGNAL_REPS_PER_TEAM, HISTORY = 20, 20, 5, 10
CRITERION = "objection_handling"


def plan(seconds: int, rate: int, seed: int = 20) -> tuple[list[list[str]], list[dict], list[dict], dict[int, str]]:
    """Teams, the history calls, the steady stream (in sending order), and {stream position: rep} for the
    calls that complete a signal."""
    rng = random.Random(seed)
    teams = [[f"U0S{t:02d}R{r:03d}" for r in range(REPS_PER_TEAM)] for t in range(TEAMS)]
    signal_reps = [team[r] for r in range(SIGNAL_REPS_PER_TEAM) for team in teams]  # alternates teams
    quiet_reps = [rep for team in teams for rep in team[SIGNAL_REPS_PER_TEAM:]]
    now = datetime.now(UTC).replace(microsecond=0)
    history, number = [], 0
    for rep in [rep for team in teams for rep in team]:
        for day in range(HISTORY, 0, -1):
            history.append(scored_call(rng, number, rep, now - timedelta(days=day + 1), weak=None))
            number += 1
    for call in history:  # no low score in the history: the stream's third low call is what completes a signal
        for score in call["scores"]:
            score["score"] = max(score["score"], 62)
    total = seconds * rate
    spacing = (total - 1) // (len(signal_reps) + 2)  # the third low call of each signal rep, evenly spread
    third_offset, gap = 2 * (spacing // 3) + 1, spacing // 3
    lows: dict[int, str] = {}
    completes: dict[int, str] = {}
    for k, rep in enumerate(signal_reps):
        third = third_offset + 1 + k * spacing
        if third >= total:
            break
        for position in (third - 2 * gap, third - gap, third):
            lows[position] = rep
        completes[third] = rep
    stream = []
    for position in range(total):
        rep = lows.get(position) or rng.choice(quiet_reps)
        call = scored_call(rng, number + position, rep, now - timedelta(hours=12) + timedelta(seconds=position),
                           weak=None)
        if position in lows:
            for score in call["scores"]:
                if score["criterion"] == CRITERION:
                    score["score"] = rng.randint(25, 50)
                    score["evidence"] = [{"quote": "I guess we could knock 20% off", "at_s": rng.randint(60, 900)}]
        stream.append(call)
    return teams, history, stream, completes


async def send_stream(port: int, bodies: list[bytes], rate: int) -> tuple[list[float], list[float], list[int]]:
    """Each request on its own connection at its slot (rate per second); (sent at, answer seconds, status)."""
    sent = [0.0] * len(bodies)
    answered = [0.0] * len(bodies)
    statuses = [0] * len(bodies)

    async def one(index: int, body: bytes, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = signed_request(port, body)
        sent[index] = time.monotonic()
        writer.write(raw)
        status, _ = await read_answer(reader)
        answered[index] = time.monotonic() - sent[index]
        statuses[index] = status
        writer.close()

    start = time.monotonic() + 0.5
    await asyncio.gather(*(one(i, b, start + i / rate) for i, b in enumerate(bodies)))
    return sent, answered, statuses


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))]


def one_run(seconds: int, rate: int) -> dict:
    teams, history, stream, completes = plan(seconds, rate)
    channels = [f"C0APPR{t:04d}" for t in range(TEAMS)]
    channel_of = {rep: channels[t] for t, team in enumerate(teams) for rep in team}
    with tempfile.TemporaryDirectory() as tmp_name, SlackStandIn() as slack:
        tmp = Path(tmp_name)
        config = tmp / "coach.yaml"
        config.write_text(json.dumps(coach_config(teams, approvals_channels=channels, talk_ratio_rule=False)))
        (tmp / "history.jsonl").write_text("".join(json.dumps(c) + "\n" for c in history))
        port = free_port()
        env = server_env(slack, f"sqlite:///{tmp / 'bench.db'}", config, port)
        subprocess.run([sys.executable, "-m", "bot", "ingest", str(tmp / "history.jsonl")], env=env, check=True,
                       capture_output=True)
        server = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--no-verbose"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", server)
            if os.environ.get("BENCH_PROFILE"):
                subprocess.Popen(["py-spy", "record", "-r", "200", "-d", str(seconds), "-f", "raw",
                                  "-o", os.environ["BENCH_PROFILE"], "--pid", str(server.pid)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            bodies = [json.dumps(c, separators=(",", ":")).encode() for c in stream]
            sent, answered, statuses = asyncio.run(send_stream(port, bodies, rate))
            wanted = set(completes.values())

            def approvals() -> dict[str, float]:
                found = {}
                for call in slack.calls_to("chat.postMessage"):
                    text = json.dumps(call.params)
                    for rep in wanted:
                        if f"<@{rep}>" in text and call.params.get("channel") == channel_of[rep]:
                            found.setdefault(rep, call.at)
                return found

            slack.wait_for(lambda: len(approvals()) >= len(wanted), timeout=60)
            received = approvals()
        finally:
            server.terminate()
            server.wait(timeout=30)
    latencies = [received[rep] - sent[position] for position, rep in completes.items()]
    return {"signals": len(latencies), "requests": len(stream), "statuses": sorted(set(statuses)),
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percentile(latencies, 99),
            "max_ms": 1000 * max(latencies),
            "webhook_p50_ms": 1000 * statistics.median(answered), "webhook_p99_ms": 1000 * percentile(answered, 99),
            "stream_s": max(sent) - min(sent)}


def main(seconds: int = 60, runs: int = 5, rate: int = 20) -> None:
    results = []
    for number in range(runs):
        result = one_run(seconds, rate)
        results.append(result)
        print(f"run {number + 1}: " + json.dumps(result, default=lambda v: round(v, 1)), flush=True)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(f"\n{rate} calls/s for {seconds} s, {results[0]['signals']} signal-completing calls per run, {runs} run(s), "
          f"median of runs; {os.cpu_count()} CPUs, {cpu_model()}")
    print(f"webhook request -> approval chat.postMessage at the stand-in: p50 {median('p50_ms'):.1f} ms, "
          f"p99 {median('p99_ms'):.1f} ms (targets 50 and 250 ms); worst of runs "
          f"{max(r['max_ms'] for r in results):.1f} ms")
    print(f"baseline, the webhook's answer (all calls): p50 {median('webhook_p50_ms'):.1f} ms, "
          f"p99 {median('webhook_p99_ms'):.1f} ms; ratio p50 {median('p50_ms') / median('webhook_p50_ms'):.1f}, "
          f"p99 {median('p99_ms') / median('webhook_p99_ms'):.1f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
