"""Grading a finished roleplay against the scenario rubric, with verbatim evidence from the rep's turns.

Graders decide levels and quote evidence; the score, the pass and the summary are computed here in code
(``assemble_grade``), so a model-backed grader and the rule-based one share the same arithmetic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from bot.practice.roleplay import (
    SentenceMoves,
    Turn,
    fold,
    phrase_pattern,
    rep_moves,
    sentence_moves,
    turn_level_quote,
)
from bot.practice.scenarios import TURN_LEVEL_MOVES, Checks, RubricCriterion, Scenario

MAX_EVIDENCE = 2
_QUOTE_CHARS = 110


@dataclass(frozen=True)
class CriterionGrade:
    criterion: str
    label: str
    level: int
    evidence: tuple[str, ...]
    feedback: str


@dataclass(frozen=True)
class Grade:
    criteria: tuple[CriterionGrade, ...]
    score: int
    passed: bool
    summary: str


class Grader(Protocol):
    def grade(self, scenario: Scenario, turns: Sequence[Turn]) -> Grade: ...


def weighted_level(levels_and_weights: Iterable[tuple[int, float]]) -> float:
    """Weighted mean of rubric levels (1-4); weights need not sum to 1."""
    pairs = list(levels_and_weights)
    total = math.fsum(weight for _, weight in pairs)
    if not pairs or total <= 0:
        raise ValueError("need at least one level with a positive weight")
    for level, _ in pairs:
        if not 1 <= level <= 4:
            raise ValueError(f"level {level} is outside 1-4")
    return round(math.fsum(level * weight for level, weight in pairs) / total, 9)


def weighted_score(levels_and_weights: Iterable[tuple[int, float]]) -> int:
    """The 0-100 score: the weighted mean level mapped 1 -> 25 ... 4 -> 100, rounded half up."""
    return math.floor(weighted_level(levels_and_weights) * 25 + 0.5)


def assemble_grade(scenario: Scenario, criteria: Sequence[CriterionGrade]) -> Grade:
    """Score, pass and summary for per-criterion grades, weighted by the scenario's rubric."""
    weights = {criterion.id: criterion.weight for criterion in scenario.rubric}
    pairs = [(grade.level, weights[grade.criterion]) for grade in criteria]
    mean = weighted_level(pairs)
    score = weighted_score(pairs)
    passed = mean >= scenario.level
    summary = _summary(scenario, criteria, score, passed)
    return Grade(criteria=tuple(criteria), score=score, passed=passed, summary=summary)


class HeuristicGrader:
    """Applies each rubric criterion's checks deterministically to the rep's turns."""

    def grade(self, scenario: Scenario, turns: Sequence[Turn]) -> Grade:
        """Grade every rubric criterion, then assemble the score in code."""
        said = [turn.text for turn in turns if turn.role == "rep" and "done" not in rep_moves(turn.text)]
        return assemble_grade(scenario, [grade_criterion(criterion, said) for criterion in scenario.rubric])


@lru_cache(maxsize=256)
def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    return phrase_pattern(phrases)


def _matches(checks: Checks, sentence: SentenceMoves) -> str | None:
    """The verbatim evidence if this sentence satisfies the criterion's positive checks."""
    results = []
    phrases = _pattern(checks.any_phrases)
    if phrases is not None:
        results.append(bool(phrases.search(fold(sentence.text))))
    if checks.moves:
        results.append(bool(sentence.moves.intersection(checks.moves)))
    if checks.numbers:
        results.append("quantified" in sentence.moves)
    if not results or not (all(results) if checks.match == "all" else any(results)):
        return None
    return sentence.text


def _unique(quotes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(quotes))


def _positive(checks: Checks, said: Sequence[str]) -> list[str]:
    hits = []
    for turn in said:
        for i, sentence in enumerate(sentence_moves(turn)):
            if checks.turn_start and i > 0:
                break
            quote = _matches(checks, sentence)
            if quote:
                hits.append(quote)
    return _unique(hits)


