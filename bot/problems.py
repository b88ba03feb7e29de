"""Validation errors as problems a person can act on: the field's path and a plain message."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """`("teams", 1, "approvals_channel")` → `teams[1].approvals_channel`."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out or "(top level)"


def describe(error: Any, *, unknown: str = "unknown field") -> str:
    """One pydantic error in words: `required`, `unknown field`, `needs at least 2 items, has 1`, ..."""
    ctx = error.get("ctx", {})
    match error["type"]:
        case "missing":
            return "required"
        case "extra_forbidden":
            return unknown
        case "too_short":
            return f"needs at least {ctx.get('min_length')} items, has {ctx.get('actual_length')}"
        case "too_long":
            return f"needs at most {ctx.get('max_length')} items, has {ctx.get('actual_length')}"
    return str(error["msg"]).removeprefix("Value error, ")


def problems_of(exc: ValidationError, *, prefix: str = "", unknown: str = "unknown field") -> list[tuple[str, str]]:
    """Every error of a failed validation as (path, message)."""
    return [(field_path(e["loc"], prefix), describe(e, unknown=unknown)) for e in exc.errors()]
