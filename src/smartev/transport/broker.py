"""The embedded MQTT broker: amqtt, open to the platform and to each car for its own topics only.

Who may do what (`smartev.transport.mosquitto` writes the same rules for an external Mosquitto):

- the platform's service user: anything, with any client id;
- a car, whose username is its VIN and whose client id is its VIN or starts with it: publish to
  `vehicles/{vin}/telemetry`, `.../command-results` and `.../status` (retained only on status), subscribe to
  `vehicles/{vin}/telemetry/ack`, `.../errors` and `.../commands`, or to a wildcard filter below
  `vehicles/{vin}/`, and receive only those three topics; its last will obeys the publish rules;
- nobody else.

amqtt 0.12.1 does not hold these rules by itself; `_GuardedBroker` closes these gaps in it:

1. It deletes (clean session) or rewrites (persistent session) the session of a CONNECT's client id and
   only then authenticates the CONNECT, so a wrong password could silence or kick off a connected car, or
   give its live session another username. We authenticate first and refuse without touching any session;
   a persistent session also starts afresh when another user takes over its client id.
2. A will is published without any topic check; the auth plugin refuses a will the client may not publish.
3. On every connect it sends the new client the retained messages matching *any* client's filter; we send
   only those matching the client's own filters.
4. Topic checks never see the retain flag; the retain flag of a car's message is dropped unless the topic
   is its status.
5. A clean-session CONNECT with a connected client id leaves the old connection open but deaf until it
   times out and publishes its (by then wrong) will; we close it at once, as MQTT asks.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from amqtt.adapters import ReaderAdapter, WriterAdapter  # type: ignore[import-untyped]
from amqtt.broker import Broker, Server  # type: ignore[import-untyped]
from amqtt.contexts import (  # type: ignore[import-untyped]
    Action,
    BaseContext,
    BrokerConfig,
    ListenerConfig,
    ListenerType,
)
from amqtt.errors import BrokerError, MQTTError  # type: ignore[import-untyped]
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler  # type: ignore[import-untyped]
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin  # type: ignore[import-untyped]
from amqtt.session import Session  # type: ignore[import-untyped]
from amqtt.utils import gen_client_id  # type: ignore[import-untyped]

from smartev.errors import Unavailable
from smartev.transport.credentials import verify_device_secret

logger = logging.getLogger(__name__)

VEHICLE_PUBLISH_TOPICS = ("telemetry", "command-results", "status")
"""What a car publishes, below `vehicles/{vin}/`."""
VEHICLE_SUBSCRIBE_TOPICS = ("telemetry/ack", "errors", "commands")
"""What a car receives, below `vehicles/{vin}/`."""
VEHICLE_RETAINED_TOPIC = "status"
"""The one topic a car may publish retained."""

_AUTHENTICATED = "smartev.authenticated"
# What a CONNECT renews in a persistent session; amqtt forgets will_retain, which the will was checked with.
_RECONNECT_FIELDS = (
    "will_flag",
    "will_message",
    "will_topic",
    "will_qos",
    "will_retain",
    "keep_alive",
    "password",
)
# Policies waiting for the plugin amqtt builds from a dotted path and a strictly typed Config; an entry lives
# only while its broker is being constructed.
_PENDING_POLICIES: dict[str, AccessPolicy] = {}


class VehicleSecrets(Protocol):
    """Where the broker looks up a car's secret."""

    def secret_hash(self, vin: str) -> str | None:
        """The stored hash of the car's secret, or None for an unknown car (an in-memory lookup)."""
        ...


