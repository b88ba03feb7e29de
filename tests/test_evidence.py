"""The verbatim-evidence guard: a quote counts only if the rep said it, and the rep's own wording is kept."""

from __future__ import annotations

import pytest

from bot.practice.evidence import closest_sentence, normalise, verify_quote

REP = [
    "That's fair, it's a real jump from 128 \u2014 and I'd rather you push on it now.",
    "When you say closer to 130, what's that number being compared against?",
    "Fair enough. Deadhead cost you about $2.1M   last year.",
    "Got it.\nWhat does the CFO need to see?",
]
BUYER = "I'll be straight with you. At $186,000 you're about forty-five percent over what we pay today."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\u201cThat\u2019s  FAIR\u201d", "'that's fair'"),
        ("jump \u2013 and\u2014so", "jump - and-so"),
        ("  two\n\tlines\u00a0here ", "two lines here"),
        ("wait\u2026", "wait..."),
    ],
)
def test_normalise_folds_case_whitespace_quotes_and_dashes(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("quote", "expected"),
    [
        # exact, and the rep's own punctuation and typography are what is kept
        ("it's a real jump from 128", "it's a real jump from 128"),
        ("what's that number being compared against?", "what's that number being compared against?"),
        ("what's that number being compared against", "what's that number being compared against?"),
        # a model's typographic copy: curly quotes, dashes, case, whitespace, wrapping quote marks
        ("That\u2019s fair, it\u2019s a real jump", "That's fair, it's a real jump"),
        ("from 128 - and I'd rather", "from 128 \u2014 and I'd rather"),
        ("\u201cTHAT'S FAIR, IT'S A REAL JUMP.\u201d", "That's fair, it's a real jump"),
        ("deadhead cost you about $2.1M last year", "Deadhead cost you about $2.1M   last year."),
        ("Got it. What does the CFO need to see?", "Got it.\nWhat does the CFO need to see?"),
        # short quotes pass only as whole sentences
        ("Fair enough.", "Fair enough."),
        ("got it", "Got it."),
        ("the CFO", None),
        ("compared against", None),
        ("Fair", None),
        # not verbatim: edits, elisions, part words, buyer text, empty
        ("it's a big jump from 128", None),
        ("That's fair... I'd rather you push on it now", None),
        ("hat's fair, it's a real jum", None),
        ("you're about forty-five percent over what we pay today", None),
        ("", None),
        ("\u201c...\u201d", None),
    ],
)
def test_verify_quote(quote: str, expected: str | None) -> None:
    assert verify_quote(quote, REP) == expected


def test_buyer_text_is_not_evidence_even_when_it_is_in_the_conversation() -> None:
    assert verify_quote("I'll be straight with you", REP) is None
    assert verify_quote("I'll be straight with you", [BUYER]) == "I'll be straight with you."


def test_closest_sentence_is_a_real_rep_sentence() -> None:
    assert closest_sentence("Deadhead cost you roughly two million last year", REP) == (
        "Deadhead cost you about $2.1M   last year."
    )
    assert closest_sentence("We can knock 20% off if you sign today", []) is None
    assert closest_sentence("zzzz", REP) is None
