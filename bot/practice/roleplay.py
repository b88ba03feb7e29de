"""Roleplay: the buyer's hidden meters, a scripted buyer built on the rep's moves, and when a roleplay is over.

Everything here is a pure function of the scenario and the turns so far, so a transcript replays exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.practice.scenarios import TURN_LEVEL_MOVES, Beat, Scenario
from bot.practice.substance import Reading, read
from bot.practice.transcript import Turn, fold, phrase_pattern, rep_moves

TRUST_START, TRUST_MAX = 1, 5
PATIENCE_START = 3


@dataclass(frozen=True)
class Meters:
    """The buyer's hidden state: trust (0-5) rises with questions about the deal, acknowledgement, playbacks and
    figures and falls with pitching and discounts; patience (0-3) falls with long, pitchy and empty turns and
    recovers a little when the rep asks a short question or plays back what was said."""

    trust: int
    patience: int

    @property
    def impatient(self) -> bool:
        return self.patience <= 0


def buyer_meters(scenario: Scenario, turns: Sequence[Turn]) -> Meters:
    """Recompute the buyer's meters from the rep's turns so far, each read in its context (``substance``): "Why?"
    is no question about anything, and a line copied from the brief is no figure."""
    return _meters(read(scenario, turns))


def _meters(reading: Reading) -> Meters:
    trust, patience = TRUST_START, PATIENCE_START
    for index in range(len(reading.turns)):
        moves, empty = _heard(reading, index), reading.says_nothing(index)
        trust += len(moves & {"acknowledged", "quantified"}) + bool(moves & {"open_question", "paraphrase"})
        trust -= len(moves & {"pitch", "discount", "pressure"})
        patience -= len(moves & {"pitch", "long_turn"}) + empty
        if not empty and "long_turn" not in moves and moves & {"open_question", "paraphrase"}:
            patience += 1
        trust = min(max(trust, 0), TRUST_MAX)
        patience = min(max(patience, 0), PATIENCE_START)
    return Meters(trust=trust, patience=patience)


def _heard(reading: Reading, index: int) -> set[str]:
    """The moves of one rep turn as the buyer hears them: the turn's own (long, pitchy) and its sentences' in
    context; a flawed sentence keeps only what costs the rep (a pitch, a discount, a deadline)."""
    moves = set(rep_moves(reading.turns[index]) & TURN_LEVEL_MOVES)
    for line in reading.of_turn(index):
        moves |= line.moves if line.flaw is None else line.moves & {"pitch", "discount", "pressure"}
    if moves & {"open_question", "closed_question"}:
        moves.add("question")
    return moves


class Buyer(Protocol):
    def reply(self, scenario: Scenario, turns: Sequence[Turn]) -> Turn:
        """The buyer's next turn; ``ends`` says whether the buyer ends the call with it."""
        ...


def next_beat(scenario: Scenario, turns: Sequence[Turn]) -> Beat | None:
    """The beat a scripted buyer answers the rep's last turn with; None before the rep has spoken.

    An empty or off-topic turn gets a redirect; otherwise the first unused beat whose trigger and ``about`` fit
    the turn, then the first unused ``any``. No line is said twice: when nothing fitting is left, or patience has
    run out, the buyer ends the call with the closing ``impatient`` beat.
    """
    rep_turns = [turn for turn in turns if turn.role == "rep"]
    if not rep_turns:
        return None
    if turns[-1].role != "rep":
        raise ValueError("the buyer has already answered the rep's last turn")
    text = rep_turns[-1].text
    reading = read(scenario, turns)
    meters = _meters(reading)
    spoken = {fold(turn.text) for turn in turns if turn.role == "buyer"}
    ready = [beat for beat in scenario.beats if fold(beat.line) not in spoken and meters.trust >= beat.min_trust]
    walks_away = next(beat for beat in scenario.beats if beat.when == "impatient" and beat.closes)
    if meters.impatient:
        return next((beat for beat in ready if beat.when == "impatient"), walks_away)
    last = len(reading.turns) - 1
    if last < 0 or reading.says_nothing(last):  # "done" alone is no turn to answer either
        fitting = [beat for beat in ready if beat.when == "off_topic"]
    else:
        moves = _heard(reading, last)
        fitting = [beat for beat in ready if _fits(beat, moves, text)]
    return next(iter(fitting), None) or next((beat for beat in ready if beat.when == "any"), walks_away)


def _fits(beat: Beat, moves: set[str], text: str) -> bool:
    if beat.when in ("any", "impatient", "off_topic") or beat.when not in moves:
        return False
    about = phrase_pattern(beat.about)
    return about is None or bool(about.search(fold(text)))


class ScriptedBuyer:
    """A deterministic buyer: the same scenario and turns always give the same reply."""

    def reply(self, scenario: Scenario, turns: Sequence[Turn]) -> Turn:
        """The buyer's next turn: the opening line first, then the beat chosen by ``next_beat``."""
        beat = next_beat(scenario, turns)
        return Turn("buyer", scenario.opening_line) if beat is None else Turn("buyer", beat.line, ends=beat.closes)


def roleplay_over(scenario: Scenario, turns: Sequence[Turn]) -> bool:
    """True once the rep said done, the buyer ended the call, or the buyer answered the max_turns-th rep turn.

    Check it after appending each turn (the rep's, to catch "done"; the buyer's, for the rest).
    """
    rep_turns = [turn for turn in turns if turn.role == "rep"]
    if rep_turns and "done" in rep_moves(rep_turns[-1].text):
        return True
    if any(turn.role == "buyer" and turn.ends for turn in turns):
        return True
    answered = len(rep_turns) if turns and turns[-1].role == "buyer" else len(rep_turns) - 1
    return answered >= scenario.max_turns
