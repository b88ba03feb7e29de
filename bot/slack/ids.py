"""Action ids and button values: the one place both the renderers and the handlers read."""

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
    if kind not in {"nudge", "followup", "scenario"} or not ref:
        raise ValueError(f"not a practice button value: {value!r}")
    return kind, ref

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
