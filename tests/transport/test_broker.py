"""The embedded broker, driven by real MQTT clients (aiomqtt) over TCP.

A refused publish or subscription is silent for the sender, so each negative case is followed by an
allowed "marker" message on the same path: if the refused message had got through, it would arrive first.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from smartev.errors import Unavailable
from smartev.transport.broker import EmbeddedBroker, may_publish, may_subscribe
from smartev.transport.credentials import hash_device_secret

from mqtt_clients import drop_connection, next_message

VIN_A = "1M8GDM9AXKP042788"
VIN_B = "WP0ZZZ99ZTS392124"
SECRET_A = "secret-of-car-a-0123456789abcdefghijkl"
SECRET_B = "secret-of-car-b-0123456789abcdefghijkl"
SERVICE = "smartev"
SERVICE_PASSWORD = "service-password-0123456789abcdef"


class Secrets:
    """The vehicle registry as the broker sees it."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self._hashes = {vin: hash_device_secret(secret) for vin, secret in secrets.items()}

    def secret_hash(self, vin: str) -> str | None:
        return self._hashes.get(vin)


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    embedded = EmbeddedBroker(
        host="127.0.0.1",
        port=0,
        service_username=SERVICE,
        service_password=SERVICE_PASSWORD,
        vehicles=Secrets({VIN_A: SECRET_A, VIN_B: SECRET_B}),
    )
    await embedded.start()
    yield embedded
    await embedded.stop()


def connect(
    broker: EmbeddedBroker,
    username: str | None,
    password: str | None,
    identifier: str | None = None,
    *,
    clean_session: bool | None = None,
    will: aiomqtt.Will | None = None,
) -> aiomqtt.Client:
    """A client of `broker`; its client id defaults to its username."""
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=username,
        password=password,
        identifier=identifier if identifier is not None else username,
        clean_session=clean_session,
        will=will,
        timeout=5,
    )


def car_a(
    broker: EmbeddedBroker, *, clean_session: bool | None = None, will: aiomqtt.Will | None = None
) -> aiomqtt.Client:
    return connect(broker, VIN_A, SECRET_A, clean_session=clean_session, will=will)


def service(broker: EmbeddedBroker, identifier: str = "platform") -> aiomqtt.Client:
    return connect(broker, SERVICE, SERVICE_PASSWORD, identifier)


def failed(codes: object) -> list[bool]:
    """Per filter, whether the SUBACK refused it."""
    return [code.is_failure for code in codes]  # type: ignore[attr-defined]


async def test_port_zero_picks_a_free_port(broker: EmbeddedBroker) -> None:
    assert broker.port > 0
    with socket.create_connection(("127.0.0.1", broker.port), timeout=2):
        pass


async def test_a_taken_port_is_reported_with_the_setting_to_change() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(
            host="127.0.0.1", port=port, service_username=SERVICE, service_password="x", vehicles=Secrets({})
        )
        with pytest.raises(Unavailable, match=rf"{port}.*SMARTEV_MQTT_PORT.*--mqtt-port"):
            await broker.start()


def test_an_empty_service_password_is_refused() -> None:
    with pytest.raises(ValueError, match="password"):
        EmbeddedBroker(
            host="127.0.0.1", port=0, service_username=SERVICE, service_password="", vehicles=Secrets({})
        )


async def test_a_car_publishes_telemetry_and_receives_commands(broker: EmbeddedBroker) -> None:
    async with service(broker) as platform, car_a(broker) as car:
        await platform.subscribe("vehicles/+/telemetry", qos=1)
        await car.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
        await car.publish(f"vehicles/{VIN_A}/telemetry", b'{"speed": 42}', qos=1)
        message = await next_message(platform)
        assert (message.topic.value, message.payload) == (f"vehicles/{VIN_A}/telemetry", b'{"speed": 42}')
        await platform.publish(f"vehicles/{VIN_A}/commands", b'{"lock": true}', qos=1)
        message = await next_message(car)
        assert (message.topic.value, message.payload) == (f"vehicles/{VIN_A}/commands", b'{"lock": true}')
    assert broker.stats == {"auth_failures": 0, "denied_publish": 0, "denied_subscribe": 0}


