"""The crisis detector's calibrated operating points (no dependencies: settings read them).

Each point is a budget of false alarms on everyday learner messages; `ion train safety`
calibrates the detector's thresholds at each, cross-writer, and a deployment picks one
(`ION_SAFETY_EVERYDAY_BUDGET`, docs/safety.md).
"""

from __future__ import annotations

#: The share of everyday learner messages the detector may flag, at each operating point
#: `ion train safety` calibrates (cross-writer); a deployment picks one.
OPERATING_POINTS = (0.0025, 0.005, 0.01, 0.02)
DEFAULT_OPERATING_POINT = 0.02
#: The detector's thresholds, by the names the trained artifact stores them under.
THRESHOLD_NAMES = (
    "threshold",
    "context_threshold",
    "weak_threshold",
    "distress_threshold",
    "guarded_threshold",
)


def operating_point_param(point: float, name: str) -> str:
    """The artifact's key of threshold `name` at everyday budget `point`."""
    return f"everyday_{point:g}.{name}"