def _offending(checks: Checks, said: Sequence[str]) -> list[str]:
    """Verbatim sentences that break the criterion's forbid_phrases or forbid_moves."""
    forbidden = _pattern(checks.forbid_phrases)
    forbid_moves = set(checks.forbid_moves) - TURN_LEVEL_MOVES

    def breaks(sentence: SentenceMoves) -> bool:
        said_forbidden = forbidden is not None and forbidden.search(fold(sentence.text)) is not None
        return said_forbidden or bool(sentence.moves & forbid_moves)

    found = []
    for turn in said:
        in_turn = [sentence.text for sentence in sentence_moves(turn) if breaks(sentence)]
        turn_moves = sorted(rep_moves(turn).intersection(checks.forbid_moves) & TURN_LEVEL_MOVES)
        if not in_turn and turn_moves:
            in_turn = [turn_level_quote(turn, turn_moves[0])]
        found.extend(in_turn)
    return _unique(found)


def _count_level(hits: int, checks: Checks) -> int:
    if hits == 0:
        return 1
    if hits < checks.min_count:
        return 2
    return 3 if hits < checks.strong else 4


def _brevity_level(share: float) -> int:
    if share >= 1:
        return 4
    if share >= 0.75:
        return 3
    return 2 if share >= 0.5 else 1


def grade_criterion(criterion: RubricCriterion, said: Sequence[str]) -> CriterionGrade:
    """Level, evidence and feedback for one criterion over the rep's turns (``said``), by its checks."""
    checks = criterion.checks
    offending = _offending(checks, said)
    hits = [quote for quote in _positive(checks, said) if quote not in offending]
    has_matchers = bool(checks.any_phrases or checks.moves or checks.numbers)
    level = _count_level(len(hits), checks) if has_matchers else 4
    longest: tuple[int, str] | None = None
    if checks.max_words:
        counts = [(len(turn.split()), turn) for turn in said]
        short = [turn.strip() for count, turn in counts if count <= checks.max_words]
        level = min(level, _brevity_level(len(short) / len(said)) if said else 1)
        over = [pair for pair in counts if pair[0] > checks.max_words]
        longest = max(over, key=lambda pair: pair[0]) if over else None
        if not has_matchers:
            hits = short
    if offending:
        level = min(level, 2) if hits else 1

    if offending:
        evidence = [offending[0], *hits[:1]]
        feedback = f'"{_clip(offending[0])}" worked against you here.'
    elif longest is not None:
        opening = turn_level_quote(longest[1], "long_turn")
        evidence = [opening, *hits[:1]]
        feedback = (
            f'Your longest turn ran {longest[0]} words, starting "{_clip(opening)}"; '
            f"keep each turn under {checks.max_words} words."
        )
    elif hits:
        evidence = hits[:MAX_EVIDENCE]
        feedback = f"Landed: {_quoted(hits[0])}"
    else:
        evidence = []
        level = 1
        feedback = f"No line of yours {_lower_first(criterion.label)}."
    if level == 4:
        feedback += f" That is level 4: {_behaviour(criterion, 4)}."
    else:
        target = 3 if level < 3 else 4
        feedback += f" To reach level {target}: {_behaviour(criterion, target)}."
    return CriterionGrade(
        criterion=criterion.id,
        label=criterion.label,
        level=level,
        evidence=tuple(_unique(evidence))[:MAX_EVIDENCE],
        feedback=feedback,
    )


def _lower_first(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _behaviour(criterion: RubricCriterion, level: int) -> str:
    return _lower_first(criterion.levels[level])


def _quoted(quote: str) -> str:
    """The rep's words in quotes, clipped, with a full stop after unless they end a sentence already."""
    clipped = _clip(quote)
    return f'"{clipped}"' + ("" if clipped[-1:] in ".!?\u2026" else ".")


def _clip(quote: str) -> str:
    quote = " ".join(quote.split())
    if len(quote) <= _QUOTE_CHARS:
        return quote
    return quote[:_QUOTE_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "\u2026"


def _summary(scenario: Scenario, criteria: Sequence[CriterionGrade], score: int, passed: bool) -> str:
    verdict = "Passed" if passed else "Not yet"
    text = f"{verdict}: {score}/100 on {scenario.title} (passing is level {scenario.level} of 4)."
    if not criteria:
        return text
    weights = {criterion.id: criterion.weight for criterion in scenario.rubric}
    strongest = max(criteria, key=lambda grade: (grade.level, weights[grade.criterion]))
    weakest = min(criteria, key=lambda grade: (grade.level, -weights[grade.criterion]))
    if strongest.level >= 3:
        text += f" Strongest: {_lower_first(strongest.label)} (level {strongest.level})."
    if weakest.level < 4 and weakest is not strongest:
        text += f" Work on: {_lower_first(weakest.label)} (level {weakest.level})."
    return text
