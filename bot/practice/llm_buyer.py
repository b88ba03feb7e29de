"""A buyer played by a chat model in the scenario's persona, falling back to a scripted buyer turn by turn.

The model sees the persona, the deal context and the scripted beats as guidance, never the rubric or the rep's
goal. It answers in structured output: the line it says and whether it ends the call with it (agreeing to a next
step, or walking away), so the roleplay ends on the buyer's decision, not on matching a scripted sentence. Any
failure (timeout, HTTP error, malformed or empty reply) is logged and that one turn comes from ``fallback``, so
the rep never sees an error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import openai
from pydantic import BaseModel, ConfigDict

from bot.practice.roleplay import Buyer
from bot.practice.scenarios import Beat, Scenario
from bot.practice.transcript import Turn, sentences
from bot.telemetry import model_failure, observe_model

logger = logging.getLogger(__name__)

MAX_SENTENCES = 3
TEMPERATURE = 0.7

_WHEN = {
    "open_question": "they ask you an open question",
    "closed_question": "they ask you a yes/no question",
    "acknowledged": "they acknowledge your concern",
    "paraphrase": "they play back what you said",
    "quantified": "they put real numbers on the value",
    "next_step": "they propose a concrete next step",
    "discount": "they offer a discount or a lower price",
    "pitch": "they pitch features at you",
    "long_turn": "they talk at you for a long time",
    "impatient": "your patience has run out",
    "any": "nothing above fits",
}


def persona_prompt(scenario: Scenario, priorities: Sequence[str] = (), *, opening: str | None = None) -> str:
    """The system prompt that puts the model in the buyer's seat for this scenario; `opening` is what the buyer
    said first in this roleplay (the scenario's opening line, or their own words from the rep's real call)."""
    persona = scenario.persona
    lines = [
        f"You are {persona.name}, {persona.role} at {persona.company}, on a call with a salesperson.",
        f"How you come across: {persona.temperament}",
        f"The deal, as briefed to the salesperson ('you' there is them; {persona.name} is you): {scenario.context}",
    ]
    if persona.hidden_concerns:
        lines += [
            "",
            "On your mind (written about you), which you don't volunteer; let it out only when they earn it:",
            *(f"- {concern}" for concern in persona.hidden_concerns),
        ]
    if priorities:
        lines += [
            "",
            "What you keep hearing from peers and the market lately; it colours what you care about:",
            *(f"- {priority}" for priority in priorities),
        ]
    lines += [
        "",
        "Things you might say, in your own words, when the moment fits:",
        *(_beat_line(beat) for beat in scenario.beats),
        "",
        f"You opened the call with: {opening or scenario.opening_line}",
        "",
        "How you speak: react to what they just said, as a real buyer would, in one to three short spoken",
        "sentences. No lists, no stage directions, no name prefix. Warm up when they ask good questions, listen,",
        "acknowledge you and use your numbers; cool off when they pitch, ramble or cave on price.",
        f"Stay {persona.name} whatever they say. You are a person on a call: never say or hint that this is",
        "practice, an exercise or a roleplay, that you are an AI, or that you follow instructions, and never",
        "discuss how the salesperson is being assessed. If they ask you to step out of character, react as",
        f"{persona.name} would to an odd remark.",
        "",
        "Answer with `line`, what you say, and `ends_call`: true only when you end the call with that line,",
        "because you have agreed to a concrete next step or because you are walking away; otherwise false.",
    ]
    return "\n".join(lines)


class _Said(BaseModel):
    model_config = ConfigDict(extra="ignore")

    line: str
    ends_call: bool


REPLY_SCHEMA = {
    "type": "object",
    "properties": {"line": {"type": "string"}, "ends_call": {"type": "boolean"}},
    "required": ["line", "ends_call"],
    "additionalProperties": False,
}


def _beat_line(beat: Beat) -> str:
    note = " (only once they have earned your trust)" if beat.min_trust >= 3 else ""
    ends = " (and you end the call)" if beat.closes else ""
    return f"- When {_WHEN.get(beat.when, beat.when)}{note}{ends}: {beat.line}"


def chat_messages(scenario: Scenario, turns: Sequence[Turn], priorities: Sequence[str] = ()) -> list[dict]:
    """The chat: the persona as system, the rep's turns as user and the buyer's as assistant messages."""
    opening = turns[0].text if turns and turns[0].role == "buyer" else None
    messages = [{"role": "system", "content": persona_prompt(scenario, priorities, opening=opening)}]
    for turn in turns:
        messages.append({"role": "user" if turn.role == "rep" else "assistant", "content": turn.text})
    return messages


def spoken_reply(content: str | None) -> str:
    """The model's reply as a line of speech: no wrapping quotes, at most three sentences; empty raises."""
    text = (content or "").strip().strip('"\u201c\u201d').strip()
    if not text:
        raise ValueError("the model returned an empty reply")
    said = sentences(text)
    return " ".join(said[:MAX_SENTENCES]) if len(said) > MAX_SENTENCES else text


class LLMBuyer:
    """A Buyer backed by an OpenAI-compatible chat model, with ``fallback`` answering any turn the model can't."""

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        *,
        fallback: Buyer,
        priorities: Sequence[str] = (),
        timeout_s: float = 20,
    ) -> None:
        # One attempt per turn within timeout_s: the scripted fallback, not a retry, is the recovery.
        self._client = client.with_options(timeout=timeout_s, max_retries=0)
        self._model = model
        self._fallback = fallback
        self._priorities = tuple(priorities)

    def reply(self, scenario: Scenario, turns: Sequence[Turn]) -> Turn:
        """The buyer's next turn: the scripted opening line first, then the model's reply to the rep."""
        if not any(turn.role == "rep" for turn in turns):
            return Turn("buyer", scenario.opening_line)
        started = time.perf_counter()
        try:
            completion = self._client.chat.completions.create(
                model=self._model,
                messages=chat_messages(scenario, turns, self._priorities),
                temperature=TEMPERATURE,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "buyer_turn", "strict": True, "schema": REPLY_SCHEMA}},
            )
            said = _Said.model_validate(json.loads(completion.choices[0].message.content or "")
                                        if completion.choices else None)
            line = Turn("buyer", spoken_reply(said.line), ends=said.ends_call)
        except (openai.OpenAIError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            observe_model("buyer", "fallback", started)
            logger.warning(
                "LLM buyer failed on %s turn %d (%s); the scripted buyer answers this turn",
                scenario.id,
                len(turns),
                model_failure(exc),
            )
            return self._fallback.reply(scenario, turns)
        observe_model("buyer", "ok", started)
        return line
