"""Conversation metrics computed from a diarized transcript, for call sources that send none.

Pure functions over turns (speaker, start_s, end_s, text): no clock, no I/O. Thresholds follow
DOMAIN_NOTES "Conversation metrics from diarized turns".
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

MERGE_GAP_S = 1.5  # a pause shorter than this does not end a monologue
BACKCHANNEL_S = 2.0  # nor does the other side's "mm-hm" or cough shorter than this
NEXT_STEP_WINDOW = 0.10  # the share of the call, at its end, searched for a next step

Interval = tuple[float, float]

_FILLER = r"(?:(?:so|and|but|okay|ok|well|now|um|uh)\b[,\s]*)*"  # "So, what ..." still opens a question
_OPENER = (r"who|what|when|where|why|how|which|could you|can you|would you|do you|does|is there|are you"
           r"|tell me|walk me through")
# An opener counts at the start of any sentence in the turn, not only the turn's first word.
_QUESTION = re.compile(rf"(?:^|[.!;:\n])\s*{_FILLER}(?:{_OPENER})\b", re.IGNORECASE)

_MONTH = (r"(?:january|jan|february|feb|march|mar|april|apr|may|june|jun|july|jul|august|aug"
          r"|september|sept|sep|october|oct|november|nov|december|dec)")
_ORDINAL = r"\d{1,2}(?:st|nd|rd|th)"
# Patterns use literal spaces: turns are whitespace-normalised and joined with "\n", so no match spans two turns.
# "today" is left out on purpose: "thanks for your time today, let's stay in touch" is a goodbye, not a next step.
_DATE = re.compile(
    rf"\b(?:(?:mon|tues|tue|wednes|thurs|thur|thu|fri|satur|sun)day|tomorrow|(?:this|next) (?:week|month|quarter)"
    rf"|end of (?:the )?(?:day|week|month)|eod|eow|in (?:a|an|one|two|three|\d+|a few|a couple of) (?:days?|weeks?)"
    rf"|{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?\b|{_ORDINAL} of {_MONTH}|the {_ORDINAL}\b"
    rf"|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?|\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|\d{{1,2}}(?::\d{{2}})? ?(?:am|pm|a\.m\.|p\.m\.)|\d{{1,2}}:\d{{2}}|noon"
    rf"|(?:at|around) \d{{1,2}}(?::\d{{2}})?\b(?! ?(?:%|percent)))"
)
_COMMITMENT = re.compile(
    r"\b(?:let's|let us|(?:i|we)(?:'ll| will) send|calendar|invit(?:e|es|ed|ation)|schedul(?:e|ed|ing)"
    r"|book(?:ed|ing)?|set(?:ting)? ?up|follow(?:ing)?[- ]?up)\b"
)


class Turn(Protocol):
    """One diarized turn; `bot.nudges.adapters.TranscriptTurn` is one."""

    @property
    def speaker(self) -> str: ...
    @property
    def start_s(self) -> float: ...
    @property
    def end_s(self) -> float: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class ConversationMetrics:
    talk_ratio: float | None  # rep speech / (rep speech + other side's speech); None without speech
    longest_monologue_s: float
    longest_customer_story_s: float
    questions: int  # rep turns that ask a question
    patience_s: float | None  # mean pause before the rep answers; None without a positive hand-off
    next_step: bool

    def as_dict(self) -> dict[str, float]:
        """The metrics in the `ScoredCall.metrics` shape (the keys the Gong adapter uses); None left out."""
        values = {
            "talk_ratio": self.talk_ratio, "longest_monologue_s": self.longest_monologue_s,
            "longest_customer_story_s": self.longest_customer_story_s, "questions": float(self.questions),
            "patience_s": self.patience_s, "next_step": float(self.next_step),
        }
        return {key: value for key, value in values.items() if value is not None}


def conversation_metrics(
    turns: Iterable[Turn], *, rep_speakers: frozenset[str] = frozenset({"rep"})
) -> ConversationMetrics:
    """Talk ratio, longest monologue and customer story, questions, patience and next step of one call."""
    reps = {speaker.strip().casefold() for speaker in rep_speakers}  # "Rep" and " rep" are still the rep
    # A turn without a positive, finite duration (end before start included) is not evidence of speech: skipped.
    timed = [t for t in turns if math.isfinite(t.start_s) and math.isfinite(t.end_s) and t.end_s > t.start_s]
    by_rep = [t for t in timed if t.speaker.strip().casefold() in reps]
    rep = _union([(t.start_s, t.end_s) for t in by_rep])
    other = _union([(t.start_s, t.end_s) for t in timed if t.speaker.strip().casefold() not in reps])
    rep_s, other_s = sum(e - s for s, e in rep), sum(e - s for s, e in other)
    return ConversationMetrics(
        # Crosstalk counts for both sides, so the customer's share is exactly 1 - talk_ratio (talk:listen).
        talk_ratio=rep_s / (rep_s + other_s) if rep_s + other_s > 0 else None,
        longest_monologue_s=_longest_run(rep, other),
        longest_customer_story_s=_longest_run(other, rep),
        questions=sum(1 for t in by_rep if "?" in t.text or _QUESTION.search(t.text)),
        patience_s=_patience(rep, other),
        next_step=_next_step(timed),
    )


def _union(intervals: list[Interval]) -> list[Interval]:
    """Sorted, disjoint blocks; touching intervals merge, so splitting a turn in two changes nothing."""
    blocks: list[Interval] = []
    for start, end in sorted(intervals):
        if blocks and start <= blocks[-1][1]:
            blocks[-1] = (blocks[-1][0], max(blocks[-1][1], end))
        else:
            blocks.append((start, end))
    return blocks


def _longest_run(own: list[Interval], other: list[Interval]) -> float:
    """Longest span of one side's speech, bridging short pauses and the other side's backchannels."""
    other_ends = [end for _, end in other]
    longest, run_start, previous_end = 0.0, 0.0, -math.inf
    for start, end in own:
        if previous_end == -math.inf or _breaks(previous_end, start, other, other_ends):
            run_start = start
        longest = max(longest, end - run_start)
        previous_end = end
    return longest


def _breaks(gap_start: float, gap_end: float, other: list[Interval], other_ends: list[float]) -> bool:
    """Whether a gap in one side's speech ends its run: the other side speaks >= 2 s in it, or silence >= 1.5 s."""
    # A backchannel bridges the gap (it is neither silence nor an interruption), so a 1.8 s cough between two
    # stretches of rep speech keeps one monologue; only the silent stretches around it are held to 1.5 s.
    cursor = gap_start
    for i in range(bisect_right(other_ends, gap_start), len(other)):
        start, end = other[i]
        if start >= gap_end:
            break
        if end - start >= BACKCHANNEL_S or start - cursor >= MERGE_GAP_S:
            return True
        cursor = max(cursor, end)
    return gap_end - cursor >= MERGE_GAP_S


