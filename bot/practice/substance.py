"""What each line a rep typed is worth in its scenario, before any rubric check.

The rule grader and the scripted buyer both read the rep through here. A sentence earns nothing when it
instructs the grader, is copied from the rubric, the brief or the buyer, is a bare list of keywords, or is not
about the deal; a turn with nothing of substance in it ("Why?", "I hear you.") earns nothing at all. Moves that
depend on context are checked here too: a question counts when it names something of the deal or of what the
buyer said, a playback when it reuses the buyer's own words, a figure when it is about the buyer's business.
Pure functions of the scenario and the turns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.practice.scenarios import Scenario
from bot.practice.transcript import Turn, fold, rep_moves, sentence_moves

Flaw = Literal["instruction", "copied", "keywords", "off_topic", "content_free", "monologue"]

WHY_NOTHING: dict[str, str] = {
    "instruction": "is an instruction to the grader, not something said to the buyer",
    "copied": "is copied from the rubric, the brief or the buyer, not your own words",
    "keywords": "is a list of keywords, not something a buyer can answer",
    "off_topic": "is not about the deal",
    "content_free": "has no content the buyer can answer",
    "monologue": "is buried in a turn too long for a buyer to follow",
}
EMPTY: frozenset[str] = frozenset({"off_topic", "content_free", "keywords"})  # flaws of a turn with nothing to answer
MONOLOGUE_WORDS = 110  # a turn this long is a speech: nothing in it lands

_QUESTIONS = frozenset({"open_question", "closed_question"})
_PROPOSALS = frozenset({"next_step", "discount", "pressure"})
_COPY_RUN = 4  # words in a row shared with the rubric, the brief or the buyer
_COPY_SHARE = 0.75  # a sentence this much covered by such runs is copied
_PASTED_RUN = 7  # a run this long from the rubric or the brief is pasted, whatever the rest of the sentence

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    """a about above after again all also am an and any are around as at away back be been before being below
    between both but by can cant could couldnt did didnt do does doesnt doing dont down each else even ever every
    few for from get gets getting go goes going gone got had hadnt has hasnt have havent having he hed her here
    hers him his how hows i id if ill im in into is isnt it its itll ive just know let lets like ll lot lots make
    makes me mean might mine more most much must my need needs no nor not now of off oh ok okay on once one only
    or other our ours out over own please pretty quite rather re really right said same say says see sense she
    should shouldnt so some something sound sounds still such sure take tell than thank thanks that thats the
    their theirs them then there theres these they theyd theyll theyre theyve thing things think this those
    though through to too totally under until up us ve very via want wanted was wasnt way we wed well were werent
    weve what whats when whens where wheres whether which while who whos whom whose why will with wont would
    wouldnt yeah yes yet you youd youll your youre yours youve hi hello hey great good cool alright anything
    everything nothing kind sort bit maybe definitely actually honestly basically literally absolutely exactly
    hear heard hearing understand understood get got wrong correct else more tell go ahead continue""".split()
)
_GLUE = frozenset(
    """i you we they he she it this that these those my your our their his her its me us them a an the is are
    was were be been am do does did can could will would should shall may might must have has had im youre
    theyre ill youll well weve ive id youd thats whats lets dont cant wont isnt arent not if to""".split()
)
# Words of any deal: a line using one is about the deal even if the scenario never says it.
_DEAL = frozenset(
    _stem
    for _stem in (
        """price pricing cost costs budget value money dollar spend saving savings invest investment roi payback
        return contract renewal proposal quote deal number figure percent discount margin revenue profit pilot
        trial demo meeting call review approval approve sign signature legal procurement finance cfo ceo cio cro
        coo vp board committee boss manager team staff people priority priorities problem problems challenge
        challenges risk risks goal goals impact concern concerns worry worries decision decide process timeline
        deadline next step plan option options
        compare comparison competitor vendor tool tools software system product solution integration customer
        customers data numbers math case business company involved involve stakeholder owner responsible""".split()
    )
)


def stem(word: str) -> str:
    """A crude stem that folds plurals and tenses together (``costs``/``costing`` -> ``cost``)."""
    if word.isdigit():
        return word
    for suffix in ("ings", "ing", "edly", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word[:6]


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry meaning: not function words, fillers or one-letter tokens."""
    return [w for w in words(text) if w not in _STOP and (len(w) > 2 or w.isdigit())]


