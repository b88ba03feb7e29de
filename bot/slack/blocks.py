"""Block Kit renderers: pure functions from values to message dicts (text fallback included)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.practice.feedback import Feedback
from bot.slack import ids

SECTION_LIMIT = 3000
_HOST = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")  # as the webhook takes them (bot/nudges/adapters.py)
BUTTON_TEXT_LIMIT = 75


def escape(text: str) -> str:
    """Text from outside (call titles, quotes, what a rep typed) shown literally: no links, no @channel pings."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    """`label` (already escaped) linked to `url`, or `label` alone when `url` is not a plain web address. The
    characters that would end Slack's `<url|label>` early (`|`, `>`, spaces) are percent-encoded, so a URL can never
    add a ping, a mention or a second link of its own."""
    if not web_address(url):
        return label
    safe = urllib.parse.quote(url, safe="/:?#[]@!$&'()*+,;=%-._~").replace("&", "&amp;")
    return f"<{safe}|{label}>"


def web_address(url: str) -> bool:
    """An http(s) URL with a host: the only kind of address Rehearse links to."""
    try:
        parts = urllib.parse.urlsplit(url) if url.isascii() and url.isprintable() else None
        return parts is not None and parts.scheme in ("http", "https") and bool(_HOST.fullmatch(parts.hostname or ""))
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        return False


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_LIMIT)}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, SECTION_LIMIT)}]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict:
    out = {"type": "button", "text": {"type": "plain_text", "text": _clip(text, BUTTON_TEXT_LIMIT)},
           "action_id": action_id, "value": value}
    if style:
        out["style"] = style
    return out


def mmss(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def slack_time(when: datetime) -> str:
    """A date Slack renders in each reader's own time zone."""
    stamp = int(when.timestamp())
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{when:%Y-%m-%d %H:%M} UTC>"


@dataclass(frozen=True)
class Quote:
    text: str
    at_s: float | None
    call_title: str | None
    recording_url: str | None

    def render(self) -> str:
        where = escape(self.call_title or "a call")
        stamp = mmss(self.at_s)
        if self.recording_url and self.at_s is not None:
            where = link(f"{self.recording_url}#t={int(self.at_s)}", f"{where} at {stamp}")
        elif stamp:
            where = f"{where} at {stamp}"
        return f"> “{escape(_clip(self.text, 400))}”\n_{where}_"


def format_value(value: float, unit: str) -> str:
    """A rule's value as a manager reads it: 42, 72%, 190 s, 4, yes."""
    match unit:
        case "ratio":
            return f"{value * 100:.0f}%"
        case "seconds":
            return f"{value:.0f} s"
        case "yesno":
            return "yes" if value >= 1 else "no"
        case "count":
            return f"{value:g}"
    return f"{value:.0f}"


@dataclass(frozen=True)
class ApprovalCard:
    nudge_id: int
    rep_user: str
    criterion_label: str
    values: tuple[str, ...]
    limit: str
    quotes: tuple[Quote, ...]
    scenario_title: str
    scenario_summary: str
    priority: str | None = None
    waiting: tuple[str, ...] = ()


def _approval_body(card: ApprovalCard) -> list[dict]:
    trend = " → ".join(card.values)
    blocks = [
        section(f"*Practice suggested for <@{card.rep_user}>: {card.criterion_label}*\n"
                f"Last {len(card.values)} calls: *{trend}* ({card.limit})"),
    ]
    if card.quotes:
        blocks.extend(section(q.render()) for q in card.quotes[:2])
    else:
        blocks.append(context("No evidence quote: the scorer sent none for these calls."))
    why = f"\n_Serves the priority: {escape(card.priority)}_" if card.priority else ""
    blocks.append(section(f"*Proposed drill:* {card.scenario_title}\n{card.scenario_summary}{why}"))
    if card.waiting:
        blocks.append(context(f"Also flagged, waiting (one focus skill at a time): {', '.join(card.waiting)}"))
    return blocks


def _picker(nudge_id: int, choices: Sequence[tuple[str, str, bool]], current: str) -> dict:
    def option(scenario_id: str, title: str) -> dict:
        return {"text": {"type": "plain_text", "text": _clip(title, 75)}, "value": f"{nudge_id}:{scenario_id}"[:150]}

    groups = [(label, [option(i, t) for i, t, same in choices if same == wanted][:100])
              for label, wanted in (("Drills for this skill", True), ("Other drills", False))]
    picker = {"type": "static_select", "action_id": ids.CHANGE_SCENARIO,
              "placeholder": {"type": "plain_text", "text": "Change drill"},
              "option_groups": [{"label": {"type": "plain_text", "text": label}, "options": options}
                                for label, options in groups if options]}
    chosen = next((option(i, t) for i, t, _ in choices if i == current), None)
    if chosen:
        picker["initial_option"] = chosen
    return picker