@pytest.mark.parametrize(
    ("username", "password", "identifier"),
    [
        pytest.param(VIN_A, "wrong", VIN_A, id="wrong secret"),
        pytest.param(VIN_A, SECRET_B, VIN_A, id="another car's secret"),
        pytest.param(VIN_A, None, VIN_A, id="no secret"),
        pytest.param("WBA00000000000000", SECRET_A, "WBA00000000000000", id="unknown VIN"),
        pytest.param(None, None, "anonymous", id="anonymous"),
        pytest.param(SERVICE, "wrong", "platform", id="service user, wrong password"),
        pytest.param(VIN_A, SECRET_A, VIN_B, id="another car's VIN as client id"),
        pytest.param(VIN_A, SECRET_A, "my-car", id="client id without the VIN"),
        pytest.param(VIN_A, SECRET_A, "", id="empty client id"),
    ],
)
async def test_login_refused(
    broker: EmbeddedBroker, username: str | None, password: str | None, identifier: str
) -> None:
    with pytest.raises(aiomqtt.MqttError, match="Not authorized"):
        async with connect(broker, username, password, identifier):
            pass
    assert broker.stats["auth_failures"] == 1


async def test_a_car_may_use_a_client_id_starting_with_its_vin(broker: EmbeddedBroker) -> None:
    async with connect(broker, VIN_A, SECRET_A, f"{VIN_A}-infotainment"):
        pass


@pytest.mark.parametrize(
    "topic",
    [
        f"vehicles/{VIN_B}/telemetry",
        f"vehicles/{VIN_B}/status",
        f"vehicles/{VIN_B}/commands",
        f"vehicles/{VIN_A}/commands",
        f"vehicles/{VIN_A}/errors",
        f"vehicles/{VIN_A}/telemetry/ack",
        f"vehicles/{VIN_A}/other",
        f"vehicles/{VIN_A}",
        "fleet/broadcast",
    ],
)
async def test_a_car_publishes_only_to_its_own_uplink_topics(broker: EmbeddedBroker, topic: str) -> None:
    async with service(broker) as platform, car_a(broker) as car:
        await platform.subscribe("#", qos=1)
        await car.publish(topic, b"forbidden", qos=1)
        await car.publish(f"vehicles/{VIN_A}/telemetry", b"marker", qos=1)
        message = await next_message(platform)
        assert message.payload == b"marker"
    assert broker.stats["denied_publish"] == 1


@pytest.mark.parametrize(
    "topic_filter",
    [
        f"vehicles/{VIN_B}/commands",
        f"vehicles/{VIN_B}/#",
        "vehicles/+/commands",
        "vehicles/#",
        "+/+/commands",
        "#",
        f"vehicles/{VIN_A}/telemetry",
        f"vehicles/{VIN_A}",
    ],
)
async def test_a_car_subscribes_only_inside_its_own_prefix(broker: EmbeddedBroker, topic_filter: str) -> None:
    async with service(broker) as platform, car_a(broker) as car:
        assert failed(await car.subscribe(topic_filter, qos=1)) == [True]
        await car.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
        await platform.publish(f"vehicles/{VIN_B}/commands", b"for B", qos=1)
        await platform.publish(f"vehicles/{VIN_A}/telemetry", b"A's own uplink", qos=1)
        await platform.publish(f"vehicles/{VIN_A}/commands", b"marker", qos=1)
        message = await next_message(car)
        assert message.payload == b"marker"
    assert broker.stats["denied_subscribe"] == 1


@pytest.mark.parametrize("topic_filter", [f"vehicles/{VIN_A}/#", f"vehicles/{VIN_A}/+"])
async def test_a_cars_wildcard_delivers_only_its_downlink_topics(
    broker: EmbeddedBroker, topic_filter: str
) -> None:
    async with service(broker) as platform, car_a(broker) as car:
        assert failed(await car.subscribe(topic_filter, qos=1)) == [False]
        await car.publish(f"vehicles/{VIN_A}/telemetry", b"own uplink", qos=1)
        await platform.publish(f"vehicles/{VIN_A}/errors", b"marker", qos=1)
        message = await next_message(car)
        assert (message.topic.value, message.payload) == (f"vehicles/{VIN_A}/errors", b"marker")


