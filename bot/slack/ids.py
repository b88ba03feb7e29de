"""Action ids and button values: the one place both the renderers and the handlers read."""

from bot.slack.payloads import OddPayload, text_at

MAX_RECORD_ID = 2**31 - 1  # PostgreSQL's integer: the largest id any table of Rehearse's holds

APPROVE = "nudge_approve"
SKIP = "nudge_skip"
START_PRACTICE = "practice_start"

DRILL_COMMAND = "/drill"
PROGRESS_COMMAND = "/progress"


def practice_value(kind: str, ref: int | str) -> str:
    """The Start practice button's value: `nudge:12`, `followup:3` or `scenario:price-objection`."""
    return f"{kind}:{ref}"


def parse_practice_value(value: str) -> tuple[str, str]:
    kind, _, ref = value.partition(":")
    if kind not in {"nudge", "followup", "scenario"} or not ref or len(ref) > 64:
        raise OddPayload(f"not a practice button value: {value[:80]!r}")
    if kind != "scenario":
        record_id(ref)
    return kind, ref


def clicked_id(body: dict) -> int:
    """The row id the clicked button carries as its value (a nudge's, a dispute's, a practice session's)."""
    return record_id(text_at(body, "actions", 0, "value"))


def record_id(value: object) -> int:
    """A row's id as a button value or a modal's metadata carries it: 1 to MAX_RECORD_ID, in decimal digits."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(text, str) and 0 < len(text) <= 10 and text.isascii() and text.isdigit()
            and 0 < int(text) <= MAX_RECORD_ID):
        raise OddPayload(f"not the id of anything Rehearse posted: {str(value)[:80]!r}")
    return int(text)

CHANGE_SCENARIO = "nudge_scenario"
SKIP_REASON_VIEW = "nudge_skip_reason"
DISPUTE = "nudge_dispute"
DISPUTE_VIEW = "nudge_dispute_comment"
KEEP = "dispute_keep"
WITHDRAW = "dispute_withdraw"

REASON_BLOCK, REASON_INPUT = "reason", "reason_input"
COMMENT_BLOCK, COMMENT_INPUT = "comment", "comment_input"

RETAKE = "practice_retake"
PICK_DRILL = "drill_pick"
HOME_START = "home_start_practice"
HOME_PAGE = "home_page"
PRACTICE_DONE = "practice_done"
GRADE_DETAILS = "practice_grade_details"  # Details on the feedback: every criterion, in a modal