def approval_message(card: ApprovalCard, *, choices: Sequence[tuple[str, str, bool]] = (),
                     current: str = "") -> dict:
    """The manager's message: Approve, Skip, and a picker to change the drill first."""
    value = str(card.nudge_id)
    elements = [button("Approve", ids.APPROVE, value, "primary"), button("Skip", ids.SKIP, value)]
    if choices:
        elements.append(_picker(card.nudge_id, choices, current))
    blocks = [*_approval_body(card), {"type": "actions", "block_id": f"nudge-{card.nudge_id}", "elements": elements}]
    text = f"Practice suggested for <@{card.rep_user}>: {card.criterion_label}. Approve or skip?"
    return {"text": text, "blocks": blocks}


def approval_fyi(card: ApprovalCard) -> dict:
    """Auto-approve teams: the channel hears about the drill, with nothing to click."""
    return {"text": f"Drill sent to <@{card.rep_user}>: {card.criterion_label}",
            "blocks": [*_approval_body(card), context("🤖 Sent to the rep automatically (this team auto-approves).")]}


def decided_message(card: ApprovalCard, *, approved: bool, decider: str, when: datetime,
                    reason: str | None = None) -> dict:
    """The approval message after a decision: no buttons, a line saying who decided and when."""
    verb = "Approved" if approved else "Skipped"
    line = f"{'✅' if approved else '⏭️'} {verb} by <@{decider}> · {slack_time(when)} · {card.scenario_title}"
    if reason:
        line += f" · “{escape(_clip(reason, 500))}”"
    return {"text": f"{verb} by <@{decider}>: {card.criterion_label} for <@{card.rep_user}>",
            "blocks": [*_approval_body(card), context(line)]}


def _modal(callback_id: str, title: str, submit: str, metadata: str, blocks: list[dict]) -> dict:
    return {"type": "modal", "callback_id": callback_id, "private_metadata": metadata[:3000],
            "title": {"type": "plain_text", "text": _clip(title, 24)},
            "submit": {"type": "plain_text", "text": _clip(submit, 24)},
            "close": {"type": "plain_text", "text": "Cancel"}, "blocks": blocks}


def _text_input(block_id: str, action_id: str, label: str, placeholder: str, *, optional: bool) -> dict:
    return {"type": "input", "block_id": block_id, "optional": optional,
            "label": {"type": "plain_text", "text": label},
            "element": {"type": "plain_text_input", "action_id": action_id, "multiline": True, "max_length": 500,
                        "placeholder": {"type": "plain_text", "text": placeholder}}}


def skip_modal(*, metadata: str) -> dict:
    """Skip asks for an optional reason (it helps the scorer and the next nudge)."""
    return _modal(ids.SKIP_REASON_VIEW, "Skip this drill", "Skip", metadata, [
        section("Skip the suggested drill? The rep is not told."),
        _text_input(ids.REASON_BLOCK, ids.REASON_INPUT, "Why (optional)", "e.g. we covered this in our 1:1",
                    optional=True),
    ])


def dispute_modal(*, metadata: str) -> dict:
    return _modal(ids.DISPUTE_VIEW, "Doesn't look right?", "Send", metadata, [
        section("Tell your manager what the scores missed. The drill waits until they decide."),
        _text_input(ids.COMMENT_BLOCK, ids.COMMENT_INPUT, "What does not look right?",
                    "e.g. that call was a renewal, the discount was pre-approved", optional=False),
    ])


def dispute_message(*, dispute_id: int, rep_user: str, comment: str, managers: str) -> dict:
    """Posted in the approval thread: the rep's comment, and Keep / Withdraw for the manager."""
    value = str(dispute_id)
    return {"text": f"<@{rep_user}> disputes this drill: {escape(_clip(comment, 1500))}", "blocks": [
        section(f"{managers}: <@{rep_user}> says this does not look right:\n> {escape(_clip(comment, 1500))}"),
        {"type": "actions", "block_id": f"dispute-{dispute_id}", "elements": [
            button("Keep the drill", ids.KEEP, value, "primary"), button("Withdraw it", ids.WITHDRAW, value)]},
    ]}


def dispute_decided(*, rep_user: str, comment: str, kept: bool, decider: str, when: datetime) -> dict:
    verb = "Kept" if kept else "Withdrawn"
    return {"text": f"{verb} by <@{decider}>", "blocks": [
        section(f"<@{rep_user}> said this does not look right:\n> {escape(_clip(comment, 1500))}"),
        context(f"{'📌' if kept else '↩️'} {verb} by <@{decider}> · {slack_time(when)}"),
    ]}


