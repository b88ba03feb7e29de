"""Time `conversation_metrics` on synthetic calls: `python bench/bench_metrics.py [calls] [turns]`."""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass

from bot.nudges.metrics import conversation_metrics

LINES = ["mm-hm", "How's the quarter going?", "what do you use today", "Our platform integrates with everything.",
         "So walk me through the last rollout.", "Let's book Tuesday at 2pm.", "I'll send an invite.", "Right."]


@dataclass(frozen=True, slots=True)
class Turn:
    speaker: str
    start_s: float
    end_s: float
    text: str


def synthetic_call(rng: random.Random, turns: int) -> list[Turn]:
    """Alternating sides with short pauses, some crosstalk and backchannels."""
    call, clock = [], 0.0
    for i in range(turns):
        speaker = "rep" if i % 2 == 0 else rng.choice(["customer", "buyer"])
        length = rng.choice([0.6, 1.2]) if rng.random() < 0.3 else rng.uniform(2, 40)
        clock += rng.uniform(-0.5, 2.5)
        call.append(Turn(speaker, max(clock, 0.0), max(clock, 0.0) + length, rng.choice(LINES)))
        clock += length
    return call


def main(calls: int = 10_000, turns: int = 200) -> None:
    rng = random.Random(7)
    elapsed = 0.0
    for _ in range(calls):
        call = synthetic_call(rng, turns)  # built outside the timed section
        began = time.perf_counter()
        conversation_metrics(call)
        elapsed += time.perf_counter() - began
    print(f"{calls} calls x {turns} turns: {elapsed:.2f} s, {calls / elapsed:,.0f} calls/s")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