def _patience(rep: list[Interval], other: list[Interval]) -> float | None:
    """Mean pause between the other side falling silent and the rep speaking next, over positive pauses only."""
    # Computed on merged blocks, not raw turns, so a customer turn split in two is still one hand-off.
    other_ends = [end for _, end in other]
    pauses: list[float] = []
    previous_rep_end = -math.inf
    for start, end in rep:
        last = bisect_right(other_ends, start) - 1  # the other side's last block that ended by `start`
        still_talking = last + 1 < len(other) and other[last + 1][0] < start  # the rep cut in: negative pause
        if last >= 0 and not still_talking and other_ends[last] > previous_rep_end and start > other_ends[last]:
            pauses.append(start - other_ends[last])
        previous_rep_end = end
    return sum(pauses) / len(pauses) if pauses else None


def _next_step(timed: Sequence[Turn]) -> bool:
    """A date or time and a commitment phrase, said by either side, in the last 10% of the call."""
    if not timed:
        return False
    call_start, call_end = min(t.start_s for t in timed), max(t.end_s for t in timed)
    cutoff = call_end - NEXT_STEP_WINDOW * (call_end - call_start)
    # Any turn still running at the cutoff counts, and the two parts may come from different turns:
    # "Tuesday at 2 works" from the buyer, then "I'll send the invite" from the rep, is the usual shape.
    text = "\n".join(" ".join(t.text.split()) for t in timed if t.end_s > cutoff).replace("\u2019", "'").casefold()
    return bool(_DATE.search(text) and _COMMITMENT.search(text))
