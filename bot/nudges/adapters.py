"""Ingest adapters: every source format becomes the one internal `ScoredCall` model.

Errors name the field by path (`[1].scores[0].score`) so the sender can fix the payload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.problems import problems_of


class PayloadError(Exception):
    """The body cannot be ingested; `problems` holds (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


class Evidence(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    quote: str = Field(min_length=1, max_length=2000)
    at_s: float | None = Field(default=None, ge=0)
    speaker: str | None = None


class CriterionScore(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    criterion: str = Field(min_length=1, max_length=64)
    score: float
    max: float = Field(default=100, gt=0)
    evidence: list[Evidence] = []

    @model_validator(mode="after")
    def _in_range(self) -> CriterionScore:
        if not 0 <= self.score <= self.max:
            raise ValueError(f"score {self.score:g} is outside 0..{self.max:g}")
        return self

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max


class TranscriptTurn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    speaker: str
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    text: str = ""


class ScoredCall(BaseModel):
    """A call scored by a conversation-intelligence tool (the generic v1 format)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    call_id: str = Field(min_length=1, max_length=128)
    source: str = Field(default="generic", min_length=1, max_length=32)
    rep: str = Field(min_length=1, max_length=254)
    started_at: datetime
    duration_s: int | None = Field(default=None, ge=0)
    title: str | None = None
    call_type: str | None = None
    recording_url: str | None = None
    scores: list[CriterionScore] = []
    metrics: dict[str, float] = {}
    transcript: list[TranscriptTurn] = []

    @field_validator("started_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-20T15:04:05Z")
        return value.astimezone(UTC)

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


def _validate(item: Any, prefix: str) -> ScoredCall:
    try:
        return ScoredCall.model_validate(item)
    except ValidationError as exc:
        raise PayloadError(problems_of(exc, prefix=prefix)) from None


def from_gong(body: dict[str, Any]) -> ScoredCall:
    """A Gong automation-rule webhook body (`callData` in the calls/extensive shape)."""
    data = body.get("callData")
    if not isinstance(data, dict):
        raise PayloadError([("callData", "expected an object")])
    meta = data.get("metaData") or {}
    parties = data.get("parties") or []
    primary = meta.get("primaryUserId")
    rep = next(
        (p.get("emailAddress") for p in parties if primary and p.get("userId") == primary),
        None,
    ) or next((p.get("emailAddress") for p in parties if p.get("affiliation") == "Internal"), None)
    stats = {s.get("name"): s.get("value") for s in (data.get("interaction") or {}).get("interactionStats", [])}
    metrics: dict[str, float] = {}
    if isinstance(stats.get("Talk Ratio"), int | float):
        ratio = float(stats["Talk Ratio"])
        metrics["talk_ratio"] = ratio / 100 if ratio > 1 else ratio
    for name, key in (("Longest Monologue", "longest_monologue_s"), ("Longest Customer Story",
                      "longest_customer_story_s"), ("Patience", "patience_s")):
        if isinstance(stats.get(name), int | float):
            metrics[key] = float(stats[name])
    questions = (data.get("interaction") or {}).get("questions") or {}
    if isinstance(questions.get("companyCount"), int | float):
        metrics["questions"] = float(questions["companyCount"])
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
    return _validate({k: v for k, v in item.items() if v is not None}, "callData")


def parse_body(data: Any) -> list[ScoredCall]:
    """One call object, an array of them, or a Gong webhook body. `isTest` Gong bodies give []."""
    if isinstance(data, dict) and "callData" in data:
        return [] if data.get("isTest") else [from_gong(data)]
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
    raise PayloadError([("(body)", "expected a call object, an array of calls or a Gong webhook body")])