_DEAL_STEMS = frozenset(stem(w) for w in _DEAL)

_INSTRUCTION = [
    re.compile(
        r"(?<!\w)(?:ignore|disregard|forget|override|bypass)(?!\w)[^.!?]{0,40}(?<!\w)(?:rubric|instructions?"
        r"|prompts?|rules|previous|above|criteria|grading|scoring|guidelines)(?!\w)"
    ),
    re.compile(r"(?<!\w)(?:grader|rubric|evaluator|assessor|system prompt|language model|llm|chatgpt|openai)(?!\w)"),
    re.compile(
        r"(?<!\w)(?:give|grade|score|rate|mark|award|assign)\s+(?:me|this|my|it|every|each|all)(?!\w)[^.!?]{0,30}"
        r"(?<!\w)(?:100|level|full|top|perfect|maximum|max|pass|passing|4)(?!\w)"
    ),
    re.compile(r"(?<!\w)(?:level (?:4|four)|100 ?/ ?100|4 ?/ ?4|full marks|top marks)(?!\w)"),
    re.compile(r"^\W*(?:system|assistant|developer|admin|user)\s*:"),
]


def instructs_the_grader(text: str) -> bool:
    """Whether a line speaks to whoever grades the roleplay (a buyer never needs to hear it)."""
    folded = fold(text)
    return any(pattern.search(folded) for pattern in _INSTRUCTION)


@dataclass(frozen=True)
class _Sources:
    """What a rep could copy instead of speaking: the rubric and the brief, its example lines, the buyer's."""

    pasted: frozenset[tuple[str, ...]]  # _PASTED_RUN-word runs of the rubric's levels and labels and the goal
    families: tuple[frozenset[tuple[str, ...]], ...]  # _COPY_RUN-word runs: rubric and brief, examples, buyer
    texts: tuple[str, ...]  # the words of the rubric and the brief, for a short sentence copied word for word
    vocabulary: frozenset[str]  # stems of everything the scenario says
    buyer_world: frozenset[str]  # stems of what the buyer knows and may say: her lines, concerns, the context


def _runs(texts: Iterable[str], n: int) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for text in texts:
        said = words(text)
        out.update(tuple(said[i : i + n]) for i in range(len(said) - n + 1))
    return out


def _sources(scenario: Scenario) -> _Sources:
    rubric = [text for c in scenario.rubric for text in (c.label, *c.levels.values())]
    # The good example lines (the ones feedback shows); nobody games with a level-1 example.
    examples = [line for c in scenario.rubric for level, line in c.examples.items() if level >= 3]
    brief = [scenario.goal, scenario.context, scenario.title]
    persona = scenario.persona
    buyer = [scenario.opening_line, *(beat.line for beat in scenario.beats), *persona.hidden_concerns]
    everything = [*rubric, *examples, *brief, *buyer, persona.name, persona.role, persona.company]
    return _Sources(
        pasted=frozenset(_runs([*rubric, scenario.goal], _PASTED_RUN)),
        families=(frozenset(_runs([*rubric, *brief], _COPY_RUN)), frozenset(_runs(examples, _COPY_RUN)),
                  frozenset(_runs(buyer, _COPY_RUN))),
        texts=tuple(f" {' '.join(words(text))} " for text in [*rubric, *brief]),
        vocabulary=frozenset(stem(w) for text in everything for w in content_words(text)),
        buyer_world=frozenset(stem(w) for text in [*buyer, scenario.context] for w in content_words(text)),
    )


