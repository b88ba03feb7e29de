"""Practice scenarios: the YAML schema, its validation, and loading a directory of scenario files.

One file per scenario, named after its id (``scenarios/price-objection.yaml``). Fields:

- ``id``: kebab-case, equal to the file stem. ``skill``: the snake_case criterion name the call scorer uses
  (``objection_handling``), so a weak live-call criterion maps to this scenario.
- ``title``, ``goal`` (the rep's goal, second person), ``context`` (the deal situation), ``tags``.
- ``level``: 1-4, the weighted mean rubric level that counts as passing.
- ``max_turns``: rep turns before the roleplay ends.
- ``persona``: ``name``, ``role``, ``company``, ``temperament``, ``hidden_concerns`` (what a rep can uncover).
- ``opening_line``: the buyer's first line.
- ``must_not``: rep moves that fail the drill whatever else went well (``[discount]`` on a hold-the-price drill):
  the score is capped below passing and the feedback quotes the line. An instruction to the grader always is one.
- ``beats``: scripted buyer lines. ``when`` is a rep move (see ``MOVES``), ``question`` (open or closed),
  ``off_topic`` (the turn says nothing about the deal), ``any`` (fallback) or ``impatient`` (the buyer's patience
  has run out; takes precedence). ``about`` narrows a beat to turns that mention one of its phrases (matched as
  ``any_phrases``), so a question about something the buyer knows gets that fact. The first unused beat whose
  ``when`` and ``about`` match the rep's last turn wins, then the first unused ``any``; no line is said twice, and
  when nothing fitting is left the buyer ends the call with the ``impatient`` beat. ``min_trust`` (0-5) holds a
  beat back until the buyer's trust meter reaches it; ``closes: true`` ends the roleplay once the buyer says it.
  At least one ``any`` beat and one closing ``impatient`` beat.
- ``rubric``: 2-5 criteria, each ``id`` (snake_case), ``label`` (third person: "Asks ..."), ``weight`` (> 0,
  normalised in code), ``levels`` (1, 2, 3 and 4: observable behaviour) and ``checks`` for the rule grader:

  - ``any_phrases``: phrase families, matched per sentence on word boundaries, ignoring case, quotes and
    apostrophes; a trailing ``*`` matches any word ending (``discount*``).
  - ``moves``: sentence-level rep moves (not ``long_turn``, ``pitch`` or ``done``, which are turn-level).
  - ``numbers``: the sentence states a figure (``$``, ``%``, or a number with a unit such as hours or days).
  - ``match``: ``any`` (default) or ``all`` of the matchers above must hold in the same sentence.
  - ``turn_start``: only the first sentence of each rep turn counts.
  - ``min_count`` (default 1) distinct matching sentences reach level 3, ``strong_count`` (default
    ``min_count + 1``) reach level 4; fewer than ``min_count`` but some is level 2; none is level 1. Open
    questions count one per turn ("one at a time"). With ``match: all``, a sentence that has the phrase but not
    the rest (a saving without its figure, a yes/no question about the decision) is level 2.
  - ``forbid_phrases`` / ``forbid_moves``: any occurrence caps the level at 2 (at 1 with no positive match)
    and is quoted as evidence; an offending sentence never counts as a positive match.
  - ``avoided_level`` (1 or 2, default 1): the level for not doing what the criterion forbids when no line showed
    its behaviour either, for a rubric whose level 2 reads "avoids bashing but dodges the comparison".
  - ``max_words``: share of rep turns at or under this many words: all 4, >= 75% 3, >= 50% 2, else 1
    (combined with the matchers by taking the lower level).

  ``examples`` (optional) holds a rep line at each level (``4: "..."``), in the scenario's words: the model grader
  sees them, and the feedback offers the level-4 line as a better version. ``gamed`` lists lines that only look
  like the behaviour (keywords, a content-free probe) and earn level 1. Neither may give away a hidden concern.

Before any check, every rep sentence is read in its context (``bot.practice.substance``): an instruction to the
grader, text copied from the rubric, the brief or the buyer, a keyword list, an off-topic or content-free turn
and a monologue earn nothing, and a question, a playback or a figure counts only when it is about the deal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.problems import problems_of

Move = Literal[
    "open_question",
    "closed_question",
    "acknowledged",
    "quantified",
    "next_step",
    "discount",
    "paraphrase",
    "pressure",
    "pitch",
    "long_turn",
    "done",
]
MOVES: tuple[str, ...] = get_args(Move)
TURN_LEVEL_MOVES = frozenset({"long_turn", "pitch", "done"})
Trigger = Literal[Move, "question", "off_topic", "any", "impatient"]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

_KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Persona(_Model):
    name: Text
    role: Text
    company: Text
    temperament: Text
    hidden_concerns: tuple[Text, ...] = ()


class Beat(_Model):
    when: Trigger
    line: Text
    about: tuple[Text, ...] = ()
    closes: bool = False
    min_trust: int = Field(0, ge=0, le=5)


class Checks(_Model):
    any_phrases: tuple[Text, ...] = ()
    moves: tuple[Move, ...] = ()
    numbers: bool = False
    match: Literal["any", "all"] = "any"
    turn_start: bool = False
    min_count: int = Field(1, ge=1)
    strong_count: int | None = None
    forbid_phrases: tuple[Text, ...] = ()
    forbid_moves: tuple[Move, ...] = ()
    max_words: int | None = Field(None, ge=5)
    # The level earned by not doing what the criterion forbids when nothing showed its behaviour either, for a
    # rubric whose level 2 reads "avoids bashing but dodges the comparison".
    avoided_level: Literal[1, 2] = 1

    @field_validator("moves")
    @classmethod
    def _sentence_level(cls, moves: tuple[str, ...]) -> tuple[str, ...]:
        turn_level = sorted(TURN_LEVEL_MOVES.intersection(moves))
        if turn_level:
            raise ValueError(f"{', '.join(turn_level)} are turn-level moves: use forbid_moves or max_words")
        return moves

    @model_validator(mode="after")
    def _positive_and_counts(self) -> Checks:
        if not (self.any_phrases or self.moves or self.numbers or self.max_words):
            raise ValueError("needs at least one of any_phrases, moves, numbers or max_words")
        if self.strong_count is not None and self.strong_count <= self.min_count:
            raise ValueError("strong_count must be greater than min_count")
        if self.avoided_level > 1 and not (self.forbid_phrases or self.forbid_moves):
            raise ValueError("avoided_level needs forbid_phrases or forbid_moves: it is the level for avoiding them")
        return self

    @property
    def strong(self) -> int:
        """Distinct matching sentences needed for level 4."""
        return self.strong_count or self.min_count + 1


class RubricCriterion(_Model):
    id: Text
    label: Text
    weight: float = Field(gt=0)
    levels: dict[int, Text]
    checks: Checks
    examples: dict[int, Text] = {}
    gamed: tuple[Text, ...] = ()

    @field_validator("id")
    @classmethod
    def _snake_id(cls, value: str) -> str:
        if not _SNAKE.match(value):
            raise ValueError(f"'{value}' must be snake_case, like acknowledge_concern")
        return value

    @field_validator("levels")
    @classmethod
    def _four_levels(cls, levels: dict[int, str]) -> dict[int, str]:
        if set(levels) != {1, 2, 3, 4}:
            raise ValueError("needs levels 1, 2, 3 and 4")
        return levels

    @field_validator("examples")
    @classmethod
    def _example_levels(cls, examples: dict[int, str]) -> dict[int, str]:
        if not set(examples) <= {1, 2, 3, 4}:
            raise ValueError("examples are keyed by level: 1, 2, 3 or 4")
        return examples


class Scenario(_Model):
    id: Text
    skill: Text
    title: Text
    level: int = Field(ge=1, le=4)
    max_turns: int = Field(ge=1, le=20)
    tags: tuple[Text, ...] = ()
    goal: Text
    context: Text
    persona: Persona
    opening_line: Text
    must_not: tuple[Move, ...] = ()
    beats: tuple[Beat, ...] = Field(min_length=1)
    rubric: tuple[RubricCriterion, ...] = Field(min_length=2, max_length=5)

    @field_validator("id")
    @classmethod
    def _kebab_id(cls, value: str) -> str:
        if not _KEBAB.match(value):
            raise ValueError(f"'{value}' must be kebab-case, like price-objection")
        if len(value) > 64:  # it is stored with each nudge, and carried by each Start button
            raise ValueError(f"'{value[:20]}…' is {len(value)} characters; 64 at most")
        return value

    @field_validator("skill")
    @classmethod
    def _snake_skill(cls, value: str) -> str:
        if not _SNAKE.match(value):
            raise ValueError(f"'{value}' must be the scorer's snake_case criterion, like objection_handling")
        return value

    @field_validator("beats")
    @classmethod
    def _fallback_and_unique(cls, beats: tuple[Beat, ...]) -> tuple[Beat, ...]:
        if not any(beat.when == "any" for beat in beats):
            raise ValueError("needs at least one 'when: any' fallback beat")
        if not any(beat.when == "impatient" and beat.closes for beat in beats):
            raise ValueError("needs a 'when: impatient' beat with 'closes: true', so the buyer can end the call")
        lines = [" ".join(beat.line.lower().split()) for beat in beats]
        repeated = sorted({line for line in lines if lines.count(line) > 1})
        if repeated:
            raise ValueError(f"each beat line must be unique; repeated: {repeated[0]!r}")
        return beats

    @field_validator("rubric")
    @classmethod
    def _unique_criteria(cls, rubric: tuple[RubricCriterion, ...]) -> tuple[RubricCriterion, ...]:
        ids = [criterion.id for criterion in rubric]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"criterion ids must be unique; repeated: {', '.join(repeated)}")
        return rubric

    def criterion(self, criterion_id: str) -> RubricCriterion:
        """The rubric criterion with this id."""
        for criterion in self.rubric:
            if criterion.id == criterion_id:
                return criterion
        raise KeyError(criterion_id)


class ScenarioError(Exception):
    """Scenario files that failed to load; ``problems`` names each by file and field path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} scenario problem(s):\n" + "\n".join(self.problems))