class AccessPolicy:
    """Who may connect, publish, subscribe and receive; counts what it refuses."""

    def __init__(self, service_username: str, service_password: str, vehicles: VehicleSecrets) -> None:
        if not service_username or not service_password:
            raise ValueError("the MQTT service user needs a username and a password")
        self._service_username = service_username
        self._service_password = service_password.encode()
        self._vehicles = vehicles
        self.stats = {"auth_failures": 0, "denied_publish": 0, "denied_subscribe": 0}
        self._reported: set[tuple[str | None, str]] = set()

    def authenticate(self, session: Session) -> bool:
        """True when the CONNECT in `session` may go ahead."""
        refusal = self._refusal(session)
        if refusal is None:
            return True
        self.stats["auth_failures"] += 1
        logger.info(
            "MQTT connection refused for user %s from %s: %s",
            _masked(session.username),
            session.remote_address,
            refusal,
        )
        return False

    def allows(self, session: Session, topic: str, action: Action) -> bool:
        """True when the session's user may publish to, subscribe to or receive `topic`."""
        vin = session.username
        if vin == self._service_username:
            return True
        if action == Action.RECEIVE:
            return topic in _topics(vin, VEHICLE_SUBSCRIBE_TOPICS)
        if action == Action.PUBLISH:
            return may_publish(vin, topic) or self._refuse(
                vin, "denied_publish", f"publish to {_masked_topic(topic)}"
            )
        return may_subscribe(vin, topic) or self._refuse(
            vin, "denied_subscribe", f"filter {_masked_topic(topic)}"
        )

    def may_retain(self, session: Session, topic: str) -> bool:
        """True when the session's user may have `topic` retained."""
        vin = session.username
        if vin == self._service_username or topic == _retained_topic(vin):
            return True
        return self._refuse(vin, "denied_publish", f"retained message on {_masked_topic(topic)}")

    def _refuse(self, vin: str | None, counter: str, what: str) -> bool:
        self.stats[counter] += 1
        # at INFO once per car and kind: a misconfigured car would otherwise fill the log
        level = logging.DEBUG if (vin, counter) in self._reported else logging.INFO
        self._reported.add((vin, counter))
        logger.log(level, "MQTT %s refused for %s", what, _masked(vin))
        return False

    def _refusal(self, session: Session) -> str | None:
        username, password = session.username, (session.password or "")
        if username is None:
            return "no username"
        if username == self._service_username:
            return (
                None if hmac.compare_digest(password.encode(), self._service_password) else "wrong password"
            )
        stored = self._vehicles.secret_hash(username)
        if stored is None:
            return "unknown vehicle"
        if not verify_device_secret(password, stored):
            return "wrong secret"
        if not (session.client_id or "").startswith(username):
            return "client id does not start with the VIN"
        if session.will_flag and not (
            may_publish(username, session.will_topic or "")
            and (not session.will_retain or session.will_topic == _retained_topic(username))
        ):
            return "will not allowed on that topic"
        return None


def may_publish(vin: str, topic: str) -> bool:
    """True when the car `vin` may publish to `topic`."""
    return topic in _topics(vin, VEHICLE_PUBLISH_TOPICS)


def may_subscribe(vin: str, topic_filter: str) -> bool:
    """True when the car `vin` may subscribe to `topic_filter`."""
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter in _topics(vin, VEHICLE_SUBSCRIBE_TOPICS)
    levels = topic_filter.split("/")
    # wildcards only below the car's own prefix; what they match is then narrowed on delivery
    return len(levels) > 2 and levels[0] == "vehicles" and levels[1] == vin


def _topics(vin: str, suffixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"vehicles/{vin}/{suffix}" for suffix in suffixes)


def _retained_topic(vin: str) -> str:
    return f"vehicles/{vin}/{VEHICLE_RETAINED_TOPIC}"


def _masked_topic(topic: str) -> str:
    levels = topic.split("/")
    if len(levels) > 1 and levels[0] == "vehicles":
        levels[1] = _masked(levels[1])
    return "/".join(levels)


def _masked(username: str | None) -> str:
    """A username fit for the log: enough of a VIN to tell cars apart, not the whole VIN."""
    if username is None:
        return "(anonymous)"
    return username if len(username) <= 8 else f"{username[:3]}…{username[-4:]}"


class _AccessPlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]
    """Hands amqtt's authentication and topic checks to an `AccessPolicy`."""

    @dataclass
    class Config:
        """The key of the policy in `_PENDING_POLICIES`."""

        policy: str

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._policy = _PENDING_POLICIES[self.config.policy]

    async def authenticate(self, *, session: Session) -> bool:
        """Check the CONNECT's credentials, client id and will."""
        return self._policy.authenticate(session)

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        """Check a publish, subscription or delivery."""
        if session is None or topic is None or action is None:
            return False
        return self._policy.allows(session, topic, action)