def _copied(text: str, sources: _Sources, heard: Sequence[str]) -> bool:
    """Pasted rather than said: a run of the rubric's own words, a short sentence of the rubric or the brief word
    for word, or a sentence mostly made of one source's runs (the brief, the example lines, the buyer's lines).
    Using the buyer's facts and a phrase of hers is a playback, not a copy: that takes most of a sentence."""
    said = words(text)
    if _COPY_RUN <= len(said) < _PASTED_RUN:  # "Keep the price at $186,000." word for word from the brief
        return any(f" {' '.join(said)} " in source for source in sources.texts)
    if len(said) < _PASTED_RUN:  # "Did I get that right?" is everyone's
        return False
    if any(tuple(said[i : i + _PASTED_RUN]) in sources.pasted for i in range(len(said) - _PASTED_RUN + 1)):
        return True
    rep_runs = [(i, tuple(said[i : i + _COPY_RUN])) for i in range(len(said) - _COPY_RUN + 1)]
    for runs in (*sources.families[:2], sources.families[2] | _runs(heard, _COPY_RUN)):
        covered = {j for i, run in rep_runs if run in runs for j in range(i, i + _COPY_RUN)}
        if len(covered) >= _COPY_SHARE * len(said):
            return True
    return False


@dataclass(frozen=True)
class RepLine:
    """One sentence of a rep turn, verbatim, with the moves it shows in context and why it earns nothing (if so)."""

    text: str
    turn: int
    first: bool
    moves: frozenset[str]
    flaw: Flaw | None = None


@dataclass(frozen=True)
class Reading:
    """The rep's side of a roleplay, sentence by sentence ("done" left out)."""

    lines: tuple[RepLine, ...]
    turns: tuple[str, ...]

    @property
    def earning(self) -> list[RepLine]:
        """The lines that can earn credit on the rubric."""
        return [line for line in self.lines if line.flaw is None]

    def flawed(self, flaw: Flaw) -> list[RepLine]:
        return [line for line in self.lines if line.flaw == flaw]

    def of_turn(self, index: int) -> list[RepLine]:
        return [line for line in self.lines if line.turn == index]

    def lines_quoted(self, quote: str) -> list[RepLine]:
        """The sentences a verbatim quote of the rep covers, whole or in part."""
        said = f" {' '.join(words(quote))} "
        return [line for line in self.lines
                if (sentence := f" {' '.join(words(line.text))} ").strip() and (said in sentence or sentence in said)]

    def says_nothing(self, index: int) -> bool:
        """Whether a rep turn holds nothing the buyer can answer: off-topic, content-free or keywords."""
        return all(line.flaw in EMPTY for line in self.of_turn(index))


def read(scenario: Scenario, turns: Sequence[Turn]) -> Reading:
    """Every rep sentence with its flaw (if any) and the moves it shows once its context is checked."""
    sources = _sources(scenario)
    heard: list[str] = []  # what the buyer has said so far
    lines: list[RepLine] = []
    kept: list[str] = []
    for turn in turns:
        if turn.role == "buyer":
            heard.append(turn.text)
            continue
        if "done" in rep_moves(turn.text):
            continue
        lines.extend(_turn_lines(turn.text, len(kept), sources, heard))
        kept.append(turn.text)
    return Reading(lines=tuple(lines), turns=tuple(kept))


