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

from bot.practice.scenarios import TURN_LEVEL_MOVES, Checks, RubricCriterion, Scenario
from bot.practice.substance import MONOLOGUE_WORDS, WHY_NOTHING, Reading, RepLine, read
from bot.practice.transcript import Turn, fold, phrase_pattern, rep_moves, turn_level_quote

MAX_EVIDENCE = 2
_QUOTE_CHARS = 110


@dataclass(frozen=True)
class CriterionGrade:
    criterion: str
    label: str
    level: int
    evidence: tuple[str, ...]
    feedback: str  # why this level, then what the next level asks; the quotes are in ``evidence``, never here
    against: bool = False  # the first quote is cited because it worked against the rep or earned nothing
    why: str = ""  # the first part of ``feedback``: why this level, in one sentence


@dataclass(frozen=True)
class Fault:
    """A line that fails the attempt whatever else went well: a ``must_not`` move or an instruction to the grader."""

    quote: str
    why: str


@dataclass(frozen=True)
class Grade:
    criteria: tuple[CriterionGrade, ...]
    score: int
    passed: bool
    summary: str
    faults: tuple[Fault, ...] = ()


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


def assemble_grade(scenario: Scenario, criteria: Sequence[CriterionGrade], faults: Sequence[Fault] = ()) -> Grade:
    """Score, pass and summary for per-criterion grades, weighted by the scenario's rubric; a fault caps the score
    below the pass mark."""
    weights = {criterion.id: criterion.weight for criterion in scenario.rubric}
    pairs = [(grade.level, weights[grade.criterion]) for grade in criteria]
    score = weighted_score(pairs)
    passed = weighted_level(pairs) >= scenario.level and not faults
    if faults:
        score = min(score, scenario.level * 25 - 1)
    summary = _summary(scenario, criteria, score, passed, faults)
    return Grade(criteria=tuple(criteria), score=score, passed=passed, summary=summary, faults=tuple(faults))


_MUST_NOT_WHY = {
    "discount": "offers a discount or a lower number, which this drill is about not doing",
    "pressure": "pushes with a deadline, which this drill is about not doing",
    "pitch": "pitches features, which this drill is about not doing",
    "long_turn": "runs long, which this drill is about not doing",
}


def faults_of(scenario: Scenario, reading: Reading) -> list[Fault]:
    """Every line that fails the attempt: an instruction to the grader, or a move the scenario must not see."""
    found = [Fault(line.text, WHY_NOTHING["instruction"]) for line in reading.flawed("instruction")]
    must_not = set(scenario.must_not)
    for line in reading.lines:
        for move in sorted(must_not & line.moves):
            found.append(Fault(line.text, _MUST_NOT_WHY.get(move, f"is a {move.replace('_', ' ')}")))
    for turn in reading.turns:
        for move in sorted(must_not & TURN_LEVEL_MOVES & rep_moves(turn)):
            found.append(Fault(turn_level_quote(turn, move), _MUST_NOT_WHY.get(move, f"is a {move}")))
    unique: dict[str, Fault] = {}
    for fault in found:
        unique.setdefault(fault.quote, fault)
    return list(unique.values())


@dataclass(frozen=True)
class Attempt:
    """The rep's side of a roleplay as both graders see it: every line read in context, the faults that fail the
    attempt, and the lines that earn nothing on any criterion (faults, concessions, deadline closes, and what
    works against a criterion)."""

    reading: Reading
    faults: tuple[Fault, ...]
    faulted: frozenset[str]


def read_attempt(scenario: Scenario, turns: Sequence[Turn]) -> Attempt:
    reading = read(scenario, turns)
    faults = faults_of(scenario, reading)
    # A concession or a deadline close earns nothing anywhere: it is not a question, a figure or a next step.
    faulted = {fault.quote for fault in faults} | {line.text for line in reading.lines
                                                    if line.moves & {"discount", "pressure"}}
    for criterion in scenario.rubric:
        faulted.update(quote for quote, _ in _offending(criterion.checks, reading))
    return Attempt(reading, tuple(faults), frozenset(faulted))