class _SnapshotDict(dict[str, Any]):
    """A dict whose iteration works on a copy.

    amqtt iterates its subscription table with awaits inside the loop; a client subscribing meanwhile made
    the broadcast task die with "dictionary changed size during iteration" and the message was lost.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return list(super().items())


class _GuardedBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with the session and retained-message fixes listed in the module docstring."""

    def __init__(self, config: BrokerConfig, policy: AccessPolicy) -> None:
        super().__init__(config)
        self._policy = policy
        self._subscriptions: dict[str, Any] = _SnapshotDict(self._subscriptions)

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        """amqtt's version, but the session table is touched only after the CONNECT is authenticated."""
        try:
            handler, incoming = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except MQTTError:
            await writer.close()
            raise
        if not await super()._authenticate(incoming, self.listeners_config["default"]):
            return handler, incoming  # _handle_client_session refuses it
        session = incoming
        old = self._sessions.get(incoming.client_id) if incoming.client_id else None
        # a persistent session is kept only for the user who made it: its subscriptions and queued
        # messages were granted to that user
        if incoming.clean_session or (old is not None and old[0].username != incoming.username):
            if incoming.client_id:
                await self._take_over(incoming.client_id)
                await self._delete_session(incoming.client_id)
            else:
                incoming.client_id = gen_client_id()
            incoming.parent = 0
        elif old is not None:
            session = old[0]
            for name in _RECONNECT_FIELDS:
                setattr(session, name, getattr(incoming, name))
            session.parent = 1
        else:
            incoming.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        session.attributes[_AUTHENTICATED] = True
        return handler, session

    async def _take_over(self, client_id: str) -> None:
        """End the live connection of `client_id`, as MQTT asks when its id connects again."""
        old = self._sessions.get(client_id)
        if old is not None and old[0].transitions.is_connected():
            await old[1].handle_connection_closed()
            await old[1].stop()

    async def _handle_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        client_session: Session,
        handler: BrokerProtocolHandler,
        server: Server,
        listener_name: str,
    ) -> None:
        """Refuse an unauthenticated CONNECT without touching any session, else run amqtt's version."""
        if not client_session.attributes.get(_AUTHENTICATED):
            handler.attach(client_session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            return
        await super()._handle_client_session(reader, writer, client_session, handler, server, listener_name)

    async def _authenticate(self, session: Session, listener: ListenerConfig) -> bool:
        """The verdict of `_initialize_client_session`, which authenticated this CONNECT already."""
        return bool(session.attributes.pop(_AUTHENTICATED, False))

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        """Retain (or clear) a message, unless a car asks for it on any topic but its status."""
        if source_session is not None and topic_name is not None:
            if not self._policy.may_retain(source_session, topic_name):
                return
        await super().retain_message(source_session, topic_name, data, qos)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        """Send retained messages for a filter, but only if the session holds that filter."""
        # amqtt calls this on connect for every filter of every client
        holders = self._subscriptions.get(subscription[0], ())
        if any(holder.client_id == session.client_id for holder, _qos in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class EmbeddedBroker:
    """The platform's own MQTT broker, for development and single-node installations."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        service_username: str,
        service_password: str,
        vehicles: VehicleSecrets,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._bound_port: int | None = None
        self._policy = AccessPolicy(service_username, service_password, vehicles)
        self._broker: _GuardedBroker | None = None

    async def start(self) -> None:
        """Start listening; raises `Unavailable` when the port cannot be bound."""
        if self._broker is not None:
            return
        _quiet_amqtt_logging()
        key = uuid.uuid4().hex
        _PENDING_POLICIES[key] = self._policy
        try:
            broker = _GuardedBroker(self._config(key), self._policy)
        finally:
            del _PENDING_POLICIES[key]
        try:
            await broker.start()
        except BrokerError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise Unavailable(
                    f"MQTT port {self._requested_port} on {self._host} is already in use; stop what holds it "
                    "or pick another port with SMARTEV_MQTT_PORT or --mqtt-port (0 picks a free one)"
                ) from exc
            raise Unavailable(
                f"the embedded MQTT broker could not listen on {self._host}:{self._requested_port}: "
                f"{cause or exc}"
            ) from exc
        self._broker = broker
        self._bound_port = _bound_port(broker)
        logger.info("Embedded MQTT broker listening on %s:%d", self._host, self._bound_port)

    async def stop(self) -> None:
        """Disconnect every client and stop listening."""
        if self._broker is None:
            return
        broker, self._broker = self._broker, None
        await broker.shutdown()

    @property
    def port(self) -> int:
        """The port it listens on (the one picked by the system when started with port 0)."""
        return self._bound_port if self._bound_port is not None else self._requested_port

    @property
    def stats(self) -> dict[str, int]:
        """Counters of refused logins, publishes and subscriptions."""
        return dict(self._policy.stats)

    def _config(self, policy_key: str) -> BrokerConfig:
        return BrokerConfig(
            listeners={
                "default": ListenerConfig(type=ListenerType.TCP, bind=f"{self._host}:{self._requested_port}")
            },
            # only ours: this drops amqtt's defaults ($SYS topics, packet and event loggers, anonymous auth)
            plugins={f"{__name__}.{_AccessPlugin.__name__}": {"policy": policy_key}},
        )


def _bound_port(broker: _GuardedBroker) -> int:
    server: Any = broker._servers["default"].instance
    if not isinstance(server, asyncio.Server) or not server.sockets:
        raise Unavailable("the embedded MQTT broker started without a listening socket")
    port: int = server.sockets[0].getsockname()[1]
    return port


def _quiet_amqtt_logging() -> None:
    """Keep per-connection INFO lines out of the log, unless someone configured those loggers."""
    # amqtt logs every connection; `transitions`, its state machines, every state change of every session
    for name in ("amqtt", "transitions"):
        library_logger = logging.getLogger(name)
        if library_logger.level == logging.NOTSET:
            library_logger.setLevel(logging.WARNING)
