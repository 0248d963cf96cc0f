"""Simulated Berlin: places, the roads cars drive on, routes over them, and the public chargers.

Coordinates are metres east (x) and north (y) of the centre (52.5200 N, 13.4050 E) on a flat plane.

The road network
----------------
City streets form a grid: on them a car drives north or south, then east or west. A route starts and ends
with a few hundred metres of residential streets; between them lie urban streets, or arterial roads where a
straight stretch is long. Crossing town, a car takes the motorway when that is quicker: an octagonal ring of
6.5 km radius round the centre, like the A100 city ring (which in reality is still a horseshoe, limited to
80 km/h), with a junction every ~1.2 km, and eight radial motorways from the middle of its sides out to
60 km, with a junction every 3 km. The ring's sides run north-south, east-west or diagonally, so a car's
heading is always a multiple of 45°.

Road classes and the WLTC
-------------------------
Each road class stands for one phase of the WLTC class 3b cycle (UN GTR No. 15), whose phases are:

    phase        duration  distance  mean speed incl. stops  max speed  standing
    Low            589 s    3.10 km       18.9 km/h           56.5 km/h   ~26 %
    Medium         433 s    4.76 km       39.5 km/h           76.6 km/h   ~11 %
    High           455 s    7.16 km       56.7 km/h           97.4 km/h    ~7 %
    Extra-high     323 s    8.25 km       92.0 km/h          131.3 km/h    ~2 %
    whole cycle   1800 s   23.27 km       46.5 km/h          131.3 km/h    13 %

with accelerations up to about 1.7 m/s² and decelerations to about -1.5 m/s². Here, measured over 240
simulated trips (`tests/sim/test_model_properties.py` holds the classes to ranges around these):

    class         limit       blocks      stops at the end of a block     mean speed incl. stops  standing
    residential    30 km/h    70-160 m    30 %, 0-4 s (right of way)      ~22 km/h (Low)            ~6 %
    urban          50 km/h   180-420 m    25 %, 5-40 s (red lights)       ~32 km/h (Medium)        ~20 %
    arterial    60-70 km/h   400-900 m    20 %, 10-50 s (red lights)      ~47 km/h (High)          ~14 %
    motorway   100-130 km/h  1.2-3 km     none; 10 % of stretches jammed  ~100 km/h (Extra-high)     0 %

City traffic here stands at lights more than the WLTC Medium and High phases do (Berlin, not a test bench),
and residential streets stop often but briefly. Trips spend about 16 % of their time on residential streets,
20 % urban, 40 % arterial and 24 % on the motorway (the WLTC: 33, 24, 25 and 18 %). Drivers accelerate at
1.2-2.0 m/s² from rest, less as speed rises, and brake at 1.3-2.3 m/s², a little harder than the cycle, as
real drivers do at lights.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

CENTRE_LATITUDE = 52.5200
CENTRE_LONGITUDE = 13.4050
CITY_RADIUS_M = 10_000.0
M_PER_DEG_LAT = 111_320.0
M_PER_DEG_LON = M_PER_DEG_LAT * math.cos(math.radians(CENTRE_LATITUDE))

RING_RADIUS_M = 6_500.0  # to the octagon's corners; its sides are 6.0 km from the centre
RADIAL_LENGTH_M = 60_000.0
_RING_JUNCTIONS_PER_SIDE = 4
_RADIAL_JUNCTION_SPACING_M = 3_000.0
_TURN_MPS = 15 / 3.6  # turning a street corner
_RAMP_ON_MPS = 35 / 3.6  # the bend onto a motorway slip road
_RAMP_OFF_MPS = 50 / 3.6  # the end of an exit ramp
_CITY_MPS = 40 / 3.6  # typical speed across town on arterial roads, stops included, for choosing routes
_MOTORWAY_MPS = 95 / 3.6
_QUICKER_BY = 0.8  # the motorway is taken when it saves a fifth of the time...
_RAMPS_S = 120.0  # ...counting the slip roads and junctions on the way
_PLAN_BRAKE = 1.2  # m/s², gentler than any driver brakes, so every planned end speed can be reached


@dataclass(frozen=True, slots=True)
class Place:
    """A named point, in metres east (x) and north (y) of the city centre."""

    name: str
    x: float
    y: float

    @classmethod
    def at(cls, name: str, latitude: float, longitude: float) -> Place:
        """The place at a WGS 84 position."""
        return cls(
            name, (longitude - CENTRE_LONGITUDE) * M_PER_DEG_LON, (latitude - CENTRE_LATITUDE) * M_PER_DEG_LAT
        )

    @property
    def latitude(self) -> float:
        """WGS 84 latitude."""
        return CENTRE_LATITUDE + self.y / M_PER_DEG_LAT

    @property
    def longitude(self) -> float:
        """WGS 84 longitude."""
        return CENTRE_LONGITUDE + self.x / M_PER_DEG_LON


@dataclass(frozen=True, slots=True)
class RoadClass:
    """How a kind of road is driven: its speeds, how far apart its intersections are, how often cars stop."""

    name: str
    wltc_phase: str
    cruise_kmh: tuple[float, float]  # free-flowing speed of one block, drawn uniformly
    block_m: tuple[float, float]  # distance between intersections
    stop_p: float  # chance of stopping at the end of a block: a red light, a stop sign, a right of way
    wait_s: tuple[float, float]  # how long such a stop lasts
    slow_p: float  # chance that a block is slowed by traffic
    slow_kmh: tuple[float, float]  # the speed in such a block


RESIDENTIAL = RoadClass(
    "residential", "Low", (25.0, 32.0), (70.0, 160.0), 0.30, (0.0, 4.0), 0.10, (12.0, 20.0)
)
URBAN = RoadClass("urban", "Medium", (44.0, 53.0), (180.0, 420.0), 0.25, (5.0, 40.0), 0.15, (25.0, 38.0))
ARTERIAL = RoadClass("arterial", "High", (58.0, 72.0), (400.0, 900.0), 0.20, (10.0, 50.0), 0.15, (35.0, 50.0))
MOTORWAY = RoadClass(
    "motorway", "Extra-high", (100.0, 130.0), (1_200.0, 3_000.0), 0.0, (0.0, 0.0), 0.10, (50.0, 80.0)
)
ROAD_CLASSES: dict[str, RoadClass] = {c.name: c for c in (RESIDENTIAL, URBAN, ARTERIAL, MOTORWAY)}


@dataclass(frozen=True, slots=True)
class Block:
    """A straight stretch of road between two intersections or junctions."""

    x: float
    y: float
    dx: float  # unit direction
    dy: float
    heading: float
    length_m: float
    cruise_mps: float
    end_mps: float  # speed to be at when reaching the end
    stop_s: float  # how long the car stands at the end (red light, stop sign)
    road: RoadClass


@dataclass(frozen=True, slots=True)
class ChargePoint:
    """Something a car can charge from; `place` is None for one that is wherever the car is."""

    name: str
    power_kw: float
    dc: bool
    place: Place | None = None


HOME_WALLBOX = ChargePoint("home wallbox", 11.0, dc=False)
STREET_POST = ChargePoint("street-side AC post", 11.0, dc=False)
MOBILE_SERVICE = ChargePoint("roadside assistance mobile charger", 11.0, dc=False)


def _fast(name: str, kw: float, latitude: float, longitude: float) -> ChargePoint:
    return ChargePoint(f"DC {name}", kw, dc=True, place=Place.at(f"DC {name}", latitude, longitude))


# Public fast chargers: the same for every car and seed, at (rounded) real places of the city.
FAST_CHARGERS: tuple[ChargePoint, ...] = (
    _fast("Alexanderplatz", 150.0, 52.5219, 13.4132),
    _fast("Ernst-Reuter-Platz", 150.0, 52.5127, 13.3219),
    _fast("Kottbusser Tor", 50.0, 52.4991, 13.4181),
    _fast("Schönhauser Allee", 50.0, 52.5493, 13.4134),
    _fast("Hermannplatz", 150.0, 52.4868, 13.4245),
    _fast("Spandau", 300.0, 52.5352, 13.1998),
    _fast("Lichtenberg", 150.0, 52.5105, 13.4985),
    _fast("Schloßstraße", 50.0, 52.4569, 13.3204),
    _fast("Tempelhof", 300.0, 52.4730, 13.4030),
    _fast("Pankow", 150.0, 52.5691, 13.4010),
)


def manhattan(x0: float, y0: float, x1: float, y1: float) -> float:
    """Distance along the street grid, metres."""
    return abs(x1 - x0) + abs(y1 - y0)


def nearest_fast_charger(x: float, y: float, then: Place | None = None) -> ChargePoint:
    """The fast charger closest along the grid, or the one with the shortest detour on the way to `then`."""

    def cost(charger: ChargePoint) -> float:
        assert charger.place is not None
        d = manhattan(x, y, charger.place.x, charger.place.y)
        if then is not None:
            d += manhattan(charger.place.x, charger.place.y, then.x, then.y)
        return d

    return min(FAST_CHARGERS, key=cost)


# -- the motorway network --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Motorway:
    nodes: tuple[tuple[float, float], ...]  # junctions
    edges: tuple[tuple[tuple[int, float], ...], ...]  # per node: (neighbour, metres)


def _build_motorways() -> _Motorway:
    corners = [
        (
            RING_RADIUS_M * math.cos(math.radians(22.5 + 45 * k)),
            RING_RADIUS_M * math.sin(math.radians(22.5 + 45 * k)),
        )
        for k in range(8)
    ]
    nodes: list[tuple[float, float]] = []
    for k in range(8):
        (ax, ay), (bx, by) = corners[k], corners[(k + 1) % 8]
        for j in range(_RING_JUNCTIONS_PER_SIDE):
            f = j / _RING_JUNCTIONS_PER_SIDE
            nodes.append((ax + (bx - ax) * f, ay + (by - ay) * f))
    ring = len(nodes)
    links: list[tuple[int, int]] = [(i, (i + 1) % ring) for i in range(ring)]
    middle = _RING_JUNCTIONS_PER_SIDE // 2
    for k in range(8):
        start = k * _RING_JUNCTIONS_PER_SIDE + middle  # the middle of side k, at 45° (k + 1)
        sx, sy = nodes[start]
        ux, uy = math.cos(math.radians(45 * (k + 1))), math.sin(math.radians(45 * (k + 1)))
        previous = start
        r = math.hypot(sx, sy) + _RADIAL_JUNCTION_SPACING_M
        while r <= RADIAL_LENGTH_M:
            nodes.append((ux * r, uy * r))
            links.append((previous, len(nodes) - 1))
            previous = len(nodes) - 1
            r += _RADIAL_JUNCTION_SPACING_M
    edges: list[list[tuple[int, float]]] = [[] for _ in nodes]
    for a, b in links:
        d = math.dist(nodes[a], nodes[b])
        edges[a].append((b, d))
        edges[b].append((a, d))
    return _Motorway(tuple(nodes), tuple(tuple(e) for e in edges))


MOTORWAYS = _build_motorways()


@functools.cache
def _shortest_paths(source: int) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Dijkstra from one junction: distances and predecessors."""
    n = len(MOTORWAYS.nodes)
    dist = [math.inf] * n
    prev = [-1] * n
    dist[source] = 0.0
    queue = [(0.0, source)]
    while queue:
        d, node = heapq.heappop(queue)
        if d > dist[node]:
            continue
        for nxt, length in MOTORWAYS.edges[node]:
            if d + length < dist[nxt]:
                dist[nxt] = d + length
                prev[nxt] = node
                heapq.heappush(queue, (d + length, nxt))
    return tuple(dist), tuple(prev)