class HeuristicGrader:
    """Applies each rubric criterion's checks deterministically to what the rep said of substance."""

    def grade(self, scenario: Scenario, turns: Sequence[Turn]) -> Grade:
        """Grade every rubric criterion, then assemble the score in code."""
        attempt = read_attempt(scenario, turns)
        criteria = [grade_criterion(criterion, attempt.reading, attempt.faulted) for criterion in scenario.rubric]
        return assemble_grade(scenario, criteria, attempt.faults)


@lru_cache(maxsize=256)
def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    return phrase_pattern(phrases)


def _matches(checks: Checks, line: RepLine) -> bool:
    """Whether this sentence shows the criterion's behaviour by its positive checks."""
    results = []
    phrases = _pattern(checks.any_phrases)
    if phrases is not None:
        results.append(bool(phrases.search(fold(line.text))))
    if checks.moves:
        results.append(bool(line.moves.intersection(checks.moves)))
    if checks.numbers:
        results.append("quantified" in line.moves)
    if checks.turn_start and not line.first:
        return False
    return bool(results) and (all(results) if checks.match == "all" else any(results))


def _touches(checks: Checks, line: RepLine) -> bool:
    """Whether a sentence names what a ``match: all`` criterion is about without the rest of it: a saving without
    its figure, Elaine without asking for her, a yes/no question about the decision. That is level 2."""
    phrases = _pattern(checks.any_phrases)
    return checks.match == "all" and phrases is not None and bool(phrases.search(fold(line.text)))


def shows_behaviour(checks: Checks, line: RepLine) -> bool:
    """Whether a sentence shows something of a criterion by its positive checks, whole or in part: what a model
    grader's quote for level 3 or 4 must do (a criterion with no such checks takes the model's word)."""
    if not (checks.any_phrases or checks.moves or checks.numbers):
        return True
    return _matches(checks, line) or _touches(checks, line)


def _unique(quotes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(quotes))


def _offending(checks: Checks, reading: Reading) -> list[tuple[str, str]]:
    """(verbatim sentence, why) for each line breaking the criterion's forbid_phrases or forbid_moves."""
    forbidden = _pattern(checks.forbid_phrases)
    forbid_moves = set(checks.forbid_moves) - TURN_LEVEL_MOVES
    found: list[tuple[str, str]] = []
    for line in reading.lines:
        said = forbidden.search(fold(line.text)) if forbidden is not None else None
        if said is not None:
            found.append((line.text, f'saying "{said.group(0)}" works against it'))
        elif line.moves & forbid_moves:
            found.append((line.text, _MOVE_AGAINST[sorted(line.moves & forbid_moves)[0]]))
    for turn in reading.turns:
        turn_moves = sorted(rep_moves(turn).intersection(checks.forbid_moves) & TURN_LEVEL_MOVES)
        if turn_moves:
            found.append((turn_level_quote(turn, turn_moves[0]), _MOVE_AGAINST[turn_moves[0]]))
    return list({quote: (quote, why) for quote, why in reversed(found)}.values())[::-1]


_MOVE_AGAINST = {
    "discount": "it offers a discount or a lower number",
    "pressure": "it pushes with a deadline",
    "pitch": "it pitches features instead",
    "long_turn": "it runs long",
}


def _earned_nothing(checks: Checks, reading: Reading) -> RepLine | None:
    """The flawed line to cite for a criterion nothing earned: one that looks like its behaviour, or any, when no
    line of the attempt earned anything."""
    flawed = [line for line in reading.lines if line.flaw]
    looks_like = next((line for line in flawed if _matches(checks, line)), None)
    return looks_like or (flawed[0] if flawed and not reading.earning else None)


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


