"""Fixtures of the simulator tests: a real broker of each kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brokers import AmqttBroker, BrokerUnderTest, MosquittoBroker, mosquitto_binary


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