async def test_a_car_retains_only_its_status(broker: EmbeddedBroker) -> None:
    async with car_a(broker) as car:
        await car.publish(f"vehicles/{VIN_A}/telemetry", b"stale speed", qos=1, retain=True)
        await car.publish(f"vehicles/{VIN_A}/status", b"online", qos=1, retain=True)
    async with service(broker) as platform:
        # amqtt sends a filter's retained messages right after its SUBACK, so anything retained on
        # telemetry would come before the status
        await platform.subscribe(f"vehicles/{VIN_A}/telemetry", qos=1)
        await platform.subscribe(f"vehicles/{VIN_A}/status", qos=1)
        message = await next_message(platform)
        assert (message.topic.value, message.payload, message.retain) == (
            f"vehicles/{VIN_A}/status",
            b"online",
            True,
        )
    assert broker.stats["denied_publish"] == 1


@pytest.mark.parametrize(
    "will",
    [
        aiomqtt.Will(f"vehicles/{VIN_B}/commands", b'{"unlock": true}', qos=1),
        aiomqtt.Will(f"vehicles/{VIN_A}/commands", b"x", qos=1),
        aiomqtt.Will(f"vehicles/{VIN_A}/telemetry", b"x", qos=1, retain=True),
    ],
    ids=["another car's commands", "own commands", "retained telemetry"],
)
async def test_a_car_may_not_leave_a_will_it_could_not_publish(
    broker: EmbeddedBroker, will: aiomqtt.Will
) -> None:
    with pytest.raises(aiomqtt.MqttError, match="Not authorized"):
        async with car_a(broker, will=will):
            pass


async def test_a_cars_will_is_published_when_it_drops_off(broker: EmbeddedBroker) -> None:
    async with service(broker) as platform:
        await platform.subscribe(f"vehicles/{VIN_A}/status", qos=1)
        will = aiomqtt.Will(f"vehicles/{VIN_A}/status", b"offline", qos=1, retain=True)
        car = car_a(broker, will=will)
        await car.__aenter__()
        await car.publish(f"vehicles/{VIN_A}/status", b"online", qos=1, retain=True)
        assert (await next_message(platform)).payload == b"online"
        await drop_connection(car)
        assert (await next_message(platform)).payload == b"offline"


async def test_the_service_user_may_do_anything(broker: EmbeddedBroker) -> None:
    async with service(broker) as platform, car_a(broker) as car:
        assert failed(await platform.subscribe([("#", 1), ("vehicles/+/commands", 1)])) == [False, False]
        await car.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
        await platform.publish(f"vehicles/{VIN_B}/telemetry", b"anything", qos=1)
        assert (await next_message(platform)).payload == b"anything"
        await platform.publish(f"vehicles/{VIN_A}/commands", b"lock", qos=1)
        assert (await next_message(car)).payload == b"lock"
    async with connect(broker, SERVICE, SERVICE_PASSWORD, VIN_A):  # and any client id
        pass
    assert broker.stats == {"auth_failures": 0, "denied_publish": 0, "denied_subscribe": 0}


@pytest.mark.parametrize("clean_session", [True, False], ids=["clean", "persistent"])
@pytest.mark.parametrize("username", [VIN_A, SERVICE], ids=["as the car", "as the service user"])
async def test_an_impostor_with_the_cars_client_id_cannot_touch_its_session(
    broker: EmbeddedBroker, clean_session: bool, username: str
) -> None:
    async with service(broker) as platform, car_a(broker, clean_session=clean_session) as car:
        await car.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
        with pytest.raises(aiomqtt.MqttError, match="Not authorized"):
            async with connect(broker, username, "wrong", VIN_A, clean_session=clean_session):
                pass
        # still connected and subscribed
        await platform.publish(f"vehicles/{VIN_A}/commands", b"lock", qos=1)
        assert (await next_message(car)).payload == b"lock"
        # and still just a car: the failed CONNECT lent it no other username
        await platform.subscribe("#", qos=1)
        await car.publish(f"vehicles/{VIN_B}/commands", b"forbidden", qos=1)
        await car.publish(f"vehicles/{VIN_A}/telemetry", b"marker", qos=1)
        assert (await next_message(platform)).payload == b"marker"
    assert broker.stats["auth_failures"] == 1