def _motorway_path(a: int, b: int) -> list[int]:
    _, prev = _shortest_paths(a)
    path = [b]
    while path[-1] != a:
        path.append(prev[path[-1]])
    return path[::-1]


def _nearest_junctions(x: float, y: float, count: int = 3) -> list[int]:
    nodes = MOTORWAYS.nodes
    return heapq.nsmallest(count, range(len(nodes)), key=lambda i: manhattan(x, y, nodes[i][0], nodes[i][1]))


# -- routes ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Piece:
    """A straight piece of a route before it is cut into blocks."""

    x: float
    y: float
    dx: float
    dy: float
    length: float
    motorway: bool


def _grid_pieces(x0: float, y0: float, x1: float, y1: float) -> list[_Piece]:
    """North or south first, then east or west."""
    pieces = []
    if abs(y1 - y0) > 1.0:
        pieces.append(_Piece(x0, y0, 0.0, math.copysign(1.0, y1 - y0), abs(y1 - y0), False))
    if abs(x1 - x0) > 1.0:
        pieces.append(_Piece(x0, y1, math.copysign(1.0, x1 - x0), 0.0, abs(x1 - x0), False))
    return pieces


def plan_route(x0: float, y0: float, x1: float, y1: float, rng: random.Random) -> list[Block]:
    """Blocks from (x0, y0) to (x1, y1): city streets, and the motorway when that is quicker."""
    pieces = _grid_pieces(x0, y0, x1, y1)
    direct = manhattan(x0, y0, x1, y1)
    if direct > 4_000.0:
        best_s, best = direct / _CITY_MPS * _QUICKER_BY, None
        nodes = MOTORWAYS.nodes
        for a in _nearest_junctions(x0, y0):
            dist, _ = _shortest_paths(a)
            for b in _nearest_junctions(x1, y1):
                if a == b:
                    continue
                city = manhattan(x0, y0, *nodes[a]) + manhattan(*nodes[b], x1, y1)
                seconds = city / _CITY_MPS + dist[b] / _MOTORWAY_MPS + _RAMPS_S
                if seconds < best_s:
                    best_s, best = seconds, (a, b)
        if best is not None:
            a, b = best
            pieces = _grid_pieces(x0, y0, *nodes[a])
            path = _motorway_path(a, b)
            for i, j in itertools.pairwise(path):
                (ax, ay), (bx, by) = nodes[i], nodes[j]
                length = math.hypot(bx - ax, by - ay)
                pieces.append(_Piece(ax, ay, (bx - ax) / length, (by - ay) / length, length, True))
            pieces += _grid_pieces(*nodes[b], x1, y1)
    if not pieces:  # closer than a metre on both axes: one tiny hop so the trip still has a route
        pieces.append(_Piece(x0, y0, 1.0, 0.0, max(abs(x1 - x0), 0.1), False))
    return _blocks(pieces, rng)


