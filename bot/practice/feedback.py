"""What a rep reads when a roleplay ends: one strength and one fix, each on the rep's own line, in 20 seconds.

The grade holds every criterion's level, quotes and reasons (shown behind Details); this picks the two points
worth reading first. The strength is the best-graded criterion a line of the rep's earned. The fix is the line
that failed the attempt if one did (a discount on a hold-the-price drill, an instruction to the grader), else
the weakest criterion, with a better version of the line: the scenario's level-4 example for it. No quote is
shown twice, and the whole stays within ``VISIBLE_WORDS``. Pure functions of the scenario and the grade.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.practice.grader import CriterionGrade, Grade
from bot.practice.scenarios import RubricCriterion, Scenario

VISIBLE_WORDS = 120
# Quote and example lengths (words) tried in turn until the feedback fits in VISIBLE_WORDS.
_CLIPS = ((25, 32), (18, 24), (12, 16), (8, 10))


@dataclass(frozen=True)
class Point:
    """One thing to read: which criterion, the rep's line (if one is worth quoting), why, and what to try."""

    label: str
    level: int
    quote: str | None
    reason: str
    better: str | None = None


@dataclass(frozen=True)
class Feedback:
    verdict: str  # "Not yet: 68/100 (passing is level 3 of 4)."
    strength: Point | None
    fix: Point | None

    def lines(self) -> list[str]:
        """As plain lines: for the terminal (``rehearse practice``), and what the Slack message shows."""
        out = [self.verdict]
        for heading, point in (("Strength", self.strength), ("Fix", self.fix)):
            if point is not None:
                out.append(f"{heading} · {point.label} (level {point.level}/4)")
                out.extend([f"> \u201c{point.quote}\u201d"] if point.quote else [])
                out.append(point.reason)
                out.extend([f"Try: \u201c{point.better}\u201d"] if point.better else [])
        return out

    @property
    def words(self) -> int:
        return sum(len(line.split()) for line in self.lines())


def feedback_for(scenario: Scenario, grade: Grade) -> Feedback:
    rubric = {criterion.id: criterion for criterion in scenario.rubric}
    weight = {criterion.id: criterion.weight for criterion in scenario.rubric}
    verdict = f"{'Passed' if grade.passed else 'Not yet'}: {grade.score}/100 (passing is level {scenario.level} of 4)."
    earned = [c for c in grade.criteria if c.evidence and not c.against and c.level >= 2]
    best = max(earned, key=lambda c: (c.level, weight[c.criterion]), default=None)
    strength = None if best is None else Point(best.label, best.level, best.evidence[0],
                                               f"Level {best.level}: {_behaviour(rubric[best.criterion], best.level)}.")
    fix = _fault_fix(scenario, grade) or _weakest_fix(grade, rubric, weight, best)
    if strength is not None and fix is not None and fix.quote == strength.quote:
        fix = replace(fix, quote=None)
    return _fit(Feedback(verdict, strength, fix))


def _fault_fix(scenario: Scenario, grade: Grade) -> Point | None:
    """The line that failed the attempt, on the criterion it worked against (else the weakest one)."""
    if not grade.faults:
        return None
    fault = grade.faults[0]
    hit = next((c for c in grade.criteria if c.against and c.evidence and c.evidence[0] == fault.quote), None)
    hit = hit or min(grade.criteria, key=lambda c: c.level)
    better = _better(scenario.criterion(hit.criterion))
    return Point(hit.label, hit.level, fault.quote, f"This line {fault.why}.", better)


def _weakest_fix(grade: Grade, rubric: dict[str, RubricCriterion], weight: dict[str, float],
                 strength: CriterionGrade | None) -> Point | None:
    """The weakest criterion, quoting the line that worked against it or earned nothing, if one did."""
    left = [c for c in grade.criteria if c.level < 4 and c is not strength]
    if not left:
        return None
    weakest = min(left, key=lambda c: (c.level, -weight[c.criterion]))
    criterion = rubric[weakest.criterion]
    quote = weakest.evidence[0] if weakest.against and weakest.evidence else None
    target = 3 if weakest.level < 3 else 4
    reason = " ".join(filter(None, [weakest.why, f"Level {target}: {_behaviour(criterion, target)}."]))
    return Point(weakest.label, weakest.level, quote, reason, _better(criterion))


def _better(criterion: RubricCriterion) -> str | None:
    return criterion.examples.get(4)


def _fit(feedback: Feedback) -> Feedback:
    """The feedback with its quotes and example lines clipped until it is short enough to read at a glance."""
    fitted = feedback
    for quote_words, better_words in _CLIPS:
        fitted = Feedback(feedback.verdict, *(
            None if point is None else replace(point, quote=point.quote and clip(point.quote, quote_words),
                                               better=point.better and clip(point.better, better_words))
            for point in (feedback.strength, feedback.fix)))
        if fitted.words <= VISIBLE_WORDS:
            return fitted
    return replace(fitted, fix=fitted.fix and replace(fitted.fix, better=None))


def clip(text: str, words: int) -> str:
    said = " ".join(text.split()).split(" ")
    return " ".join(said) if len(said) <= words else " ".join(said[:words]).rstrip(",;:") + "\u2026"


def _behaviour(criterion: RubricCriterion, level: int) -> str:
    text = criterion.levels[level].strip().rstrip(".")
    return text[:1].lower() + text[1:]