async def test_a_persistent_session_does_not_pass_from_the_service_user_to_a_car(
    broker: EmbeddedBroker,
) -> None:
    async with connect(broker, SERVICE, SERVICE_PASSWORD, VIN_A, clean_session=False) as borrowed:
        await borrowed.subscribe("vehicles/#", qos=1)
    async with service(broker) as platform:
        await platform.publish(f"vehicles/{VIN_B}/commands", b"queued for the service user", qos=1)
        async with car_a(broker, clean_session=False) as car:
            await car.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
            await platform.publish(f"vehicles/{VIN_B}/commands", b"for B", qos=1)
            await platform.publish(f"vehicles/{VIN_A}/commands", b"marker", qos=1)
            assert (await next_message(car)).payload == b"marker"


async def test_a_car_reconnecting_with_its_client_id_replaces_its_old_connection(
    broker: EmbeddedBroker,
) -> None:
    async with service(broker) as platform, car_a(broker) as old:
        async with car_a(broker) as new:
            with pytest.raises(aiomqtt.MqttError, match="Disconnected"):
                await next_message(old)
            await new.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
            await platform.publish(f"vehicles/{VIN_A}/commands", b"lock", qos=1)
            assert (await next_message(new)).payload == b"lock"


async def test_a_car_does_not_get_other_cars_retained_messages_on_connect(broker: EmbeddedBroker) -> None:
    async with connect(broker, VIN_B, SECRET_B) as car_b:
        await car_b.publish(f"vehicles/{VIN_B}/status", b"online", qos=1, retain=True)
    async with service(broker) as platform:
        await platform.subscribe("vehicles/#", qos=1)
        assert (await next_message(platform)).payload == b"online"
        async with car_a(broker) as car:
            await car.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
            await platform.publish(f"vehicles/{VIN_A}/commands", b"marker", qos=1)
            assert (await next_message(car)).payload == b"marker"


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        (f"vehicles/{VIN_A}/telemetry", True),
        (f"vehicles/{VIN_A}/command-results", True),
        (f"vehicles/{VIN_A}/status", True),
        (f"vehicles/{VIN_A}/commands", False),
        (f"vehicles/{VIN_A}/telemetry/ack", False),
        (f"vehicles/{VIN_B}/telemetry", False),
        (f"vehicles/{VIN_A}/telemetry/extra", False),
    ],
)
def test_may_publish(topic: str, allowed: bool) -> None:
    assert may_publish(VIN_A, topic) is allowed


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        (f"vehicles/{VIN_A}/commands", True),
        (f"vehicles/{VIN_A}/errors", True),
        (f"vehicles/{VIN_A}/telemetry/ack", True),
        (f"vehicles/{VIN_A}/#", True),
        (f"vehicles/{VIN_A}/+", True),
        (f"vehicles/{VIN_A}/+/ack", True),
        (f"vehicles/{VIN_A}/telemetry", False),
        (f"vehicles/{VIN_A}", False),
        (f"vehicles/{VIN_B}/commands", False),
        ("vehicles/+/commands", False),
        ("vehicles/#", False),
        ("+/" + VIN_A + "/commands", False),
        ("#", False),
        (f"$share/g/vehicles/{VIN_A}/commands", False),
    ],
)
def test_may_subscribe(topic_filter: str, allowed: bool) -> None:
    assert may_subscribe(VIN_A, topic_filter) is allowed


async def test_subscribing_during_a_broadcast_loses_no_message() -> None:
    """amqtt iterated its subscription table across awaits: a concurrent SUBSCRIBE killed the broadcast."""
    from smartev.transport.broker import _SnapshotDict

    table = _SnapshotDict({"a": 1})
    seen = []
    for key, _ in table.items():
        table["b"] = 2  # would raise "dictionary changed size during iteration" on a plain dict
        seen.append(key)
    for key in table:
        table["c"] = 3
        seen.append(key)
    assert seen == ["a", "a", "b"]
