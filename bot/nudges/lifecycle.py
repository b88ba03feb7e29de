"""The nudge state machine: which moves are allowed, as data, and the one way to make a move."""

from __future__ import annotations

from sqlmodel import Session

from storage import queries
from storage.models import NudgeState as S

TRANSITIONS: dict[S, frozenset[S]] = {
    # manual: ask the manager; auto: approved at once; rep-first: straight to the rep
    S.PROPOSED: frozenset({S.PENDING_APPROVAL, S.APPROVED, S.DELIVERED, S.EXPIRED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.SKIPPED, S.EXPIRED}),
    S.APPROVED: frozenset({S.DELIVERED}),
    # rep-first: the manager is asked when the rep has not started in time; a rep may dispute
    S.DELIVERED: frozenset({S.PRACTISING, S.PENDING_APPROVAL, S.DISPUTED, S.EXPIRED}),
    S.DISPUTED: frozenset({S.DELIVERED, S.WITHDRAWN, S.EXPIRED}),
    S.PRACTISING: frozenset({S.COMPLETED, S.EXPIRED}),
    S.SKIPPED: frozenset(),
    S.EXPIRED: frozenset(),
    S.WITHDRAWN: frozenset(),
    S.COMPLETED: frozenset(),
}
OPEN = frozenset({S.PROPOSED, S.PENDING_APPROVAL, S.APPROVED, S.DELIVERED, S.DISPUTED, S.PRACTISING})


class InvalidTransition(Exception):
    pass


def check_transition(current: S | str, target: S | str) -> None:
    """Raise InvalidTransition unless a nudge may move from `current` to `target`."""
    if S(target) not in TRANSITIONS[S(current)]:
        raise InvalidTransition(f"a nudge cannot go from {current} to {target}")


def advance(session: Session, *, nudge_id: int, expected: S, target: S, **changes: object) -> bool:
    """Move the nudge if it is still in `expected`; False when another request moved it first."""
    check_transition(expected, target)
    return queries.move_nudge(session, nudge_id=nudge_id, expected=expected, target=target, **changes)