def _turn_lines(text: str, index: int, sources: _Sources, heard: Sequence[str]) -> list[RepLine]:
    heard_stems = {stem(w) for said in heard for w in content_words(said)}
    buyer_world = heard_stems | sources.buyer_world
    relevant = sources.vocabulary | _DEAL_STEMS | heard_stems
    said = sentence_moves(text)
    content = [[stem(w) for w in content_words(sentence.text)] for sentence in said]
    on_topic = [[w for w in words if w in relevant or w.isdigit()] for words in content]
    # The whole turn is about something else: no word of the deal, and no offer or meeting proposed either.
    off_topic = any(content) and not any(on_topic) and not any(sentence.moves & _PROPOSALS for sentence in said)
    fragments = [_fragment(sentence.text) for sentence in said]
    keywords = len(said) >= 2 and sum(fragments) * 3 >= len(said) * 2  # "Deadhead. Empty miles. Payback."
    pasted = len(said) >= 2 and _copied(text, sources, heard)  # a buyer's whole line, short sentences and all
    checks_back = [bool(_CHECK_BACK.search(fold(sentence.text))) for sentence in said]
    out = []
    for i, sentence in enumerate(said):
        moves = set(sentence.moves)
        flaw: Flaw | None = None
        if instructs_the_grader(sentence.text):
            flaw = "instruction"
        elif pasted or _copied(sentence.text, sources, heard):
            flaw = "copied"
        elif off_topic:
            flaw = "off_topic"
        elif keywords or _LIST.match(fold(sentence.text)):
            flaw = "keywords"
        if not any(on_topic):  # "Why?", "What else?": a question about nothing in particular
            moves -= _QUESTIONS
        reused = {w for w in content[i] if w in buyer_world}
        checked = any(checks_back[i + 1:])  # "... Have I got that right?" later in the turn
        if "paraphrase" in moves and len(reused) < 2:
            moves.discard("paraphrase")  # "Correct me if I'm wrong?" plays nothing back
        elif "?" not in sentence.text and (len(reused) >= 3 and _PLAYBACK_OPENER.match(fold(sentence.text))
                                           or len(reused) >= 2 and checked):
            moves.add("paraphrase")  # "So the score said healthy while the customer was halfway out the door."
        if "quantified" in moves and not [w for w in on_topic[i] if not w.isdigit()]:
            moves.discard("quantified")
        out.append(RepLine(sentence.text, index, i == 0, frozenset(moves), flaw))
    if len(words(text)) > MONOLOGUE_WORDS:
        out = [line if line.flaw else RepLine(line.text, index, line.first, line.moves, "monologue") for line in out]
    if out and not any(_has_substance(line) for line in out):
        out = [line if line.flaw else RepLine(line.text, index, line.first, line.moves, "content_free")
               for line in out]
    return out


_PLAYBACK_OPENER = re.compile(r"^(?:so|sounds like|it sounds like|that sounds like|so what|so youre|so your|so the)\b")
# A question that asks whether the playback before it was right.
_CHECK_BACK = re.compile(r"(?:have|did) i (?:got|get|understood|understand) (?:that|it|this) right|is that right"
                         r"|am i right|did i miss anything|does that sound right|is that fair|did i get that")
# Three or more short comma-separated items and no sentence around them: "Procurement, legal, budget freeze?"
_LIST = re.compile(r"^\W*(?:[\w$%.-]+(?: [\w$%.-]+){0,2}, ){2,}(?:and |or )?[\w$%.-]+(?: [\w$%.-]+){0,2}\W*$")


def _fragment(sentence: str) -> bool:
    """Four words or fewer and none of the words that hold a sentence together."""
    said = words(sentence)
    return 0 < len(said) <= 4 and not _GLUE & set(said)


def _has_substance(line: RepLine) -> bool:
    """A line a buyer can answer: unflawed, with two words of content or a question about something."""
    if line.flaw is not None:
        return False
    return len(content_words(line.text)) >= 2 or bool(line.moves & (_QUESTIONS | _PROPOSALS | {"paraphrase",
                                                                                               "quantified"}))


def turn_is_empty(scenario: Scenario, turns: Sequence[Turn]) -> bool:
    """Whether the rep's last turn says nothing the buyer can answer."""
    if not turns or turns[-1].role != "rep":
        return False
    reading = read(scenario, turns)
    return not reading.turns or reading.says_nothing(len(reading.turns) - 1)
