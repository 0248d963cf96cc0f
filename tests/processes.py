"""`smartev serve` in a subprocess that can be killed with SIGKILL and started again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx

from conftest import eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`smartev serve` in a subprocess that can be killed and started again."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.http = f"http://127.0.0.1:{env['SMARTEV_HTTP_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartev", "serve"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with httpx.AsyncClient() as c:

            async def healthy() -> bool:
                try:
                    return (await c.get(f"{self.http}/api/v1/health", timeout=1)).json()["status"] == "ok"
                except (httpx.HTTPError, ValueError, KeyError):
                    return False

            await eventually(healthy, timeout=30, interval=0.2)

    def kill(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def create_user(env: dict[str, str], email: str, password: str, role: str = "owner") -> None:
    """`smartev users create` against the server's database."""
    r = subprocess.run(
        [sys.executable, "-m", "smartev", "users", "create", email, "--password", password, "--role", role],
        env={**os.environ, **env},
        capture_output=True,
    )
    assert r.returncode == 0, r.stderr