def grade_criterion(criterion: RubricCriterion, reading: Reading, faulted: set[str] = frozenset()) -> CriterionGrade:
    """Level, evidence and feedback for one criterion: its checks over the rep's lines of substance; a line
    faulted anywhere (``faulted``) never counts for it."""
    checks = criterion.checks
    offending = _offending(checks, reading)
    hits = _unique(line.text for line in reading.earning if line.text not in faulted and _matches(checks, line))
    has_matchers = bool(checks.any_phrases or checks.moves or checks.numbers)
    # Questions count one a turn: "one at a time, each building on her last answer" (two in a row are one ask).
    asks = "open_question" in checks.moves and not checks.numbers
    count = len({line.turn for line in reading.earning if line.text in hits}) if asks else len(hits)
    level = _count_level(count, checks) if has_matchers else 4
    longest: tuple[int, str] | None = None
    if checks.max_words:
        said = reading.turns
        counts = [(len(turn.split()), turn) for turn in said]
        level = min(level, _brevity_level(sum(n <= checks.max_words for n, _ in counts) / len(said)) if said else 1)
        over = [pair for pair in counts if pair[0] > checks.max_words]
        longest = max(over, key=lambda pair: pair[0]) if over else None
    buried = [] if hits else [line for line in reading.flawed("monologue") if _matches(checks, line)]
    touched = [] if hits or buried else _unique(line.text for line in reading.earning
                                                if line.text not in faulted and _touches(checks, line))
    if buried or touched:  # said inside a speech the buyer stopped following, or only in part
        level = 2
    if offending:
        level = min(level, 2) if hits else 1
    avoided = not (hits or buried or touched or offending) and bool(reading.turns) and checks.avoided_level > 1
    if avoided:
        level = max(level, checks.avoided_level)  # nothing worked against it, nothing showed it either
    against = True
    if offending:
        quote, why = offending[0]
        evidence = [quote, *hits[:1]]
        feedback = f"Worked against you: {why}."
    elif longest is not None:
        evidence = [turn_level_quote(longest[1], "long_turn"), *hits[:1]]
        feedback = f"Your longest turn ran {longest[0]} words; keep each turn under {checks.max_words} words."
    elif hits:
        against = False
        evidence = hits[:MAX_EVIDENCE]
        feedback = f"You showed level {level}: {_behaviour(criterion, level)}."
    elif touched:
        against = False
        evidence = touched[:1]
        feedback = f"Part of it, level 2: {_behaviour(criterion, 2)}."
    elif buried:
        evidence = [buried[0].text]
        feedback = f"You said it, but in a turn of {MONOLOGUE_WORDS}+ words the buyer stopped following."
    elif avoided:
        against, evidence = False, []
        feedback = f"Nothing you said worked against it, but no line {_lower_first(criterion.label)} either."
    elif nothing := _earned_nothing(checks, reading):
        evidence = [nothing.text]
        feedback = f"No line earned this. That one {WHY_NOTHING[nothing.flaw]}."
    else:
        against, evidence = False, []
        feedback = f"No line of yours {_lower_first(criterion.label)}."
    why = feedback
    if level == 4:
        feedback += " That is level 4."
    else:
        target = 3 if level < 3 else 4
        feedback += f" To reach level {target}: {_behaviour(criterion, target)}."
    return CriterionGrade(
        criterion=criterion.id,
        label=criterion.label,
        level=level,
        evidence=tuple(_unique(evidence))[:MAX_EVIDENCE],
        feedback=feedback,
        against=against and bool(evidence),
        why=why,
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


def _summary(scenario: Scenario, criteria: Sequence[CriterionGrade], score: int, passed: bool,
             faults: Sequence[Fault] = ()) -> str:
    verdict = "Passed" if passed else "Not yet"
    text = f"{verdict}: {score}/100 on {scenario.title} (passing is level {scenario.level} of 4)."
    if faults:
        return text + f' "{_clip(faults[0].quote)}" {faults[0].why}.'
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
