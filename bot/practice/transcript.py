"""A roleplay's turns and what the rep did in each: sentences, folded text, phrase patterns and moves.

Pure functions of the text alone; what a line is worth in a scenario's context is ``substance``'s business.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bot.practice.scenarios import TURN_LEVEL_MOVES

Role = Literal["rep", "buyer"]

LONG_TURN_WORDS = 60


@dataclass(frozen=True)
class Turn:
    role: Role
    text: str
    ends: bool = False  # the buyer ends the call with this line (won over or walking away)


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
    | say more | share more | paint a picture | give me a sense | give me an example | ask how | ask what
    | ask whats | ask why | ask who | ask whos | ask where | ask when | curious how | curious what | curious whats
    | wondering how | wondering what | wondering whats"""
)
_PROMPT_START = re.compile(
    r"^(?:tell me|walk me|talk me through|take me through|help me understand|describe|say more|paint me"
    r"|give me a sense|give me an example)"
)
_ASKED = frozenset("you it that this there we they your he she".split())  # "is it ...", "do you ..."
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
# "Our mobile approvals app ...", "the number one thing we fix", "matched automatically": the product, not the buyer.
_FEATURES = re.compile(
    r"(?<!\w)our (?:[\w-]+ ){0,2}(?:app|apps|module|modules|engine|feature|features|dashboard|dashboards"
    r"|integrations?|workflows?|automation|portal|suite|technology|tech|roadmap)(?!\w)"
    r"|(?<!\w)(?:number one|#1|main) thing we (?:fix|do|solve)(?!\w)|(?<!\w)automatically(?!\w)"
)
_NOT_TIME = r"(?![\d,.]*\s?(?:minutes?|mins|hours?|hrs|days?|weeks?|am|pm|a\.m|p\.m|:|/|st|nd|rd|th)(?!\w))"
_DISCOUNT = [
    _cues(
        """discount* | knock off | lower the price | lower price | drop the price | reduce the price
        | cut the price | come down on price | come down on the price | come down a bit | price break
        | sharpen the pencil | sharpen my pencil | meet you in the middle | meet you halfway | split the difference
        | waive* | free month* | months free | throw in | throw it in | match their price | match that price
        | price match | better price | better number | special pricing | off the list price | off list | for free
        | free of charge | no charge | at no cost | at no extra cost | on the house | complimentary
        | extra month* | bonus month*"""
    ),
    re.compile(r"(?<!\w)(?:\$\s?)?\d[\d,.]*\s?(?:%|k|percent|grand|thousand)?\s+off(?!\w)"),
    re.compile(r"(?<!\w)(?:knock|take|shave|drop)(?:\s+[\w$%,.]+){1,4}\s+off(?!\w)"),
    re.compile(r"(?<!\w)(?:get you|get it|come|bring it|drop it|go|take it) (?:down )?to \$?\d" + _NOT_TIME),
    # "we can do 150", "I could do 20% off", "we'd go 160": a lower number offered
    re.compile(r"(?<!\w)(?:we|i)(?: can| could| will| would| might|ll|d)? (?:do|offer|go|make it|give you|land"
               r"|landed|come in|settle)(?: it)?(?: somewhere)?(?: (?:around|at|for|near|to|on))? \$?\d" + _NOT_TIME),
    re.compile(r"(?<!\w)(?:how about|what about|what if we said|meet you at|call it) \$?\d" + _NOT_TIME),
    re.compile(r"(?<!\w)\$?\d[\d,.]*\s?(?:%|k|percent|grand)?\s+then(?!\w)"),  # "Fine, 20% then."
]
# Words just before a discount cue showing it is not the rep's offer ("won't discount", "early-pay discount").
_NOT_AN_OFFER = _cues(
    """not | no | without | won't | don't | never | isn't | aren't | can't | rather than | instead of | than
    | early | pay | payment | prompt | missed | lost | supplier | vendor | volume | the | those | your
    | their | these"""
)
# Deadline closes: the buyer is told the offer goes away, not given a reason to act.
_PRESSURE = _cues(
    """expires | expiring | expire | limited time | only if you sign | sign today | sign it today | sign now
    | if you sign by | if you sign this | if you sign today | price goes up | prices go up | going up next
    | lose the slot | lose your slot | lose this price | lose the price | lose the discount | lose that price
    | last chance | won't last | offer ends | deal ends | now or never | can't hold this | cannot hold this
    | can't hold the price | only good until | only valid | valid until | today only | act now | or we lose
    | or you lose | end of quarter pricing | quarter-end pricing | before the price | before prices | only good
    | price goes up | pricing goes up | rate goes up | it goes up | price will go up | lock in the current
    | lock in this | lock in today"""
)
_LOSE_THE_SLOT = re.compile(
    r"(?<!\w)(?:lose|losing) (?:the|your|our|this) (?:[\w-]+ ){0,2}(?:slot|spot|window|rate)(?!\w)"
    r"|(?<!\w)only hold (?:this|the|that|our) (?:quote|price|pricing|rate|offer|discount)(?!\w)"
    r"|(?<!\w)repric(?:e|es|ed|ing)(?!\w)"
    r"|(?<!\w)(?:pricing|price|offer|deal|promo|promotion|rate) (?:ends|expires|runs out)(?!\w)"
    r"|(?<!\w)(?:one|two|three|four|a few|\d+) (?:[\w-]+ ){0,2}(?:slots?|spots?|seats?) left(?!\w)"
    r"|(?<!\w)if (?:you|we) don'?t (?:sign|get (?:a |the )?signature)(?!\w)"
    r"|(?<!\w)(?:goes|go|will go|going) to (?:another|the next|someone else)(?!\w)"
    r"|(?<!\w)need (?:a |the |your )?signature (?:this|by|today|before)(?!\w)"
    r"|(?<!\w)lock (?:in )?(?:the|this|that) (?:rate|price|pricing)(?!\w)"
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
        | walk through | review* | slot | session | workshop | confirm*"""
    ),
    re.compile(r"(?<!\w)(?:does|would|will|could) [^?.!]{1,40}? work(?!\w)"),
    re.compile(r"(?<!\w)works? for you(?!\w)"),
    re.compile(r"(?<!\w)(?:walk|take) (?:\w+ ){1,3}(?:through|over)(?!\w)"),  # "walk your CFO through it"
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
    if "?" not in sentence:  # typed in Slack without a question mark: "is it budgeted or are you comparing"
        if _PROMPT_START.match(opener):
            return "open_question"
        return "closed_question" if len(words) > 3 and words[0] in _AUXILIARIES and words[1] in _ASKED else None
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


def _pressures(text: str) -> bool:
    return bool(_PRESSURE.search(text) or _LOSE_THE_SLOT.search(text))


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
    commitment such as "send over", "calendar", "book", in a sentence offering no discount or deadline),
    discount (an offer of a lower price or something free; "won't discount" is not one, and its figure is not
    quantified), pressure (a deadline close: "this price expires Friday"), pitch (two or more product-brochure
    phrases, or one in a turn over 40 words), long_turn (over 60 words),
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
    offers = [sentence for sentence in sentences(folded) if _offers_discount(sentence) or _pressures(sentence)]
    plain = " ".join(sentence for sentence in sentences(folded) if sentence not in offers)
    if _any(_TIME, plain) and _any(_COMMITMENT, plain):  # "150 if you sign by Friday" is no next step
        moves.add("next_step")
    next_step = "next_step" in moves
    if any(_any(_QUANTIFIED, _without_meeting_length(s, next_step)) for s in sentences(folded)):
        moves.add("quantified")
    if _offers_discount(folded):
        moves.add("discount")
        moves.discard("quantified")  # "10% off" is a concession, not a figure of value
    if _pressures(folded):
        moves.add("pressure")
    words = len(folded.split())
    pitch_cues = len(_PITCH.findall(folded)) + len(_FEATURES.findall(folded))
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
            if _PITCH.search(fold(sentence)) or _FEATURES.search(fold(sentence)):
                return sentence
    return spoken[0]