def _blocks(pieces: Sequence[_Piece], rng: random.Random) -> list[Block]:
    total = sum(p.length for p in pieces)
    city = sum(p.length for p in pieces if not p.motorway)
    # The residential streets at each end: a few hundred metres, less on a short hop.
    local_start = min(rng.uniform(150.0, 500.0), 0.35 * city)
    local_end = min(rng.uniform(150.0, 500.0), 0.35 * city)
    drafts: list[tuple[_Piece, float, float, RoadClass]] = []  # piece, offset, length, class
    done = 0.0
    for piece in pieces:
        if piece.motorway:
            count = max(1, round(piece.length / rng.uniform(1_200.0, 2_000.0)))
            for i in range(count):
                drafts.append((piece, piece.length * i / count, piece.length / count, MOTORWAY))
            done += piece.length
            continue
        main = ARTERIAL if piece.length >= 1_500.0 else URBAN
        offset = 0.0
        while piece.length - offset > 1e-6:
            at = done + offset
            if at < local_start - 1e-6:
                road, boundary = RESIDENTIAL, local_start - at
            elif total - at <= local_end + 1e-6:
                road, boundary = RESIDENTIAL, math.inf
            else:
                road = main if main is URBAN or rng.random() < 0.8 else URBAN
                boundary = total - local_end - at
            length = min(rng.uniform(*road.block_m), boundary, piece.length - offset)
            if piece.length - offset - length < 30.0:
                length = piece.length - offset  # no sliver of a block at the end of a piece
            drafts.append((piece, offset, length, road))
            offset += length
        done += piece.length

    cruise = []
    for _, _, _, road in drafts:
        kmh = rng.uniform(*road.slow_kmh) if rng.random() < road.slow_p else rng.uniform(*road.cruise_kmh)
        cruise.append(kmh / 3.6)
    ends: list[tuple[float, float]] = []  # speed at the end of each block, and how long it stands there
    for i, (piece, _, _, road) in enumerate(drafts):
        if i == len(drafts) - 1:
            ends.append((0.0, 0.0))
            continue
        nxt_piece, _, _, nxt_road = drafts[i + 1]
        end = min(cruise[i], cruise[i + 1])
        turning = nxt_piece is not piece and (nxt_piece.dx, nxt_piece.dy) != (piece.dx, piece.dy)
        if road is MOTORWAY and nxt_road is not MOTORWAY:
            end = min(end, _RAMP_OFF_MPS)
        elif nxt_road is MOTORWAY and road is not MOTORWAY:
            end = min(end, _RAMP_ON_MPS)
        elif turning and road is not MOTORWAY:
            end = min(end, _TURN_MPS)
        if road.stop_p > 0 and rng.random() < road.stop_p:
            ends.append((0.0, rng.uniform(*road.wait_s)))
        else:
            ends.append((end, 0.0))
    # No block may be entered faster than a gentle brake can shed before its own end (short blocks, last ones).
    for i in range(len(drafts) - 2, -1, -1):
        entry = math.sqrt(ends[i + 1][0] ** 2 + 2 * _PLAN_BRAKE * drafts[i + 1][2])
        if ends[i][0] > entry:
            ends[i] = (entry, ends[i][1])

    blocks: list[Block] = []
    for (piece, offset, length, road), speed, (end, stop) in zip(drafts, cruise, ends, strict=True):
        x = piece.x + piece.dx * offset
        y = piece.y + piece.dy * offset
        heading = round((math.degrees(math.atan2(piece.dx, piece.dy)) + 360.0) % 360.0, 6) % 360.0
        blocks.append(Block(x, y, piece.dx, piece.dy, heading, length, speed, end, stop, road))
    return blocks