def expired_message(card: ApprovalCard, *, reason: str, when: datetime) -> dict:
    """The approval message once nobody can act on it any more: no buttons, why, and when."""
    return {"text": f"Expired: {card.criterion_label} for <@{card.rep_user}>",
            "blocks": [*_approval_body(card), context(f"⌛ Expired · {slack_time(when)} · {reason}")]}


def practice_invite(*, value: str, headline: str, scenario_title: str, goal: str,
                    button_text: str = "Start practice", dispute_value: str | None = None) -> dict:
    """The rep's DM with a Start practice button (and, for a nudge, "This doesn't look right")."""
    actions = [button(button_text, ids.START_PRACTICE, value, "primary")]
    if dispute_value:
        actions.append(button("This doesn't look right", ids.DISPUTE, dispute_value))
    return {
        "text": f"{headline} {scenario_title}",
        "blocks": [
            section(f"*{headline}*\n*{scenario_title}*\n{goal}"),
            context("Takes about 5 minutes. The roleplay runs in this message's thread."),
            {"type": "actions", "elements": actions},
        ],
    }


def practice_started(*, headline: str, scenario_title: str, goal: str) -> dict:
    return {
        "text": f"{headline} {scenario_title}",
        "blocks": [section(f"*{headline}*\n*{scenario_title}*\n{goal}"),
                   context("🎬 Practice started: reply in the thread. Type *done* to finish early.")],
    }


def brief(*, goal: str, context_text: str, buyer: str, moment: Quote | None) -> dict:
    lines = [f"*Your goal:* {goal}", f"*The situation:* {context_text}", f"*You are talking to:* {buyer}"]
    if moment is not None:
        lines.append(f"*The moment from your call:*\n{moment.render()}")
    lines.append("Reply in this thread as you would on the call. Type *done* when you are finished.")
    text = "\n".join(lines)
    return {"text": _clip(text, 3000), "blocks": [section(text)]}


def buyer_line(speaker: str, text: str) -> dict:
    text = escape(text)
    return {"text": _clip(f"{speaker}: {text}", 3000), "blocks": [section(f"*{speaker}:* {text}")]}


@dataclass(frozen=True)
class GradeLine:
    label: str
    level: int
    evidence: tuple[str, ...]
    feedback: str


def feedback(*, score: int, passed: bool, note: Feedback, next_followups: Sequence[datetime],
             previous: int | None = None, session_id: int | None = None) -> dict:
    """The grade posted in the thread when a roleplay ends: one strength and one fix on the rep's own lines, then
    Retake, Details (every criterion, in a modal) and Done."""
    verdict = "✅ Proficient" if passed else "🔁 Not there yet"
    versus = f" ({'+' if score >= previous else ''}{score - previous} on your last attempt, {previous})" \
        if previous is not None else ""
    blocks = [section(f"*Score {score}/100{versus} · {verdict}*")]
    for heading, point in (("Strength", note.strength), ("Fix", note.fix)):
        if point is not None:
            text = f"*{heading} · {escape(point.label)}* (level {point.level}/4)"
            text += f"\n> “{escape(point.quote)}”" if point.quote else ""
            text += f"\n{escape(point.reason)}"
            text += f"\n*Try:* “{escape(point.better)}”" if point.better else ""
            blocks.append(section(text))
    if next_followups:
        when = ", ".join(slack_time(d) for d in next_followups)
        blocks.append(context(f"Follow-up drills scheduled: {when}"))
    if session_id is not None:
        value = str(session_id)
        blocks.append({"type": "actions", "elements": [button("Retake", ids.RETAKE, value, "primary"),
                                                        button("Details", ids.GRADE_DETAILS, value),
                                                        button("Done", ids.PRACTICE_DONE, value)]})
    return {"text": f"Score {score}/100{versus} · {verdict}", "blocks": blocks}


def grade_details(*, title: str, lines: Sequence[GradeLine]) -> dict:
    """Every criterion of a grade: its level, the rep's lines it rests on, and why (Details on the feedback)."""
    out = [section(f"*{escape(title)}*")]
    for line in lines[:40]:
        quotes = "".join(f"\n> “{escape(_clip(q, 300))}”" for q in line.evidence)
        out.append(section(f"*{escape(line.label)}: level {line.level}/4*{quotes}\n{escape(line.feedback)}"))
    return {"type": "modal", "title": {"type": "plain_text", "text": "Your grade"},
            "close": {"type": "plain_text", "text": "Close"}, "blocks": out}


