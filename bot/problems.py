"""Validation errors as problems a person can act on: the field's path and a plain message."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError


def _needs_quotes(key: str) -> bool:
    """A key that would read as more than one step of a path (or as none): `a.b`, `x[0]`, ``, `a: b`."""
    return not key or any(c in '.[]":' or c.isspace() or not c.isprintable() for c in key)


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """`("teams", 1, "approvals_channel")` → `teams[1].approvals_channel`; an odd key is quoted: `teams[0]["a.b"]`."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _needs_quotes(str(part)):
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"
        else:
            out += f"{'.' if out else ''}{part}"
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
        case "model_type" | "model_attributes_type" | "dataclass_type" | "dict_type":
            return "expected an object"  # pydantic's words name the Python class
    return str(error["msg"]).removeprefix("Value error, ")


def problems_of(exc: ValidationError, *, prefix: str = "", unknown: str = "unknown field") -> list[tuple[str, str]]:
    """Every error of a failed validation as (path, message)."""
    return [(field_path(e["loc"], prefix), describe(e, unknown=unknown)) for e in exc.errors()]
