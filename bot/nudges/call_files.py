"""Scored calls from a file (`rehearse ingest`, `rehearse calibrate`): JSON, JSONL or CSV."""

from __future__ import annotations

import json
from pathlib import Path

from bot.nudges.adapters import GongMapping, PayloadError, ScoredCall, parse_body, parse_csv, unstorable_text


def read_call_file(path: Path, *, gong: GongMapping | None = None) -> list[ScoredCall]:
    """Every call in the file, or PayloadError naming each problem by line, row or field."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError([("(file)", f"is not UTF-8 text (byte {exc.start}); save it as UTF-8")]) from None
    if path.suffix.lower() == ".csv":
        if "\x00" in text:
            line = text.count("\n", 0, text.index("\x00")) + 1
            raise PayloadError([(f"line {line}", "contains a NUL character, which cannot be stored; remove it")])
        return parse_csv(text)
    if path.suffix.lower() == ".jsonl":
        items, problems = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                problems.append((f"line {number}", f"not valid JSON at column {exc.colno}: {exc.msg}"))
        if problems:
            raise PayloadError(problems)
        calls = []
        for number, item in enumerate(items, start=1):
            if unstorable := unstorable_text(item):
                problems.extend((f"line {number}: {field}", message) for field, message in unstorable)
                continue
            try:
                calls.extend(parse_body(item, gong=gong))
            except PayloadError as exc:
                problems.extend((f"line {number}: {field}", message) for field, message in exc.problems)
        if problems:
            raise PayloadError(problems)
        return calls
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError([(f"line {exc.lineno}", f"not valid JSON at column {exc.colno}: {exc.msg}")]) from None
    if unstorable := unstorable_text(data):
        raise PayloadError(unstorable)
    return parse_body(data, gong=gong)
