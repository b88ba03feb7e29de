"""The verbatim-evidence guard: a grader's quote counts only if the rep actually said it.

Matching folds case, whitespace, curly quotes and dashes, so a model's typographic copy still matches, but the
evidence kept is always the rep's own wording cut from the original turn. Pure functions, no model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

from bot.practice.transcript import sentences

SHORT_QUOTE_WORDS = 3  # a quote with fewer words passes only when it is a whole sentence

_FOLD = {
    **dict.fromkeys('\u2018\u2019\u201a\u201b\u02bc\u2032`\u201c\u201d\u201e\u201f\u2033"', "'"),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    "\u2026": "...",
}
_EDGES = " '.,;:!?-()[]"  # stripped from both ends of a quote before matching
_SENTENCE_END = ".!?\u2026"


def _folded(text: str) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the offset of the original character it came from."""
    out: list[str] = []
    origin: list[int] = []
    space_at: int | None = None
    for i, char in enumerate(text):
        if char.isspace():
            if out and space_at is None:
                space_at = i
            continue
        if space_at is not None:
            out.append(" ")
            origin.append(space_at)
            space_at = None
        for folded in _FOLD.get(char, char).lower():
            out.append(folded)
            origin.append(i)
    return "".join(out), origin


def normalise(text: str) -> str:
    """Lower-case ``text`` with curly quotes made straight, dashes made hyphens and whitespace collapsed."""
    return _folded(text)[0]


def _core(text: str) -> str:
    """A normalised quote without the punctuation, quote marks and ellipses a model wraps around it."""
    return normalise(text).strip(_EDGES)


def verify_quote(quote: str, rep_turns: Sequence[str]) -> str | None:
    """The rep's own wording of ``quote`` if it is a verbatim, contiguous part of one of ``rep_turns``, else None.

    ``rep_turns`` must hold only the rep's turns. A quote that elides text ("...") is not verbatim, and a quote
    of fewer than three words passes only when it is a whole sentence of a turn; the match is on word
    boundaries, and a sentence's own end mark is kept.
    """
    core = _core(quote)
    if not core:
        return None
    if len(core.split()) < SHORT_QUOTE_WORDS:
        for turn in rep_turns:
            for sentence in sentences(turn):
                if _core(sentence) == core:
                    return sentence.strip()
        return None
    pattern = re.compile(
        (r"(?<!\w)" if core[0].isalnum() else "") + re.escape(core) + (r"(?!\w)" if core[-1].isalnum() else "")
    )
    for turn in rep_turns:
        folded, origin = _folded(turn)
        match = pattern.search(folded)
        if match is None:
            continue
        start, end = origin[match.start()], origin[match.end() - 1] + 1
        while end < len(turn) and turn[end] in _SENTENCE_END:  # keep the rep's own full stop or question mark
            end += 1
        return turn[start:end]
    return None


def closest_sentence(quote: str, rep_turns: Sequence[str], *, cutoff: float = 0.3) -> str | None:
    """The rep's sentence most like ``quote`` (a hint for a regrade), or None if none is at least ``cutoff`` alike."""
    target = _core(quote)
    candidates = [sentence.strip() for turn in rep_turns for sentence in sentences(turn)]
    scored = [(SequenceMatcher(None, target, _core(sentence)).ratio(), sentence) for sentence in candidates]
    ratio, best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
    return best if ratio >= cutoff else None
