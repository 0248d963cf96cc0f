"""Smart charging: plan the current of every session under the site's limits, tariff and departures.

The planner is pure (plain data in, a `Plan` out, no I/O); the central system applies its first period.
"""

from smartev.energy.domain import (
    ALL_PHASES,
    Limit,
    LinearLimit,
    Objective,
    Phase,
    Plan,
    Session,
    SiteForecast,
    Tariff,
)
from smartev.energy.planner import plan

__all__ = [
    "ALL_PHASES",
    "Limit",
    "LinearLimit",
    "Objective",
    "Phase",
    "Plan",
    "Session",
    "SiteForecast",
    "Tariff",
    "plan",
]
