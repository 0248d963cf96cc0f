"""The OCPP-J websocket endpoint: `ws(s)://host:port/ocpp/{station_id}`, both versions on one port.

Security profiles 1 and 2: HTTP Basic auth is checked before the websocket upgrade (unknown stations and
wrong passwords get 401 and nothing is created or displaced); with a certificate and key in the settings
the endpoint speaks TLS. Failed attempts are counted per station id and per address; past the limit the
answer is 429 until the minute is over. The OCPP version is chosen by subprotocol negotiation; a client
offering neither `ocpp1.6` nor `ocpp2.0.1` is refused. A second authenticated connection with the same id
replaces the first (a rebooted station often reconnects before its old socket times out); it is logged.
"""

from __future__ import annotations

import base64
import binascii
import http
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from smartev.csms.control import ChargerControl
from smartev.csms.link import StationLink
from smartev.csms.runtime import Services
from smartev.csms.v16 import Station16
from smartev.csms.v201 import Station201
from smartev.errors import Conflict
from smartev.events import StationConnectivityChanged
from smartev.settings import OcppSettings

logger = logging.getLogger(__name__)

PATH_PREFIX = "/ocpp/"
SUBPROTOCOLS: dict[str, type[StationLink]] = {"ocpp2.0.1": Station201, "ocpp1.6": Station16}


class StationOffline(Conflict):
    """The station is not connected, so it cannot be asked anything now."""


class _Failures:
    """Failed auth attempts per key in the current minute."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._window = 0
        self._counts: dict[str, int] = defaultdict(int)

    def _roll(self) -> None:
        window = int(time.monotonic() // 60)
        if window != self._window:
            self._window, self._counts = window, defaultdict(int)

    def blocked(self, *keys: str) -> bool:
        self._roll()
        return any(self._counts.get(k, 0) >= self.limit for k in keys)

    def add(self, *keys: str) -> None:
        self._roll()
        for k in keys:
            self._counts[k] += 1


def _station_id(path: str) -> str | None:
    path = path.split("?", 1)[0]
    if not path.startswith(PATH_PREFIX):
        return None
    station_id = unquote(path[len(PATH_PREFIX) :])
    return station_id if station_id and "/" not in station_id else None


def _basic_credentials(headers: Headers) -> tuple[str, str] | None:
    value = headers.get("Authorization")
    if not value or not value.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


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
        self._failures = _Failures(settings.auth_failures_per_min)
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
        from websockets.exceptions import NegotiationError

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
        keys = (f"id:{station_id}", f"ip:{address}")
        if self._failures.blocked(*keys):
            self.counters["auth_rate_limited"] += 1
            return _response(
                connection,
                http.HTTPStatus.TOO_MANY_REQUESTS,
                "too many failed logins, retry in a minute",
                **{"Retry-After": "60"},
            )
        credentials = _basic_credentials(request.headers)
        if credentials is None or credentials[0] != station_id:
            self._failures.add(*keys)
            self.counters["auth_failed"] += 1
            return _response(
                connection,
                http.HTTPStatus.UNAUTHORIZED,
                "send HTTP Basic auth with the station id as user name and the station's password",
                **{"WWW-Authenticate": 'Basic realm="smartev OCPP", charset="UTF-8"'},
            )
        if not self.services.stations.authenticate(station_id, credentials[1]):
            self._failures.add(*keys)
            self.counters["auth_failed"] += 1
            logger.warning("station %s from %s: unknown id or wrong password", station_id, address)
            return _response(
                connection,
                http.HTTPStatus.UNAUTHORIZED,
                "unknown station or wrong password",
                **{"WWW-Authenticate": 'Basic realm="smartev OCPP", charset="UTF-8"'},
            )
        return None

    async def _serve(self, ws: ServerConnection) -> None:
        station_id = _station_id(ws.request.path if ws.request else "")
        protocol = ws.subprotocol
        if station_id is None or protocol is None:  # pragma: no cover - refused during the handshake
            await ws.close(1002)
            return
        link = SUBPROTOCOLS[protocol](station_id, ws, self.services)
        previous = self.links.get(station_id)
        if previous is not None:
            logger.warning(
                "station %s connected again from %s; its previous connection is closed",
                station_id,
                ws.remote_address,
            )
            self.counters["replaced"] += 1
            await previous._connection.close(1000, "replaced by a new connection")
        self.links[station_id] = link
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

    def stats(self) -> dict[str, Any]:
        """Connections and counters for health pages."""
        return {"connected": len(self.links), "url": self.url, **self.counters}
