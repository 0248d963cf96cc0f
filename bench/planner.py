"""How long one plan takes: 50 sessions on a site with three circuits, 288 five-minute periods (24 h).

QUALITY.md's target is ≤ 0.5 s per solve. Each objective is solved `--repeat` times on fresh random sites
(seeded), with and without a solar forecast, house load and a demand charge; the table gives the median and
the worst wall time and how often the LP (HiGHS) made the plan rather than the least-laxity-first fallback.

    python bench/planner.py [--sessions 50] [--repeat 7] [--budget 0.5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics

from smartev.energy import Limit, Objective, Session, SiteForecast, Tariff, plan

PERIODS, PERIOD_S = 288, 300


def site(rng: random.Random, sessions: int) -> tuple[list[Session], Limit]:
    circuits = ("row-1", "row-2", "row-3")
    limits = Limit("site", 250, tuple(Limit(c, 125) for c in circuits))
    out = []
    for i in range(sessions):
        phases = frozenset("ABC") if rng.random() < 0.7 else frozenset(rng.choice("ABC"))
        out.append(
            Session(
                f"s{i}",
                station=f"CP-{i}",
                connector=1,
                energy_wanted_kwh=rng.uniform(5, 60),
                departure=rng.randint(12, PERIODS),
                max_a=rng.choice((16.0, 32.0)),
                phases=phases,  # type: ignore[arg-type]
                circuit=rng.choice(circuits),
            )
        )
    return out, limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--budget", type=float, default=0.5, help="the LP's time budget, s")
    args = parser.parse_args()
    night = tuple(0.18 if (t * PERIOD_S // 3600) % 24 < 6 else 0.36 for t in range(PERIODS))
    sun = tuple(max(0.0, 30 * (1 - abs((t * PERIOD_S / 3600) - 13) / 6)) for t in range(PERIODS))
    forecast = SiteForecast(house_kw=(4.0,) * PERIODS, solar_kw=sun)
    print(
        f"planner: {args.sessions} sessions x {PERIODS} periods, {os.cpu_count()} cores, budget {args.budget} s"
    )
    print(f"{'objective':<12} {'extras':<28} {'p50 s':>7} {'max s':>7} {'LP':>5}")
    for objective in Objective:
        for extras in (False, True):
            times, lp = [], 0
            for r in range(args.repeat):
                sessions, limits = site(random.Random(f"{objective}-{r}"), args.sessions)
                tariff = Tariff(night, demand_charge_per_kw=12.0 if extras else 0.0)
                result = plan(
                    sessions,
                    limits,
                    tariff,
                    PERIODS,
                    PERIOD_S,
                    objective,
                    forecast=forecast if extras else None,
                    time_budget_s=args.budget,
                )
                times.append(result.solve_s)
                lp += result.solver == "highs"
            label = "solar, house, demand charge" if extras else "-"
            print(
                f"{objective.value:<12} {label:<28} {statistics.median(times):7.3f} {max(times):7.3f}"
                f" {lp:>2}/{args.repeat}"
            )


if __name__ == "__main__":
    main()
