"""MQTT client helpers shared by the broker tests (embedded amqtt and a private Mosquitto)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiomqtt


async def next_message(client: aiomqtt.Client, within_s: float = 3.0) -> aiomqtt.Message:
    """The client's next message, or TimeoutError."""
    async with asyncio.timeout(within_s):
        return await anext(client.messages)


async def drop_connection(client: aiomqtt.Client) -> None:
    """Cut a connected client's TCP connection without a DISCONNECT, so that the broker sends its will."""
    connection = client._client.socket()
    assert isinstance(connection, socket.socket)
    connection.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(aiomqtt.MqttError):
        await next_message(client)  # ends when the client notices
    with contextlib.suppress(aiomqtt.MqttError):
        await client.__aexit__(None, None, None)
