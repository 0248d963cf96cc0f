"""Files for an external Mosquitto, checked by running a real one on them.

The password file is written from our own `$7$` hashes, so a car logging in here also proves that
Mosquitto accepts them. A refused publish or subscription is silent, so each negative case is followed by
an allowed "marker" message on the same path: if the refused message had got through, it would arrive first.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from smartev.transport.credentials import hash_device_secret
from smartev.transport.mosquitto import MosquittoFiles, write_mosquitto_files

from mqtt_clients import drop_connection, next_message

VIN_A = "1M8GDM9AXKP042788"
VIN_B = "WP0ZZZ99ZTS392124"
SECRET_A = "secret-of-car-a-0123456789abcdefghijkl"
SECRET_B = "secret-of-car-b-0123456789abcdefghijkl"
SERVICE = "smartev"
SERVICE_PASSWORD = "service-password-0123456789abcdef"


def write_files(directory: Path, port: int = 1883, host: str | None = "127.0.0.1") -> MosquittoFiles:
    vehicles = [(VIN_A, hash_device_secret(SECRET_A)), (VIN_B, hash_device_secret(SECRET_B))]
    return write_mosquitto_files(
        directory, vehicles, SERVICE, hash_device_secret(SERVICE_PASSWORD), port=port, host=host
    )


def mosquitto_path() -> str:
    """The mosquitto binary; fails in CI when it is missing, skips elsewhere."""
    path = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    if path is None:
        message = "mosquitto is not installed (apt-get install mosquitto); the external-broker tests need it"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_listening(process: subprocess.Popen[bytes], port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, errors = process.communicate()
            pytest.fail(f"mosquitto exited with {process.returncode}: {errors.decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"mosquitto did not listen on port {port} within {timeout} s")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """A private Mosquitto on a free port, configured only by our files; yields its port."""
    binary = mosquitto_path()
    port = free_port()
    files = write_files(tmp_path / "mosquitto", port)
    conf = files.conf_path
    if os.geteuid() == 0:
        # as root, Mosquitto would switch to its own user, which may not read the test's private directory
        conf = tmp_path / "as-root.conf"
        conf.write_text(f"user root\ninclude_dir {files.conf_path.parent}\n")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until_listening(process, port)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def connect(
    port: int, username: str | None, password: str | None, identifier: str | None = None
) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=username,
        password=password,
        identifier=identifier if identifier is not None else username,
        timeout=5,
    )


def car_a(port: int, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", port, username=VIN_A, password=SECRET_A, identifier=VIN_A, will=will, timeout=5
    )


def service(port: int) -> aiomqtt.Client:
    return connect(port, SERVICE, SERVICE_PASSWORD, "platform")


def test_files_hold_users_rules_and_settings(tmp_path: Path) -> None:
    files = write_files(tmp_path / "new" / "dir", port=1884, host=None)
    passwd = files.passwd_path.read_text().splitlines()
    assert [line.split(":", 1)[0] for line in passwd] == [SERVICE, VIN_A, VIN_B]
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in passwd)
    assert stat.S_IMODE(files.passwd_path.stat().st_mode) == 0o600
    acl = files.acl_path.read_text().splitlines()
    assert {line for line in acl if line.startswith("pattern")} == {
        "pattern write vehicles/%u/telemetry",
        "pattern write vehicles/%u/command-results",
        "pattern write vehicles/%u/status",
        "pattern read vehicles/%u/telemetry/ack",
        "pattern read vehicles/%u/errors",
        "pattern read vehicles/%u/commands",
    }
    assert acl[-2:] == [f"user {SERVICE}", "topic readwrite vehicles/#"]
    conf = files.conf_path.read_text().splitlines()
    for line in (
        "per_listener_settings false",
        "listener 1884",
        "allow_anonymous false",
        f"password_file {files.passwd_path}",
        f"acl_file {files.acl_path}",
    ):
        assert line in conf
    assert files.passwd_path.is_absolute()
    assert sorted(path.name for path in files.conf_path.parent.iterdir()) == ["acl", "passwd", "smartev.conf"]


def test_rewriting_replaces_the_files(tmp_path: Path) -> None:
    write_files(tmp_path)
    files = write_mosquitto_files(tmp_path, [], SERVICE, hash_device_secret(SERVICE_PASSWORD))
    assert len(files.passwd_path.read_text().splitlines()) == 1
    assert stat.S_IMODE(files.passwd_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("username", ["car:1", "car\n1", "vehicles/+", "#", ""])
def test_usernames_that_would_break_the_files_are_refused(tmp_path: Path, username: str) -> None:
    with pytest.raises(ValueError, match="cannot write"):
        write_mosquitto_files(tmp_path, [(username, hash_device_secret("x"))], SERVICE, "$7$1$AA==$AA==")


async def test_a_car_publishes_telemetry_and_receives_commands(mosquitto: int) -> None:
    async with service(mosquitto) as platform, car_a(mosquitto) as car:
        await platform.subscribe("vehicles/#", qos=1)
        await car.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
        await car.publish(f"vehicles/{VIN_A}/telemetry", b'{"speed": 42}', qos=1)
        message = await next_message(platform)
        assert (message.topic.value, message.payload) == (f"vehicles/{VIN_A}/telemetry", b'{"speed": 42}')
        await platform.publish(f"vehicles/{VIN_A}/commands", b"lock", qos=1)
        assert (await next_message(car)).payload == b"lock"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param(VIN_A, "wrong", id="wrong secret"),
        pytest.param(VIN_A, SECRET_B, id="another car's secret"),
        pytest.param("WBA00000000000000", SECRET_A, id="unknown VIN"),
        pytest.param(None, None, id="anonymous"),
        pytest.param(SERVICE, "wrong", id="service user, wrong password"),
    ],
)
async def test_login_refused(mosquitto: int, username: str | None, password: str | None) -> None:
    with pytest.raises(aiomqtt.MqttError, match="Not authorized"):
        async with connect(mosquitto, username, password, "someone"):
            pass


@pytest.mark.parametrize(
    "topic",
    [
        f"vehicles/{VIN_B}/telemetry",
        f"vehicles/{VIN_B}/commands",
        f"vehicles/{VIN_A}/commands",
        f"vehicles/{VIN_A}/errors",
        "fleet/broadcast",
    ],
)
async def test_a_car_publishes_only_to_its_own_uplink_topics(mosquitto: int, topic: str) -> None:
    async with service(mosquitto) as platform, car_a(mosquitto) as car:
        await platform.subscribe("vehicles/#", qos=1)
        await car.publish(topic, b"forbidden", qos=1)
        await car.publish(f"vehicles/{VIN_A}/telemetry", b"marker", qos=1)
        assert (await next_message(platform)).payload == b"marker"


@pytest.mark.parametrize(
    "topic_filter",
    [f"vehicles/{VIN_B}/commands", f"vehicles/{VIN_B}/#", "vehicles/+/commands", "vehicles/#", "#"],
)
async def test_a_car_gets_nothing_from_another_cars_topics(mosquitto: int, topic_filter: str) -> None:
    async with service(mosquitto) as platform, car_a(mosquitto) as car:
        # Mosquitto may grant the filter and then deliver nothing the ACL does not let the car read
        await car.subscribe(topic_filter, qos=1)
        await car.subscribe(f"vehicles/{VIN_A}/commands", qos=1)
        await platform.publish(f"vehicles/{VIN_B}/commands", b"for B", qos=1)
        await platform.publish(f"vehicles/{VIN_A}/commands", b"marker", qos=1)
        assert (await next_message(car)).payload == b"marker"


async def test_a_cars_will_is_published_only_where_it_may_publish(mosquitto: int) -> None:
    async with service(mosquitto) as platform:
        await platform.subscribe("vehicles/#", qos=1)
        # Mosquitto accepts any will at CONNECT and checks the ACL when it would publish it
        for topic, payload in [
            (f"vehicles/{VIN_B}/commands", b"unlock"),
            (f"vehicles/{VIN_A}/status", b"offline"),
        ]:
            car = car_a(mosquitto, will=aiomqtt.Will(topic, payload, qos=1))
            await car.__aenter__()
            await drop_connection(car)
        message = await next_message(platform)
        assert (message.topic.value, message.payload) == (f"vehicles/{VIN_A}/status", b"offline")