def drill_picker(groups: Sequence[tuple[str, Sequence[tuple[str, str]]]], *, focus: str | None) -> dict:
    """`/drill` with no text: the drills grouped by skill (the rep's focus skill first), each with Start."""
    blocks = [section("*Pick a drill.* It starts in your DM at once; no approval needed."
                      + (f"\nYour focus skill: *{focus}*" if focus else ""))]
    for skill, drills in groups[:12]:
        blocks.append(context(f"*{skill}*"))
        blocks.extend({"type": "section", "text": {"type": "mrkdwn", "text": _clip(title, 300)},
                       "accessory": button("Start", ids.PICK_DRILL, scenario_id)} for scenario_id, title in drills[:3])
    return {"text": "Pick a drill with /drill <skill or name>", "blocks": blocks[:50]}


def feedback_closed(*, score: int, note: str) -> dict:
    return {"text": f"Score {score}/100 · {note}", "blocks": [section(f"*Score {score}/100*"), context(note)]}


@dataclass(frozen=True)
class RepHome:
    focus: str | None
    nudge_id: int | None
    can_start: bool
    followups: tuple[tuple[datetime, str], ...]
    trajectory: tuple[tuple[str, tuple[int, ...]], ...]
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ManagerHome:
    pending: tuple[tuple[int, str, str, str], ...]  # nudge id, rep, skill, recent values
    criteria: tuple[str, ...]
    heatmap: tuple[tuple[str, tuple[int | None, ...]], ...]
    page: int
    pages: int
    practised: int
    reps: int


LEVEL_MARKS = {None: "·", 1: "①", 2: "②", 3: "③", 4: "④"}


def home_tab(rep: RepHome, manager: ManagerHome | None) -> dict:
    """The App Home view: the rep's part, then (for managers) their team's; always within 100 blocks."""
    out: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": "Rehearse"}}]
    if rep.focus:
        out.append(section(f"*Your focus skill:* {rep.focus}"))
        if rep.can_start and rep.nudge_id is not None:
            out.append({"type": "actions", "elements": [button("Start practice", ids.HOME_START, str(rep.nudge_id),
                                                                "primary")]})
    else:
        out.append(section("*No focus skill right now.* Start a drill any time with `/drill`."))
    if rep.followups:
        out.append(section("*Coming up:*\n" + "\n".join(f"• {slack_time(d)}: refresher on {label.lower()}"
                                                          for d, label in rep.followups)))
    if rep.trajectory:
        out.append(section("*Your scores per skill:*\n" + "\n".join(
            f"• {skill}: {' → '.join(str(s) for s in scores)}" for skill, scores in rep.trajectory)))
    if rep.lines:
        out.append(section("*Your winning lines:*\n" + "\n".join(f"> “{escape(_clip(line, 280))}”"
                                                                   for line in rep.lines)))
    if manager is not None:
        out.append({"type": "divider"})
        share = f"{manager.practised} of {manager.reps} reps ({manager.practised / manager.reps:.0%})" \
            if manager.reps else "no reps yet"
        out.append(section(f"*Your team this week:* {share} practised."))
        if manager.pending:
            out.append(section(f"*Waiting for you ({len(manager.pending)}):*"))
            for nudge_id, rep_user, skill, values in manager.pending[:10]:
                out.append(section(f"<@{rep_user}>: {skill}" + (f" ({values})" if values else "")))
                out.append({"type": "actions", "block_id": f"home-nudge-{nudge_id}", "elements": [
                    button("Approve", ids.APPROVE, str(nudge_id), "primary"), button("Skip", ids.SKIP, str(nudge_id))]})
        else:
            out.append(context("No approvals waiting."))
        if manager.heatmap:
            legend = " · ".join(f"{i + 1}={c}" for i, c in enumerate(manager.criteria))
            rows = "\n".join(f"<@{rep_user}>  " + " ".join(LEVEL_MARKS[level] for level in levels)
                              for rep_user, levels in manager.heatmap)
            out.append(section(f"*Latest level per skill* (page {manager.page + 1} of {manager.pages})\n{rows}"))
            out.append(context(f"Columns: {legend}. ①-④ from the latest scored call; · no call yet."))
            if manager.pages > 1:
                out.append({"type": "actions", "elements": [
                    button("Next page" if manager.page + 1 < manager.pages else "First page", ids.HOME_PAGE,
                           str((manager.page + 1) % manager.pages))]})
    out.append(context("`/drill [skill]` starts a drill; `/progress` shows your progress."))
    return {"type": "home", "blocks": out[:100]}
