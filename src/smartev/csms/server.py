"""The OCPP-J websocket endpoint: `ws(s)://host:port/ocpp/{station_id}`, both versions on one port.

Security profiles 1 and 2: HTTP Basic auth is checked before the websocket upgrade (unknown stations and
wrong passwords get 401 and nothing is created or displaced); with a certificate and key in the settings
the endpoint speaks TLS. Failed attempts are counted per station id and per address; past the limit the
answer is 429 until the minute is over. The OCPP version is chosen by subprotocol negotiation; a client
offering neither `ocpp1.6` nor `ocpp2.0.1` is refused. A second authenticated connection with the same id
replaces the first (a rebooted station often reconnects before its old socket times out); it is logged,
and the old connection is closed without holding up the new one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import logging
import math
import ssl
import sys
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

from ocpp.exceptions import OCPPError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from smartev.clock import Clock
from smartev.csms.control import ChargerControl
from smartev.csms.link import StationLink
from smartev.csms.runtime import Services
from smartev.csms.v16 import Station16
from smartev.csms.v201 import Station201
from smartev.errors import Conflict, InvalidInput, SmartEVError
from smartev.events import StationConnectivityChanged
from smartev.settings import OcppSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")

PATH_PREFIX = "/ocpp/"
SUBPROTOCOLS: dict[str, type[StationLink]] = {"ocpp2.0.1": Station201, "ocpp1.6": Station16}


class StationOffline(Conflict):
    """The station is not connected, so it cannot be asked anything now."""


class StationDidNotAnswer(SmartEVError):
    """The station is connected but did not answer in time (504: the gateway's upstream was too slow)."""

    status_code = 504


class StationRefused(Conflict):
    """The station answered the request with an OCPP error; `code` is its name (NotSupported, ...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


async def answer(station_id: str, what: str, pending: Awaitable[T], loc: tuple[str, ...] = ("body",)) -> T:
    """The station's answer; in words when it does not come, or when the request cannot be sent to it.

    The adapters raise ValueError for what the station's OCPP version cannot carry (a 2.0.1 setting that is
    not Component.Variable, a trigger the version does not know, a tag too long): the caller's mistake (422).
    """
    try:
        return await pending
    except TimeoutError:
        raise StationDidNotAnswer(f"station {station_id} did not answer {what} in time") from None
    except ConnectionClosed:
        raise StationOffline(f"station {station_id} disconnected before answering {what}") from None
    except OCPPError as exc:
        raise StationRefused(
            f"station {station_id} refused {what}: {exc.code} {exc.description}", exc.code
        ) from None
    except ValueError as exc:
        raise InvalidInput(str(exc), loc) from None


class _FailedLogins:
    """Failed Basic-auth attempts per key (a station id, an address), each counted for a minute from its
    first failure. At the limit the key is held off until that minute is over; attempts made meanwhile are
    refused unchecked and not counted, so a station retrying with the right password gets in on time."""

    WINDOW_MS = 60_000

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._keys: dict[str, tuple[int, int]] = {}  # key -> (first failure of its minute, failures)
        self._pruned_ms = 0

    def retry_after_s(self, *keys: str) -> int:
        """Seconds until none of `keys` is held off any more; 0 when none is."""
        now = self._clock.now_ms()
        wait_ms = 0
        for k in keys:
            since, failures = self._keys.get(k, (now, 0))
            if failures >= self.limit and since <= now:  # a clock set back ends the wait, not prolongs it
                wait_ms = max(wait_ms, since + self.WINDOW_MS - now)
        return math.ceil(wait_ms / 1000) if wait_ms > 0 else 0

    def add(self, *keys: str) -> None:
        """Count one failed attempt against each key."""
        now = self._clock.now_ms()
        if now - self._pruned_ms >= self.WINDOW_MS:  # memory holds at most one minute of failures
            self._keys = {k: v for k, v in self._keys.items() if now < v[0] + self.WINDOW_MS}
            self._pruned_ms = now
        for k in keys:
            since, failures = self._keys.get(k, (now, 0))
            if not since <= now < since + self.WINDOW_MS:
                since, failures = now, 0
            self._keys[k] = (since, failures + 1)


# a handshake we refused, or a client that went away in the middle of it
_REFUSED_OR_GONE = (InvalidHandshake, ConnectionClosed, EOFError, ConnectionError)


class _QuietHandshakes(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The websockets library's logger, with failed handshakes (no shared subprotocol, not a websocket
    request, bytes that are not HTTP, a client hanging up) as one INFO line: anyone who reaches the port can
    cause them, and a misconfigured station causes one per retry, so an ERROR with a traceback each time
    would drown the log. Anything else stays an ERROR."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        if msg == "opening handshake failed" and isinstance(exc, _REFUSED_OR_GONE):
            kwargs.pop("exc_info", None)
            level, msg, args = logging.INFO, "refused a websocket handshake: %s", (_one_line(exc),)
        super().log(level, msg, *args, **kwargs)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    while exc.__cause__ is not None:
        exc = exc.__cause__
        text += f"; {exc}"
    return text.replace("\n", " ")[:300]


def _station_id(path: str) -> str | None:
    path = path.split("?", 1)[0]
    if not path.startswith(PATH_PREFIX):
        return None
    station_id = unquote(path[len(PATH_PREFIX) :])
    return station_id if station_id and "/" not in station_id else None


def _password(headers: Headers, station_id: str) -> str | None:
    """The password of the request's one Basic credential for user `station_id`, or None.

    The user name is known from the path, so an id with a colon (OCPP allows it, Basic auth splits at the
    first colon) still logs in: whatever follows "station_id:" is the password.
    """
    values = headers.get_all("Authorization")
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = station_id + ":"
    return decoded[len(user) :] if decoded.startswith(user) else None


def _response(connection: ServerConnection, status: http.HTTPStatus, text: str, **headers: str) -> Response:
    response = connection.respond(status, text + "\n")
    for k, v in headers.items():
        response.headers[k] = v
    return response


class CentralSystem:
    """The OCPP server and the registry of live station connections."""

    def __init__(self, settings: OcppSettings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self.links: dict[str, StationLink] = {}
        # per station id: guessing one station's password; per address: guessing many stations' ids. The
        # address limit is higher: a site's stations often share one address behind NAT.
        self._failures_id = _FailedLogins(settings.auth_failures_per_min, services.clock)
        self._failures_ip = _FailedLogins(settings.auth_failures_per_address_per_min, services.clock)
        self._closing: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self.port = settings.port
        self.counters: dict[str, int] = defaultdict(int)

    @property
    def url(self) -> str:
        """The base URL stations are configured with (their id is appended)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        scheme = "wss" if self.settings.tls_cert else "ws"
        return f"{scheme}://{self.settings.host}:{self.port}/ocpp"

    async def start(self) -> None:
        """Listen on the OCPP port."""
        context = None
        if self.settings.tls_cert and self.settings.tls_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server = await serve(
            self._serve,
            self.settings.host,
            self.settings.port,
            subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS],
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_request,
            max_size=self.settings.max_frame_bytes,
            ssl=context,
            ping_interval=60,
            ping_timeout=60,
            # OCPP frames are small and frequent: compression costs CPU and memory per connection
            compression=None,
            server_header=None,
            logger=_QuietHandshakes(logging.getLogger("websockets.server")),
            # A reconnect storm brings thousands of handshakes at once. asyncio's default backlog of 100
            # makes the kernel drop the rest, and each dropped station waits for TCP's retries (1 s, 3 s ...).
            backlog=self.settings.listen_backlog,
        )
        sockets = list(self._server.sockets)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        logger.info("OCPP central system listening on %s", self.url)

    async def stop(self) -> None:
        """Close every station connection and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol:
        for p in offered:  # the station lists its preference first
            if p in SUBPROTOCOLS:
                return p
        self.counters["refused_subprotocol"] += 1
        raise NegotiationError(
            "offer ocpp1.6 or ocpp2.0.1 in Sec-WebSocket-Protocol (offered: %s)"
            % (", ".join(offered) or "none")
        )

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        station_id = _station_id(request.path)
        if station_id is None:
            return _response(connection, http.HTTPStatus.NOT_FOUND, "connect to /ocpp/{station id}")
        address = str(connection.remote_address[0]) if connection.remote_address else "?"
        retry_after = max(
            self._failures_id.retry_after_s(station_id), self._failures_ip.retry_after_s(address)
        )
        if retry_after:
            self.counters["auth_rate_limited"] += 1
            return _response(
                connection,
                http.HTTPStatus.TOO_MANY_REQUESTS,
                f"too many failed logins for this station or from this address, retry in {retry_after} s",
                **{"Retry-After": str(retry_after)},
            )
        if not request.headers.get_all("Authorization"):
            # Guesses nothing, so it is not counted: some clients send credentials only when challenged.
            self.counters["auth_missing"] += 1
            logger.info("station %r from %s: no credentials", station_id, address)
            return self._unauthorized(connection)
        password = _password(request.headers, station_id)
        if password is None or not self.services.stations.authenticate(station_id, password):
            self._failures_id.add(station_id)
            self._failures_ip.add(address)
            self.counters["auth_failed"] += 1
            # %r: the id comes from the URL and may hold line breaks or other look-alike log text
            logger.warning(
                "station %r from %s: unknown id, or wrong or malformed credentials", station_id, address
            )
            return self._unauthorized(connection)
        return None

    @staticmethod
    def _unauthorized(connection: ServerConnection) -> Response:
        return _response(
            connection,
            http.HTTPStatus.UNAUTHORIZED,
            "send HTTP Basic auth with the station id as user name and the station's password",
            **{"WWW-Authenticate": 'Basic realm="smartev OCPP", charset="UTF-8"'},
        )

    async def _serve(self, ws: ServerConnection) -> None:
        station_id = _station_id(ws.request.path if ws.request else "")
        protocol = ws.subprotocol
        if station_id is None or protocol is None:  # pragma: no cover - refused during the handshake
            await ws.close(1002)
            return
        link = SUBPROTOCOLS[protocol](station_id, ws, self.services)
        previous = self.links.get(station_id)
        self.links[station_id] = link
        if previous is not None:
            logger.warning(
                "station %s connected again from %s; its previous connection is closed",
                station_id,
                ws.remote_address,
            )
            self.counters["replaced"] += 1
            # The old socket is often dead (that is why the station reconnected): its close handshake may
            # take the whole close timeout, which the new connection must not wait for.
            closing = asyncio.create_task(previous.disconnect("replaced by a new connection"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        now = self.services.clock.now_ms()
        self.services.stations.connected(station_id, protocol, now)
        self.services.bus.publish(StationConnectivityChanged(station_id, True, now))
        self.counters["connections"] += 1
        link.on_message = lambda: self.services.stations.heartbeat(station_id, self.services.clock.now_ms())
        try:
            await link.start()
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("station %s: connection failed", station_id)
        finally:
            if self.links.get(station_id) is link:
                del self.links[station_id]
                self.services.stations.disconnected(station_id)
                self.services.bus.publish(
                    StationConnectivityChanged(station_id, False, self.services.clock.now_ms())
                )

    def control(self, station_id: str) -> ChargerControl:
        """The live connection of a station, or StationOffline."""
        self.services.stations.get(station_id)  # NotFound for an unknown id
        link = self.links.get(station_id)
        if link is None:
            raise StationOffline(f"station {station_id} is not connected")
        return link

    def online(self, station_id: str) -> bool:
        """True while the station has a connection."""
        return station_id in self.links

    def disconnect(self, station_id: str, reason: str) -> bool:
        """Close a station's connection (e.g. its password was replaced); True if it was connected."""
        link = self.links.get(station_id)
        if link is None:
            return False
        logger.warning("closing station %r: %s", station_id, reason)
        task = asyncio.create_task(link._connection.close(1008, reason[:120]))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return True

    def stats(self) -> dict[str, Any]:
        """Connections and counters for health pages."""
        return {"connected": len(self.links), "url": self.url, **self.counters}
