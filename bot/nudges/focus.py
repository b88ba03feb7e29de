"""One focus skill at a time: which open signal becomes the rep's nudge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.nudges.signals import Finding


def focus_score(finding: Finding, *, weight: float, boost: float = 1.0) -> float:
    """Criterion weight, scaled by how far past the limit the rep is and by a strategic priority's boost."""
    return weight * (1.0 + finding.gap) * boost


def choose_focus(
    findings: Sequence[Finding], *, weights: Mapping[str, float], boosts: Mapping[str, float]
) -> Finding | None:
    """The finding with the highest focus score; ties go to the more recent trigger, then the name."""
    if not findings:
        return None
    return max(findings, key=lambda f: (
        focus_score(f, weight=weights.get(f.criterion, 1.0), boost=boosts.get(f.criterion, 1.0)),
        f.trigger.started_at, f.criterion,
    ))
