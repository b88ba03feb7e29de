"""Time `rehearse calibrate` on a generated history: `python bench/bench_calibrate.py [calls] [runs]`.

Writes a seeded history (about 500 reps over a year, generic v1 JSONL) and a coach.yaml to a temp directory,
then reports the median of `runs` runs of: reading the file alone (the baseline), `replay` in-process,
`calibrate` in-process (the current settings and every criterion's alternative thresholds), and
`rehearse calibrate FILE --json` end to end in a subprocess.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from bot.config import parse_config
from bot.nudges.calibration import calibrate, calibration_passes, replay
from bot.nudges.call_files import read_call_file

CRITERIA = ("objection_handling", "discovery", "closing", "multi_threading")
TEAMS = ("west", "east", "central", "emea", "apac")
START = datetime(2025, 1, 6, tzinfo=UTC)
CALL_TYPES = ("discovery", "demo", "negotiation")


def coach_config(reps_per_team: int) -> dict:
    return {
        "teams": [{"id": team, "managers": ["U0MANAGER"], "approvals_channel": "C0APPROVALS",
                   "reps": [f"rep{t}-{i}@example.com" for i in range(reps_per_team)]}
                  for t, team in enumerate(TEAMS)],
        "criteria": {
            "objection_handling": {"weight": 3, "threshold": 60, "scenario": "price-objection"},
            "discovery": {"weight": 2, "threshold": 60, "scenario": "discovery-impact"},
            "closing": {"baseline_percentile": 20, "scenario": "stall-think-about-it"},
            "multi_threading": {"threshold": 55, "scenario": "multithread-champion"},
        },
        "metric_rules": {
            "over_talking": {"metric": "talk_ratio", "above": 0.65, "scenario": "active-listening"},
            "few_questions": {"metric": "questions", "below": 6, "call_types": ["discovery"],
                              "scenario": "discovery-impact"},
        },
        "priorities": [{"name": "Land discovery", "criteria": ["discovery"], "boost": 1.5}],
    }


def history(calls: int, reps_per_team: int, *, seed: int = 7, days: int = 365) -> list[dict]:
    """Seeded calls spread over `days`; one rep in ten is weak on one or two criteria."""
    rng = random.Random(seed)
    reps = [f"rep{t}-{i}@example.com" for t in range(len(TEAMS)) for i in range(reps_per_team)]
    skill = {}
    for rep in reps:
        means = {c: rng.gauss(72, 8) for c in CRITERIA}
        if rng.random() < 0.1:
            for c in rng.sample(CRITERIA, rng.choice((1, 2))):
                means[c] = rng.gauss(52, 5)
        skill[rep] = (means, rng.gauss(0.55, 0.07), rng.gauss(9, 2.5))
    out = []
    for n in range(calls):
        rep = reps[n % len(reps)]
        means, talk, questions = skill[rep]
        started = START + timedelta(days=rng.uniform(0, days))
        call_type = rng.choice(CALL_TYPES)
        scores = []
        for criterion in CRITERIA:
            score = round(min(100.0, max(0.0, rng.gauss(means[criterion], 12))))
            evidence = [{"quote": "We can probably take 20% off if you sign today.", "at_s": 754}] if score < 60 else []
            scores.append({"criterion": criterion, "score": score, "max": 100, "evidence": evidence})
        out.append({
            "call_id": f"c-{n}", "source": "generic", "rep": rep, "started_at": started.isoformat(),
            "duration_s": 1800, "title": f"Acme - {call_type}", "call_type": call_type,
            "recording_url": f"https://ci.example.com/calls/{n}", "scores": scores,
            "metrics": {"talk_ratio": round(min(1.0, max(0.0, rng.gauss(talk, 0.07))), 3),
                        "questions": max(0, round(rng.gauss(questions, 3)))},
        })
    return out


def median_time(runs: int, job: Callable[[], object]) -> float:
    """Median wall time of `job`, with the cyclic collector paused as `rehearse calibrate` pauses it."""
    times = []
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            began = time.perf_counter()
            job()
            times.append(time.perf_counter() - began)
        finally:
            gc.enable()
    return statistics.median(times)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()}"


def main(calls: int = 100_000, runs: int = 5) -> None:
    reps_per_team = 100
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        data, config_path = Path(tmp) / "history.jsonl", Path(tmp) / "coach.yaml"
        data.write_text("".join(json.dumps(c) + "\n" for c in history(calls, reps_per_team)), encoding="utf-8")
        config_path.write_text(yaml.safe_dump(coach_config(reps_per_team)), encoding="utf-8")
        config = parse_config(yaml.safe_load(config_path.read_text(encoding="utf-8")))
        command = [sys.executable, "-m", "bot", "calibrate", str(data), "--json", "--config", str(config_path)]
        parsed = read_call_file(data)
        replays = calibration_passes(config) - 1

        read = median_time(runs, lambda: read_call_file(data))
        one = median_time(runs, lambda: replay(parsed, config))
        full = median_time(runs, lambda: calibrate(parsed, config, workers=workers))
        cli = median_time(runs, lambda: subprocess.run(command, check=True, capture_output=True))
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)

    print(f"machine: {machine()}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d}")
    print(f"history: {calls:,} calls, {len(TEAMS) * reps_per_team} reps, 1 year, {len(CRITERIA)} criteria "
          f"(1 calibrated) and 2 metric rules; median of {runs} runs")
    rows = [
        ("baseline: reading the file (read_call_file)", read),
        ("replay, current settings (in-process)", one),
        (f"calibrate, current + {replays - 1} alternative replays, {workers} workers (in-process)", full),
        ("rehearse calibrate FILE --json (subprocess, end to end)", cli),
    ]
    for label, seconds in rows:
        print(f"{label:<72} {seconds:6.2f} s")
    print(f"end to end / baseline: {cli / read:.1f}x; {calls / cli:,.0f} calls/s end to end")
    print(f"weekly cap {result['weekly_cap']}: the most nudges any rep got in 7 days was {result['max_nudges_7d']} "
          f"({'holds' if result['cap_holds'] else 'EXCEEDED'})")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
