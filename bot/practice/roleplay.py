"""Roleplay: what the rep just did (moves), the buyer's hidden meters, and a scripted buyer built on both.

Everything here is a pure function of the scenario and the turns so far, so a transcript replays exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.practice.scenarios import TURN_LEVEL_MOVES, Beat, Scenario

Role = Literal["rep", "buyer"]

LONG_TURN_WORDS = 60
TRUST_START, TRUST_MAX = 1, 5
PATIENCE_START = 3


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str


_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2011": "-",
        "\u00a0": " ",
    }
)


def fold(text: str) -> str:
    """Lower-case text with curly quotes and dashes folded, quote marks dropped and whitespace collapsed."""
    text = text.translate(_FOLD).lower().replace("'", "").replace('"', "")
    return " ".join(text.split())


def phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str] | None:
    """A regex for any phrase on word boundaries in folded text; a trailing ``*`` matches any word ending."""
    parts = []
    for phrase in phrases:
        folded = fold(phrase)
        stem = folded.rstrip("*")
        if stem:
            parts.append(re.escape(stem) + (r"\w*" if folded.endswith("*") else ""))
    if not parts:
        return None
    parts.sort(key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)")


_SENTENCE = re.compile(r"\S[^\n]*?(?:[.!?]+[\"'\u201d\u2019)]*(?=\s|$)|$)", re.MULTILINE)
_ABBREVIATION = re.compile(r"(?:^|\s)(?:dr|mr|mrs|ms|st|vs|etc|approx|e\.g|i\.e|inc|jr|sr)\.$", re.IGNORECASE)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each sentence in ``text``; lines and ., ! or ? followed by a space end one."""
    spans: list[tuple[int, int]] = []
    for match in _SENTENCE.finditer(text):
        start, end = match.start(), match.end()
        while end > start and text[end - 1].isspace():
            end -= 1
        if end <= start:
            continue
        previous = spans[-1] if spans else None
        joins = previous and _ABBREVIATION.search(text[previous[0] : previous[1]])
        if previous and joins and "\n" not in text[previous[1] : start]:
            spans[-1] = (previous[0], end)
        else:
            spans.append((start, end))
    return spans


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, each verbatim."""
    return [text[start:end] for start, end in sentence_spans(text)]


_NUMBER = (
    r"(?:\d[\d,]*(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty"
    r"|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|half|a dozen|dozen)"
)
_UNIT = (
    r"(?:hours?|hrs|minutes?|mins|days?|weeks?|months?|years?|quarters?|nights?|weekends?|people|persons?"
    r"|heads?|headcount|ftes?|reps?|clerks?|staff|employees?|users?|seats?|licen[cs]es?|trucks?|drivers?"
    r"|loads?|miles?|shipments?|orders?|invoices?|claims?|files?|documents?|tickets?|deals?|accounts?"
    r"|customers?|clinics?|units?|fines?|dollars?|bucks|grand|percent|points?|times|visits?|adjusters?|csms?)"
)
_QUANTIFIED = [
    re.compile(r"\$\s?\d"),
    re.compile(r"\d\s?%"),
    re.compile(r"(?<!\w)percent(?!\w)"),
    re.compile(r"(?<![\w$])\d[\d,]*(?:\.\d+)?\s?(?:k|m|mm|bn|x|million|thousand|billion|grand)(?!\w)"),
    re.compile(
        r"(?<!\w)(?:one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|forty|fifty|sixty|seventy"
        r"|eighty|ninety|hundred|a)[\s-]+(?:\w+[\s-]+)?(?:hundred|thousand|million|billion|grand)(?!\w)"
    ),
    re.compile(rf"(?<![\w$]){_NUMBER}(?:[\s-]+[\w-]+){{0,2}}?[\s-]+{_UNIT}(?!\w)"),
]


def _cues(phrases: str) -> re.Pattern[str]:
    """A phrase pattern from a `` | ``-separated list."""
    pattern = phrase_pattern(phrase.strip() for phrase in phrases.split("|"))
    if pattern is None:
        raise ValueError("no phrases given")
    return pattern


_OPEN_WORDS = _cues("who | whos | what | whats | how | hows | why | where | wheres | which | when")
_OPEN_PROMPTS = _cues(
    """tell me | walk me | talk me through | take me through | help me understand | describe | explain
    | say more | share more | paint a picture | give me a sense | give me an example"""
)
_PROMPT_START = re.compile(
    r"^(?:tell me|walk me|talk me through|take me through|help me understand|describe|say more|paint me"
    r"|give me a sense|give me an example)"
)
_AUXILIARIES = frozenset(
    """is are am was were do does did can could would will should shall have has had may might isnt arent
    wasnt dont doesnt didnt cant couldnt wouldnt wont shouldnt havent hasnt""".split()
)
_FILLERS = frozenset("so and but ok okay right great well now then also alright cool sure yeah yes".split())

_ACKNOWLEDGED = _cues(
    """i hear you | hear you | that's fair | fair enough | fair point | makes sense | i understand
    | understandable | i get it | i get that | got it | appreciate | thanks for | thank you for
    | good question | great question | you're right | that's a real | that's a big | totally | of course
    | i can see why | no wonder | that sounds | that must | reasonable | that's tough | that's hard"""
)
_PARAPHRASE = _cues(
    """what i'm hearing | what i heard | it sounds like | sounds like you | sounds like the
    | sounds like it's | sounds like your | if i understand | if i heard you | if i'm hearing you
    | let me make sure i | make sure i got | make sure i've got | you're saying | in other words
    | play that back | play it back | correct me if | to recap | if i have this right
    | if i've got this right | so the real issue | so the issue | so for you | let me repeat
    | did i get that right | have i got that right | am i hearing that right | did i hear that right"""
)
_PITCH = _cues(
    """our platform | our solution | our product | our tool | our software | our system | our ai
    | we offer | we provide | we also have | we also do | best-in-class | best in class | industry-leading
    | industry leading | world-class | world class | cutting-edge | cutting edge | state of the art
    | state-of-the-art | seamless* | robust | end-to-end | all-in-one | out of the box | out-of-the-box
    | game changer | game-changer | one-stop | next-gen | ai-powered | powerful | leading provider
    | our customers love | fully integrated | plug and play | our features"""
)
_DISCOUNT = [
    _cues(
        """discount* | knock off | lower the price | lower price | drop the price | reduce the price
        | cut the price | come down on price | come down on the price | come down a bit | price break
        | sharpen the pencil | sharpen my pencil | meet you in the middle | split the difference | waive*
        | free month* | months free | throw in | match their price | match that price | price match
        | better price | special pricing | off the list price | off list"""
    ),
    re.compile(r"(?<!\w)(?:\$\s?)?\d[\d,.]*\s?(?:%|k|percent)?\s+off(?!\w)"),
    re.compile(r"(?<!\w)knock(?:\s+[\w$%,.]+){1,4}\s+off(?!\w)"),
    re.compile(r"(?<!\w)(?:get you|get it|come|bring it|drop it|go) (?:down )?to \$?\d"),
]
# Words just before a discount cue showing it is not the rep's offer ("won't discount", "early-pay discount").
_NOT_AN_OFFER = _cues(
    """not | no | without | won't | don't | never | isn't | aren't | can't | rather than | instead of
    | early | pay | payment | prompt | missed | lost | supplier | vendor | volume | the | those | your
    | their | these"""
)

_TIME = [
    _cues(
        """monday | tuesday | wednesday | thursday | friday | saturday | sunday | tomorrow | tonight
        | next week | this week | end of the week | end of week | end of the month | end of month
        | end of the quarter | end of quarter | end of day | eod | eow | next month | this afternoon
        | this morning | later today | first thing | noon | january | february | march | april | june
        | july | august | september | october | november | december"""
    ),
    re.compile(r"(?<!\w)\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)(?!\w)"),
    re.compile(r"(?<!\w)\d{1,2}(?:st|nd|rd|th)(?!\w)"),
    re.compile(r"(?<!\w)(?:at|by) \d{1,2}(?::\d{2})?(?!\w)"),
    re.compile(r"(?<!\w)\d{1,2}/\d{1,2}(?!\w)"),
]
_COMMITMENT = [
    _cues(
        """let's schedule | schedule a | schedule an | schedule the | schedule some | schedule time
        | schedule it | schedule something | scheduled for | reschedule | book* | calendar | invite*
        | send over | send you | send it | i'll send | get time | grab time | set up | put time
        | put some time | pencil* | lock in | hold time | hop on | jump on | meet* | call | follow up
        | follow-up | sign | signed | signing | sign-off | kick off | kickoff | sit down | join* | bring
        | walk through | review* | slot"""
    ),
    re.compile(r"(?<!\w)(?:does|would|will|could) [^?.!]{1,40}? work(?!\w)"),
    re.compile(r"(?<!\w)works? for you(?!\w)"),
    re.compile(r"(?<!\w)(?:spend|grab|get|take|find|set aside) (?:\w+ ){0,2}(?:minutes|an hour|time)(?!\w)"),
]
_DONE = frozenset(
    phrase.strip()
    for phrase in """done | end | stop | quit | exit | finish | finished | im done | end roleplay
    | stop roleplay | end practice | stop practice | end session | done roleplay | all done""".split("|")
)


def _any(patterns: Iterable[re.Pattern[str]], text: str) -> bool:
    return any(pattern.search(text) for pattern in patterns)


def _question_kind(sentence: str) -> str | None:
    words = re.findall(r"[a-z0-9]+", sentence)
    while words and words[0] in _FILLERS:
        words.pop(0)
    opener = " ".join(words)
    if "?" not in sentence:
        return "open_question" if _PROMPT_START.match(opener) else None
    if _OPEN_PROMPTS.search(sentence):
        return "open_question"
    if not words or words[0] in _AUXILIARIES:
        return "closed_question"
    return "open_question" if _OPEN_WORDS.search(sentence) else "closed_question"


def _offers_discount(text: str) -> bool:
    for pattern in _DISCOUNT:
        for match in pattern.finditer(text):
            before = " ".join(text[: match.start()].split()[-4:])
            if not _NOT_AN_OFFER.search(before):
                return True
    return False


_MEETING_LENGTH = re.compile(rf"(?<!\w){_NUMBER}[\s-]+(?:minutes?|mins|hours?|hrs)(?!\w)")


def _without_meeting_length(sentence: str, next_step: bool) -> str:
    """In a turn setting a next step, "30 minutes on Thursday" is a meeting length, not a business figure."""
    if next_step and (_any(_TIME, sentence) or _any(_COMMITMENT, sentence)):
        return _MEETING_LENGTH.sub(" ", sentence)
    return sentence


def rep_moves(text: str) -> frozenset[str]:
    """Classify one rep turn into moves; pure and deterministic.

    open_question / closed_question (a "?" sentence opening with who/what/how/why... or "tell me", "walk me
    through", or one opening with is/do/can...; "tell me"/"walk me" prompts count without a "?"),
    acknowledged, paraphrase, quantified ($, %, or a number with a unit), next_step (a day or time plus a
    commitment such as "send over", "calendar", "book"), discount (an offer; "won't discount" is not one),
    pitch (two or more product-brochure phrases, or one in a turn over 40 words), long_turn (over 60 words),
    and done (the whole turn is "done", "end", "stop" and the like).
    """
    folded = fold(text)
    bare = re.sub(r"[^\w\s]", "", folded).strip()
    if bare in _DONE:
        return frozenset({"done"})
    moves: set[str] = set()
    for sentence in sentences(folded):
        kind = _question_kind(sentence)
        if kind:
            moves.add(kind)
    if _ACKNOWLEDGED.search(_PARAPHRASE.sub(" ", folded)):  # "if I understand" plays back, not acknowledges
        moves.add("acknowledged")
    if _PARAPHRASE.search(folded):
        moves.add("paraphrase")
    if _any(_TIME, folded) and _any(_COMMITMENT, folded):
        moves.add("next_step")
    next_step = "next_step" in moves
    if any(_any(_QUANTIFIED, _without_meeting_length(s, next_step)) for s in sentences(folded)):
        moves.add("quantified")
    if _offers_discount(folded):
        moves.add("discount")
    words = len(folded.split())
    pitch_cues = len(_PITCH.findall(folded))
    if pitch_cues >= 2 or (pitch_cues and words > 40):
        moves.add("pitch")
    if words > LONG_TURN_WORDS:
        moves.add("long_turn")
    return frozenset(moves)


@dataclass(frozen=True)
class SentenceMoves:
    """One verbatim sentence of a rep turn, with the sentence-level moves it shows within its turn."""

    text: str
    moves: frozenset[str]


def sentence_moves(turn: str) -> list[SentenceMoves]:
    """Each sentence of a rep turn with its moves; turn-level moves (long_turn, pitch, done) are left out.

    In a turn that sets a next step, a sentence carrying the commitment ("I'll send the invite") counts as one
    even when the day is named in another sentence, and meeting lengths do not count as figures.
    """
    turn_next_step = "next_step" in rep_moves(turn)
    out = []
    for text in sentences(turn):
        folded = fold(text)
        moves = set(rep_moves(text) - TURN_LEVEL_MOVES)
        if "quantified" in moves and not _any(_QUANTIFIED, _without_meeting_length(folded, turn_next_step)):
            moves.discard("quantified")
        if turn_next_step and _any(_COMMITMENT, folded):
            moves.add("next_step")
        out.append(SentenceMoves(text=text, moves=frozenset(moves)))
    return out


def turn_level_quote(text: str, move: str) -> str:
    """The verbatim sentence that best shows a turn-level move (the first pitch line for ``pitch``)."""
    spoken = sentences(text) or [text.strip()]
    if move == "pitch":
        for sentence in spoken:
            if _PITCH.search(fold(sentence)):
                return sentence
    return spoken[0]


@dataclass(frozen=True)
class Meters:
    """The buyer's hidden state: trust (0-5) rises with questions, acknowledgement, paraphrase and figures and
    falls with pitching and discounts; patience (0-3) falls with long or pitchy turns and recovers a little
    when the rep asks a short question or plays back what was said."""

    trust: int
    patience: int

    @property
    def impatient(self) -> bool:
        return self.patience <= 0


def buyer_meters(turns: Sequence[Turn]) -> Meters:
    """Recompute the buyer's meters from the rep's turns so far."""
    trust, patience = TRUST_START, PATIENCE_START
    for turn in turns:
        if turn.role != "rep":
            continue
        moves = rep_moves(turn.text)
        trust += len(moves & {"acknowledged", "quantified"}) + bool(moves & {"open_question", "paraphrase"})
        trust -= len(moves & {"pitch", "discount"})
        patience -= len(moves & {"pitch", "long_turn"})
        if "long_turn" not in moves and moves & {"open_question", "paraphrase"}:
            patience += 1
        trust = min(max(trust, 0), TRUST_MAX)
        patience = min(max(patience, 0), PATIENCE_START)
    return Meters(trust=trust, patience=patience)


class Buyer(Protocol):
    def reply(self, scenario: Scenario, turns: Sequence[Turn]) -> str: ...


def next_beat(scenario: Scenario, turns: Sequence[Turn]) -> Beat | None:
    """The beat a scripted buyer answers the rep's last turn with; None before the rep has spoken."""
    rep_turns = [turn for turn in turns if turn.role == "rep"]
    if not rep_turns:
        return None
    if turns[-1].role != "rep":
        raise ValueError("the buyer has already answered the rep's last turn")
    moves = rep_moves(rep_turns[-1].text)
    meters = buyer_meters(turns)
    spoken = [fold(turn.text) for turn in turns if turn.role == "buyer"]
    unused = [beat for beat in scenario.beats if fold(beat.line) not in spoken]
    ready = [beat for beat in unused if meters.trust >= beat.min_trust]
    if meters.impatient:
        for beat in ready:
            if beat.when == "impatient":
                return beat
    for beat in ready:
        if beat.when in moves:
            return beat
    for beat in ready:
        if beat.when == "any":
            return beat

    def last_said(beat: Beat) -> int:
        line = fold(beat.line)
        return max((i for i, said in enumerate(spoken) if said == line), default=-1)

    return min((beat for beat in scenario.beats if beat.when == "any"), key=last_said)


class ScriptedBuyer:
    """A deterministic buyer: the same scenario and turns always give the same reply."""

    def reply(self, scenario: Scenario, turns: Sequence[Turn]) -> str:
        """The buyer's next line: the opening line first, then the beat chosen by ``next_beat``."""
        beat = next_beat(scenario, turns)
        return scenario.opening_line if beat is None else beat.line


def roleplay_over(scenario: Scenario, turns: Sequence[Turn]) -> bool:
    """True once the rep said done, the buyer answered the max_turns-th rep turn, or a closing beat was said.

    Check it after appending each turn (the rep's, to catch "done"; the buyer's, for the rest).
    """
    rep_turns = [turn for turn in turns if turn.role == "rep"]
    if rep_turns and "done" in rep_moves(rep_turns[-1].text):
        return True
    closing = {fold(beat.line) for beat in scenario.beats if beat.closes}
    if any(turn.role == "buyer" and fold(turn.text) in closing for turn in turns):
        return True
    answered = len(rep_turns) if turns and turns[-1].role == "buyer" else len(rep_turns) - 1
    return answered >= scenario.max_turns
