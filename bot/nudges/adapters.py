"""Ingest adapters: every source format becomes the one internal `ScoredCall` model.

Formats (documented in docs/formats.md): the generic v1 JSON call, a Gong automation-rule webhook body
(`callData`), Gong answered scorecards (`answeredScorecards`, mapped to criteria by `GongMapping`) and CSV for
bulk import (`parse_csv`). Errors name the field by path (`[1].scores[0].score`,
`answeredScorecards[0].answers[2].score`, `row 4 (call c-1042).score`) so the sender can fix the input; every
problem of a body or file is collected before `PayloadError` is raised.
"""

from __future__ import annotations

import csv
import difflib
import gc
import io
import logging
import math
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.problems import problems_of

log = logging.getLogger(__name__)


class PayloadError(Exception):
    """The body cannot be ingested; `problems` holds (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def _not_a_boolean(value: Any) -> Any:
    """JSON's true and false are not numbers here (Python would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


_A_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _a_time(value: Any) -> Any:
    """A time is ISO 8601 text: a number (or text holding one) could be seconds or milliseconds since 1970, and is
    refused."""
    if not isinstance(value, str | datetime) or (isinstance(value, str) and _A_NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 time with a time zone, e.g. 2026-11-20T15:04:05Z")
    return value


# RFC 3986's characters; anything else in a recording URL (spaces, quotes, < > |, letters outside ASCII) is
# percent-encoded, as a browser does, so the address can be linked as it is.
_URL_SAFE = "-._~:/?#[]@!$&'()*+,;=%"
_HOST = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")


def _web_address(value: str | None) -> str | None:
    if value is None:
        return None
    address = urllib.parse.quote(value.strip(), safe=_URL_SAFE)
    try:
        parts = urllib.parse.urlsplit(address)
        host = parts.hostname or ""
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        parts, host = None, ""
    if parts is None or parts.scheme.lower() not in ("http", "https") or not _HOST.fullmatch(host):
        raise ValueError("must be an http(s) address with a host, such as https://ci.example.com/calls/1042")
    return address


def _none_is_empty(empty: type) -> Any:
    return lambda value: empty() if value is None else value


Number = Annotated[float, BeforeValidator(_not_a_boolean)]
Time = Annotated[datetime, BeforeValidator(_a_time)]


class Evidence(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
    quote: str = Field(min_length=1, max_length=2000)
    at_s: Number | None = Field(default=None, ge=0)
    speaker: str | None = None


class CriterionScore(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
    criterion: str = Field(min_length=1, max_length=64)
    max: Number = Field(default=100, gt=0)  # before `score`, which is checked against it
    score: Number
    evidence: list[Evidence] = []

    @field_validator("score")
    @classmethod
    def _in_range(cls, score: float, info: ValidationInfo) -> float:
        top = info.data.get("max")
        if top is not None and not 0 <= score <= top:
            raise ValueError(f"score {score:g} is outside 0..{top:g}")
        return score

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max


class TranscriptTurn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
    speaker: str
    start_s: Number = Field(ge=0)
    end_s: Number = Field(ge=0)
    text: str = ""


class ScoredCall(BaseModel):
    """A call scored by a conversation-intelligence tool (the generic v1 format)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)
    call_id: str = Field(min_length=1, max_length=128)
    source: str = Field(default="generic", min_length=1, max_length=32)
    rep: str = Field(min_length=1, max_length=254)
    started_at: Time
    duration_s: Annotated[int, BeforeValidator(_not_a_boolean)] | None = Field(default=None, ge=0, le=2**31 - 1)
    title: str | None = None
    call_type: str | None = None
    recording_url: Annotated[str | None, AfterValidator(_web_address)] = Field(default=None, max_length=2000)
    # null is the same as leaving the field out
    scores: Annotated[list[CriterionScore], BeforeValidator(_none_is_empty(list))] = []
    metrics: Annotated[dict[str, Number], BeforeValidator(_none_is_empty(dict))] = {}
    transcript: Annotated[list[TranscriptTurn], BeforeValidator(_none_is_empty(list))] = []

    @field_validator("started_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-20T15:04:05Z")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+05:00 or 9999-12-31T23:59-05:00
            raise ValueError("is out of range once converted to UTC") from None

    @field_validator("scores")
    @classmethod
    def _one_score_per_criterion(cls, scores: list[CriterionScore]) -> list[CriterionScore]:
        seen: set[str] = set()
        for score in scores:
            if score.criterion in seen:
                raise ValueError(f"criterion {score.criterion!r} is scored twice; send one score per criterion")
            seen.add(score.criterion)
        return scores

    @field_validator("rep")
    @classmethod
    def _rep(cls, value: str) -> str:
        value = value.strip()
        return value.lower() if "@" in value else value


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored; remove it"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains {ascii(text[exc.start])}, half of a UTF-16 surrogate pair; send valid Unicode"
    return None


def unstorable_text(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(path, message) for every string, key or value, that no database stores: a NUL character, or half of a
    surrogate pair (JSON's `\\ud83d` without its partner). Only `\\u` escapes produce them, so callers check
    bodies whose raw text has one."""
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(data, prefix)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if why := _unstorable(value):
                problems.append((path or "(body)", why))
        elif isinstance(value, dict):
            for key, item in value.items():
                if why := _unstorable(key):
                    problems.append((path or "(body)", f"the key {ascii(key)} {why}"))
                else:
                    stack.append((item, _key_path(path, key)))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return sorted(problems)


def _key_path(path: str, key: str) -> str:
    """`path.key`, or `path['key']` for a key that would read badly in a path (blank, spaces, dots, brackets)."""
    if key and key.strip() == key and not any(c in key for c in ".[] \t\n"):
        return f"{path}.{key}" if path else key
    return f"{path}[{ascii(key)}]"


def _validate(item: Any, prefix: str) -> ScoredCall:
    try:
        return ScoredCall.model_validate(item)
    except ValidationError as exc:
        raise PayloadError(problems_of(exc, prefix=prefix)) from None


# Gong interaction stats → metric keys (Talk Ratio is handled apart: Gong gives a fraction or a percent).
GONG_STATS = {
    "Longest Monologue": "longest_monologue_s",
    "Longest Customer Story": "longest_customer_story_s",
    "Patience": "patience_s",
    "Interactivity": "interactivity",
}


def _number(value: Any, path: str, beyond: list[tuple[str, str]]) -> float | None:
    """A finite JSON number as a float, else None (booleans and NaN are not numbers here); a number beyond what a
    float holds (1 followed by 400 zeros, 1e999) is noted in `beyond` under its path, as the generic format refuses
    it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if math.isinf(number):
        beyond.append((path, "is beyond the range of a number"))
    return number if math.isfinite(number) else None


# The parts of `callData` read here and the JSON type each must have; ScoredCall fields → where Gong puts them.
GONG_SHAPES = (("metaData", "an object", dict), ("parties", "an array", list), ("interaction", "an object", dict),
               ("content", "an object", dict))
GONG_FIELDS = {"call_id": "metaData.id", "started_at": "metaData.started", "duration_s": "metaData.duration",
               "title": "metaData.title", "call_type": "metaData.purpose", "recording_url": "metaData.url",
               "rep": "parties.emailAddress"}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def from_gong(body: dict[str, Any]) -> ScoredCall:
    """A Gong automation-rule webhook body (`callData` in the calls/extensive shape).

    Metrics: "Talk Ratio" (fraction or percent) → `talk_ratio`, the stats of `GONG_STATS`,
    `interaction.questions.companyCount` → `questions`, `content.trackers[]` counts → `tracker:<name>`.
    """
    data = body.get("callData")
    if not isinstance(data, dict):
        raise PayloadError([("callData", "expected an object")])
    wrong = [(f"callData.{key}", f"expected {kind}") for key, kind, shape in GONG_SHAPES
             if data.get(key) is not None and not isinstance(data[key], shape)]
    if wrong:
        raise PayloadError(wrong)
    meta = data.get("metaData") or {}
    parties = [p for p in data.get("parties") or [] if isinstance(p, dict)]
    primary = meta.get("primaryUserId")
    rep = next(
        (p.get("emailAddress") for p in parties if primary and p.get("userId") == primary),
        None,
    ) or next((p.get("emailAddress") for p in parties if p.get("affiliation") == "Internal"), None)
    interaction = data.get("interaction") or {}
    beyond: list[tuple[str, str]] = []  # numbers no float holds
    stats = {s.get("name"): _number(s.get("value"), f"callData.interaction.interactionStats[{i}].value", beyond)
             for i, s in enumerate(_list(interaction.get("interactionStats")))
             if isinstance(s, dict) and isinstance(s.get("name"), str)}
    metrics: dict[str, float] = {}
    ratio = stats.get("Talk Ratio")
    if ratio is not None:
        metrics["talk_ratio"] = ratio / 100 if ratio > 1 else ratio
    for name, key in GONG_STATS.items():
        if (value := stats.get(name)) is not None:
            metrics[key] = value
    questions = interaction.get("questions")
    asked = _number(questions.get("companyCount"), "callData.interaction.questions.companyCount", beyond) \
        if isinstance(questions, dict) else None
    if asked is not None:
        metrics["questions"] = asked
    for i, tracker in enumerate(_list((data.get("content") or {}).get("trackers"))):
        if not isinstance(tracker, dict) or not isinstance(tracker.get("name"), str) or not tracker["name"].strip():
            continue
        count = _number(tracker.get("count"), f"callData.content.trackers[{i}].count", beyond)
        if count is None and isinstance(tracker.get("occurrences"), list):
            count = float(len(tracker["occurrences"]))
        if count is not None:
            metrics[f"tracker:{tracker['name'].strip()}"] = count
    if beyond:
        raise PayloadError(beyond)
    item = {
        "call_id": meta.get("id"), "source": "gong", "rep": rep, "started_at": meta.get("started"),
        "duration_s": meta.get("duration"), "title": meta.get("title"), "call_type": meta.get("purpose"),
        "recording_url": meta.get("url"), "metrics": metrics,
    }
    missing = [(path, "required") for path, value in (
        ("callData.metaData.id", meta.get("id")),
        ("callData.metaData.started", meta.get("started")),
        ("callData.parties", rep or None),
    ) if not value]
    if missing:
        if ("callData.parties", "required") in missing:
            missing[-1] = ("callData.parties", "no Internal party (or primaryUserId) with an emailAddress")
        raise PayloadError(missing)
    try:
        return ScoredCall.model_validate({k: v for k, v in item.items() if v is not None})
    except ValidationError as exc:  # named as Gong names them, so the sender finds the field
        raise PayloadError([(f"callData.{GONG_FIELDS.get(error['loc'][0], error['loc'][0])}", message)
                            for error, (_, message) in zip(exc.errors(), problems_of(exc), strict=True)]) from None


# --- Gong answered scorecards ------------------------------------------------------------------------------------

def _stringify_keys(value: Any) -> Any:
    """YAML reads `12345:` as an int; Gong ids are numbers-as-strings, so keys become strings."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class GongQuestion(BaseModel):
    """One Gong scorecard question mapped to a Rehearse criterion, with the question's range from Gong's
    scorecard settings (`minRange`, `maxRange`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    criterion: str = Field(min_length=1, max_length=64)
    min_range: float = 1
    max_range: float = 5

    @model_validator(mode="after")
    def _range(self) -> GongQuestion:
        if not self.max_range > self.min_range:
            raise ValueError(f"max_range ({self.max_range:g}) must be above min_range ({self.min_range:g})")
        return self

    def percent(self, score: float) -> float:
        return min(100.0, (score - self.min_range) / (self.max_range - self.min_range) * 100)


class GongMapping(BaseModel):
    """`gong:` in coach.yaml: question id → criterion and range; Gong user id → the rep's email or Slack id."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    questions: Annotated[dict[str, GongQuestion], BeforeValidator(_stringify_keys)] = {}
    users: Annotated[dict[str, str], BeforeValidator(_stringify_keys)] = {}


def _gong_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else value


GongId = Annotated[str, BeforeValidator(_gong_id), Field(min_length=1, max_length=128)]


# Gong's own camelCase field names, so that error paths match the body the sender knows.
class _GongAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    questionId: GongId
    isOverall: bool | None = None
    notApplicable: bool | None = None
    score: Number | None = None
    answerText: str | None = None


class _GongScorecard(BaseModel):
    model_config = ConfigDict(extra="ignore")
    callId: GongId
    callStartTime: Time
    reviewedUserId: GongId
    answers: list[_GongAnswer] = []

    @field_validator("callStartTime")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-20T15:04:05Z")
        return value


# Gong question ids already reported as unmapped (warned once per process, not per body).
_unmapped_warned: set[str] = set()


def _warn_unmapped(question_ids: Iterable[str]) -> None:
    new = sorted(set(question_ids) - _unmapped_warned)
    if new:
        _unmapped_warned.update(new)
        log.warning("Gong scorecard question ids %s are not mapped in coach.yaml (gong.questions); "
                    "their answers are ignored", ", ".join(new))


def from_gong_scorecards(body: dict[str, Any], mapping: GongMapping) -> list[ScoredCall]:
    """Gong's `POST /v2/stats/activity/scorecards` answer: one `ScoredCall` per call.

    Scores are normalised by the mapped question's range to 0..100; overall and not-applicable answers and
    unmapped questions are skipped (unmapped ids are logged once). Several scorecards of one call (several
    reviewers) average per criterion. The rep is `mapping.users[reviewedUserId]`, else `gong-user:<id>`.
    """
    cards = body.get("answeredScorecards") if isinstance(body, dict) else None
    if not isinstance(cards, list):
        raise PayloadError([("answeredScorecards", "expected an array of answered scorecards")])
    problems: list[tuple[str, str]] = []
    unmapped: list[str] = []
    calls: dict[str, dict[str, Any]] = {}  # callId → what its scorecards say, in order of first appearance
    for i, raw in enumerate(cards):
        where = f"answeredScorecards[{i}]"
        try:
            card = _GongScorecard.model_validate(raw)
        except ValidationError as exc:
            problems += problems_of(exc, prefix=where)
            continue
        call = calls.setdefault(card.callId, {"index": i, "reviewed": card.reviewedUserId,
                                              "started_at": card.callStartTime, "scores": {}, "evidence": {}})
        if call["reviewed"] != card.reviewedUserId:
            problems.append((f"{where}.reviewedUserId", (
                f"call {card.callId} is already scored for Gong user {call['reviewed']} in "
                f"answeredScorecards[{call['index']}]; Rehearse keeps one rep per call")))
            continue
        for j, answer in enumerate(card.answers):
            if answer.isOverall or answer.notApplicable:
                continue
            question = mapping.questions.get(answer.questionId)
            if question is None:
                unmapped.append(answer.questionId)
                continue
            path = f"{where}.answers[{j}].score"
            if answer.score is None:
                problems.append((path, "required (or mark the answer notApplicable)"))
            elif not question.min_range <= answer.score <= question.max_range:
                problems.append((path, f"score {answer.score:g} is outside {question.min_range:g}.."
                                       f"{question.max_range:g} (question {answer.questionId})"))
            else:
                call["scores"].setdefault(question.criterion, []).append(question.percent(answer.score))
                text = (answer.answerText or "").strip()
                quotes = call["evidence"].setdefault(question.criterion, [])
                if text and text[:2000] not in quotes:
                    quotes.append(text[:2000])
    _warn_unmapped(unmapped)
    if problems:
        raise PayloadError(problems)
    out = []
    for call_id, call in calls.items():
        item = {
            "call_id": call_id, "source": "gong", "started_at": call["started_at"],
            "rep": mapping.users.get(call["reviewed"]) or f"gong-user:{call['reviewed']}",
            "scores": [{"criterion": criterion, "score": round(sum(values) / len(values), 2), "max": 100,
                        "evidence": [{"quote": q} for q in call["evidence"][criterion]]}
                       for criterion, values in call["scores"].items()],
        }
        try:
            out.append(ScoredCall.model_validate(item))
        except ValidationError as exc:
            rename = {"call_id": "callId", "started_at": "callStartTime", "rep": "reviewedUserId"}
            problems += [(f"answeredScorecards[{call['index']}].{rename.get(e['loc'][0], e['loc'][0])}", message)
                         for e, (_, message) in zip(exc.errors(), problems_of(exc), strict=True)]
    if problems:
        raise PayloadError(problems)
    return out


# --- CSV for bulk import -----------------------------------------------------------------------------------------

CSV_REQUIRED = ("call_id", "rep", "started_at", "criterion", "score")
CSV_OPTIONAL = ("source", "duration_s", "title", "call_type", "recording_url", "max", "evidence_quote",
                "evidence_at_s")
CSV_METRIC_PREFIX = "metric:"
_CSV_CALL_FIELDS = ("rep", "started_at", "duration_s", "title", "call_type", "recording_url")


class _CellError(ValueError):
    pass


def _csv_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _CellError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise _CellError(f"{text!r} is not a finite number")
    return value


def _csv_whole(text: str) -> int:
    value = _csv_float(text)
    if not value.is_integer():
        raise _CellError(f"{text!r} is not a whole number of seconds")
    return int(value)


def _csv_same(column: str, value: Any) -> Any:
    """The form two cells of a call are compared in: a timestamp's UTC instant (when it parses with a zone; else
    the text, and pydantic reports the mistake later), an email in lower case, anything else as it is."""
    if column == "started_at":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        return moment.astimezone(UTC) if moment.tzinfo else value
    if column == "rep" and "@" in value:
        return value.lower()
    return value


def _csv_header(cells: list[str]) -> tuple[dict[int, str], list[tuple[str, str]]]:
    """Column index → canonical name (`metric:<name>` keeps the metric's own spelling) and header problems.
    Columns with a blank header cell are left out (they must stay empty)."""
    known = CSV_REQUIRED + CSV_OPTIONAL
    columns: dict[int, str] = {}
    problems: list[tuple[str, str]] = []
    for index, cell in enumerate(cells):
        name = cell.strip()
        if not name:
            continue
        if name.lower().startswith(CSV_METRIC_PREFIX):
            metric = name[len(CSV_METRIC_PREFIX):].strip()
            canonical = f"{CSV_METRIC_PREFIX}{metric}"
            if not metric:
                problems.append((f"header.{name}", "a metric column needs a name, e.g. metric:talk_ratio"))
                continue
        elif name.lower() in known:
            canonical = name.lower()
        else:
            close = difflib.get_close_matches(name.lower(), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append((f"header.{name}", f"unknown column{hint} Columns: {', '.join(known)}, "
                                              f"and metric:<name>"))
            continue
        if canonical in columns.values():
            problems.append((f"header.{canonical}", "the column appears twice"))
            continue
        columns[index] = canonical
    for name in CSV_REQUIRED:
        if name not in columns.values():
            problems.append((f"header.{name}", "required column is missing"))
    return columns, problems


@contextmanager
def _bulk() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector while building many small acyclic objects: on 100,000 calls its
    repeated full scans cost more than the parsing itself. Reference counting still frees memory meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_csv(text: str) -> list[ScoredCall]:
    """CSV for bulk import: one row per call and criterion (see docs/formats.md for the header).

    Rows with the same (source, call_id) make one call; its call-level cells must agree (a blank optional cell
    takes the call's value from its other rows). A row with both `criterion` and `score` blank carries call-level
    fields and metrics only. Problems are paths like `row 4 (call c-1042).score`, the header being row 1.
    """
    with _bulk():
        return _parse_csv(text)


def _parse_csv(text: str) -> list[ScoredCall]:
    rows = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = next(rows, None)
    if header is None or not any(cell.strip() for cell in header):
        raise PayloadError([("row 1 (header)", f"the CSV needs a header row: {','.join(CSV_REQUIRED)},...")])
    columns, problems = _csv_header(header)
    if problems:
        raise PayloadError(problems)  # rows cannot be read against a wrong header
    width = len(header)
    plan = [(index, column, _csv_reader(column)) for index, column in sorted(columns.items())]
    unnamed = [index for index in range(width) if index not in columns]
    call_columns = [c for c in _CSV_CALL_FIELDS if c in columns.values()]
    call_columns += [c for c in columns.values() if c.startswith(CSV_METRIC_PREFIX)]

    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for number, cells in enumerate(rows, start=2):
        values: dict[str, Any] = {}
        bad: list[tuple[str, str]] = []
        for index, column, read in plan:
            cell = cells[index].strip() if index < len(cells) else ""
            if cell:
                try:
                    values[column] = read(cell)
                except _CellError as exc:
                    values[column] = None
                    bad.append((column, str(exc)))
        call_id = values.get("call_id")
        label = f"row {number} (call {call_id})" if call_id else f"row {number}"
        stray = [i for i in unnamed if i < len(cells) and cells[i].strip()]
        stray += [i for i in range(width, len(cells)) if cells[i].strip()]
        if not values and not stray:
            continue  # a blank line or a row of empty cells
        if stray:
            where = "past the header's last column" if stray[0] >= width else "its header cell is blank"
            problems.append((label, f"has a value in column {stray[0] + 1} ({where})"))
            continue
        problems += [(f"{label}.{column}", message) for column, message in bad]
        problems += _csv_row(values, label, groups, call_columns, bool(bad))
    if not groups and not problems:
        raise PayloadError([("(file)", "no calls: the CSV has a header but no rows")])

    calls = []
    for group in groups.values():
        try:
            calls.append(ScoredCall.model_validate(group["item"]))
        except ValidationError as exc:
            for error, (_, message) in zip(exc.errors(), problems_of(exc), strict=True):
                label, column = _csv_origin(group, error["loc"])
                problems.append((f"{label}.{column}", message))
    if problems:
        raise PayloadError(problems)
    return calls


def _csv_reader(column: str) -> Any:
    if column in ("score", "max", "evidence_at_s") or column.startswith(CSV_METRIC_PREFIX):
        return _csv_float
    return _csv_whole if column == "duration_s" else str


def _csv_row(values: dict[str, Any], label: str, groups: dict[tuple[str, str], dict[str, Any]],
             call_columns: list[str], bad: bool) -> list[tuple[str, str]]:
    """Add one data row (its non-blank cells read; None where unreadable) to its call's group; its problems."""
    problems: list[tuple[str, str]] = []
    for column in ("call_id", "rep", "started_at"):
        if column not in values:
            problems.append((f"{label}.{column}", "required"))
    if ("criterion" in values) != ("score" in values):
        missing = "score" if "criterion" in values else "criterion"
        problems.append((f"{label}.{missing}", "required (leave both criterion and score blank for a row of "
                                               "call-level fields only)"))
    if "evidence_at_s" in values and "evidence_quote" not in values:
        problems.append((f"{label}.evidence_quote", "required when evidence_at_s is given"))
    if problems or bad:
        return problems

    key = (values.get("source", "generic"), values["call_id"])
    group = groups.get(key)
    if group is None:
        group = groups[key] = {"item": {"call_id": key[1], "source": key[0], "scores": [], "metrics": {}},
                               "origin": {}, "score_rows": [], "criteria": {}, "label": label}
    item, origin = group["item"], group["origin"]
    for column in call_columns:
        value = values.get(column)
        if value is None:
            continue
        metric = column.startswith(CSV_METRIC_PREFIX)
        target, field = (item["metrics"], column[len(CSV_METRIC_PREFIX):]) if metric else (item, column)
        if column not in origin:
            target[field] = value
            origin[column] = label
        elif value != target[field] and _csv_same(column, value) != _csv_same(column, target[field]):
            problems.append((f"{label}.{column}", f"{value!r} disagrees with {target[field]!r} in "
                                                  f"{origin[column]}: a call's rows must agree"))
    if "criterion" in values:
        criterion = values["criterion"]
        if criterion in group["criteria"]:
            problems.append((f"{label}.criterion", f"{criterion!r} is already scored for this call in "
                                                   f"{group['criteria'][criterion]}"))
            return problems
        group["criteria"][criterion] = label
        score: dict[str, Any] = {"criterion": criterion, "score": values["score"]}
        if "max" in values:
            score["max"] = values["max"]
        if "evidence_quote" in values:
            score["evidence"] = [{"quote": values["evidence_quote"], "at_s": values.get("evidence_at_s")}]
        item["scores"].append(score)
        group["score_rows"].append(label)
    return problems


_CSV_SCORE_COLUMNS = {"criterion": "criterion", "score": "score", "max": "max", "quote": "evidence_quote",
                      "at_s": "evidence_at_s"}


def _csv_origin(group: dict[str, Any], loc: tuple[int | str, ...]) -> tuple[str, str]:
    """The row label and column a validation error of a grouped call comes from."""
    if loc and loc[0] == "scores" and len(loc) > 1 and isinstance(loc[1], int):
        column = _CSV_SCORE_COLUMNS.get(str(loc[-1]), "score")  # () is the score-in-range check
        return group["score_rows"][loc[1]], column
    if loc and loc[0] == "metrics" and len(loc) > 1:
        column = f"{CSV_METRIC_PREFIX}{loc[1]}"
    else:
        column = str(loc[0]) if loc else "call_id"
    return group["origin"].get(column, group["label"]), column


# --- one entry point for JSON bodies -----------------------------------------------------------------------------

def parse_body(data: Any, *, gong: GongMapping | None = None) -> list[ScoredCall]:
    """One call object, an array of them, a Gong webhook body or Gong answered scorecards.

    `isTest` Gong bodies give []; so does an empty `answeredScorecards` page. `gong` maps scorecard questions
    and users (coach.yaml `gong:`); without it every question is unmapped and reps are `gong-user:<id>`.
    """
    if isinstance(data, dict) and "callData" in data:
        if data.get("isTest") is not None and not isinstance(data["isTest"], bool):
            raise PayloadError([("isTest", "must be true or false (Gong sends true for a rule's test call)")])
        return [] if data.get("isTest") else [from_gong(data)]
    if isinstance(data, dict) and "answeredScorecards" in data:
        return from_gong_scorecards(data, gong or GongMapping())
    if isinstance(data, dict):
        return [_validate(data, "")]
    if isinstance(data, list):
        if not data:
            raise PayloadError([("(body)", "empty array: send at least one call")])
        calls, problems = [], []
        for i, item in enumerate(data):
            try:
                calls.append(_validate(item, f"[{i}]"))
            except PayloadError as exc:
                problems.extend(exc.problems)
        if problems:
            raise PayloadError(problems)
        return calls
    raise PayloadError([("(body)", "expected a call object, an array of calls, a Gong webhook body or Gong "
                                   "answered scorecards")])