def load_scenarios(directory: Path) -> dict[str, Scenario]:
    """Load every scenario file in ``directory`` by id, raising ScenarioError with all problems found."""
    scenarios, problems = _load(Path(directory))
    if problems:
        raise ScenarioError(problems)
    return scenarios


def scenario_problems(directory: Path) -> list[str]:
    """Every problem in the scenario files of ``directory``; empty when they all load."""
    return _load(Path(directory))[1]


def _load(directory: Path) -> tuple[dict[str, Scenario], list[str]]:
    if not directory.is_dir():
        return {}, [f"{directory}: scenario directory not found"]
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not paths:
        return {}, [f"{directory}: no scenario files (*.yaml)"]
    scenarios: dict[str, Scenario] = {}
    problems: list[str] = []
    for path in paths:
        scenario, file_problems = _load_file(path)
        problems.extend(f"{path.name}: {problem}" for problem in file_problems)
        if scenario is not None:
            scenarios[scenario.id] = scenario
    return scenarios, problems


def _load_file(path: Path) -> tuple[Scenario | None, list[str]]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except UnicodeDecodeError:
        return None, ["not UTF-8 text"]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return None, [f"{where}YAML syntax error: {exc.problem or exc.context}"]
    except yaml.YAMLError as exc:
        return None, [f"YAML syntax error: {exc}"]
    if not isinstance(data, dict):
        return None, ["expected a mapping of scenario fields at the top level"]
    problems: list[str] = []
    if "id" in data and data["id"] != path.stem:
        problems.append(f"id: must equal the file name '{path.stem}'")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems.extend(f"{path}: {message}" for path, message in problems_of(exc))
        return None, problems
    return (None if problems else scenario), problems


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys instead of keeping the last one."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
