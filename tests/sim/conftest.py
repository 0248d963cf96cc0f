"""Fixtures of the simulator tests: a real broker of each kind."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .brokers import AmqttBroker, BrokerUnderTest, MosquittoBroker


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("mosquitto is required in CI")
        pytest.skip("mosquitto is not installed")
    return path


@pytest.fixture(params=["mosquitto", "amqtt"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BrokerUnderTest]:
    """A running broker of each kind."""
    b: BrokerUnderTest = (
        MosquittoBroker(tmp_path, mosquitto_binary()) if request.param == "mosquitto" else AmqttBroker()
    )
    await b.start()
    try:
        yield b
    finally:
        await b.stop()
