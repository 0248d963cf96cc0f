"""The agent's configuration: one TOML file, every key checked, every error naming the key and the file.

    vin = "WSE0000000000001X"

    [platform]
    mqtt_url = "mqtt://platform.example.com:1883"   # mqtts:// for TLS
    password_file = "mqtt-password.txt"             # or password = "…", or SMARTEV_AGENT_PASSWORD

    [spool]
    path = "spool.db"
    max_mb = 64
    max_age_h = 168
    replay_per_s = 50

    [sampling]
    heartbeat_s = 60
    batch_ms = 1000
    [[sampling.rules]]
    match = "Vehicle.Speed"
    deadband = 0.5
    min_interval_ms = 100

    [source]
    kind = "simulator"      # or "can" (see docs/agent-can.md), or "python" with factory = "module:function"

Relative paths are relative to the config file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from smartev.agent.sampling import Rule
from smartev.errors import InvalidInput
from smartev.vehicles.vin import validate_vin

PASSWORD_ENV = "SMARTEV_AGENT_PASSWORD"


class ConfigError(ValueError):
    """The config file is missing, unreadable or wrong; the message says where and what."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlatformConfig(_Strict):
    """Where the platform's broker is and how the car logs in."""

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    password: SecretStr | None = None
    password_file: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    ack_timeout_s: float = Field(15.0, gt=0)  # resend a message not acknowledged within this
    reconnect_max_s: float = Field(30.0, gt=0)  # the longest wait between connection attempts
    ca_file: Path | None = None  # for mqtts:// with a private CA

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://host:1883 or mqtts://host:8883")
        return value


class SpoolConfig(_Strict):
    """Bounds and replay of the local spool."""

    path: Path = Path("spool.db")
    max_mb: float = Field(64.0, gt=0)
    max_age_h: float = Field(7 * 24.0, gt=0)
    replay_per_s: float = Field(50.0, gt=0)  # backlog messages per second after a reconnect
    max_in_flight: int = Field(50, ge=1, le=10_000)  # backlog messages sent and not yet acknowledged
    synchronous: Literal["full", "normal"] = "full"


class RuleConfig(_Strict):
    """One sampling rule."""

    match: str = Field(min_length=1)
    on_change: bool = True
    deadband: float = Field(0.0, ge=0)
    min_interval_ms: int = Field(0, ge=0)


class SamplingConfig(_Strict):
    """What to send and how to batch it."""

    heartbeat_s: float = Field(60.0, gt=0)
    batch_ms: int = Field(1000, ge=0, le=60_000)
    batch_samples: int = Field(100, ge=1, le=1000)
    rules: list[RuleConfig] = []

    def to_rules(self) -> list[Rule]:
        """The rules, in order."""
        return [Rule(r.match, r.on_change, r.deadband, r.min_interval_ms) for r in self.rules]


class AgentConfig(_Strict):
    """The whole agent config."""

    vin: str
    platform: PlatformConfig = PlatformConfig()
    spool: SpoolConfig = SpoolConfig()
    sampling: SamplingConfig = SamplingConfig()
    source: dict[str, Any] = Field(default_factory=lambda: {"kind": "simulator"})
    base_dir: Path = Path(".")

    @field_validator("vin")
    @classmethod
    def _vin(cls, value: str) -> str:
        try:
            return validate_vin(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    @field_validator("source")
    @classmethod
    def _source(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("kind") not in ("simulator", "can", "python"):
            raise ValueError("kind must be 'simulator', 'can' or 'python'")
        return value

    def resolve(self, path: Path) -> Path:
        """A path from the config, relative to the config file."""
        return path if path.is_absolute() else self.base_dir / path

    @property
    def spool_path(self) -> Path:
        """The spool file."""
        return self.resolve(self.spool.path)

    @property
    def status_path(self) -> Path:
        """Where the running agent writes its status, next to the spool."""
        return self.spool_path.with_suffix(".status.json")

    def mqtt_password(self) -> str:
        """The car's MQTT password: from the config, the password file, or SMARTEV_AGENT_PASSWORD."""
        if self.platform.password is not None:
            return self.platform.password.get_secret_value()
        if self.platform.password_file is not None:
            path = self.resolve(self.platform.password_file)
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the MQTT password file {path}: {exc.strerror}") from None
        env = os.environ.get(PASSWORD_ENV)
        if env:
            return env
        raise ConfigError(f"no MQTT password: set platform.password_file in the config or {PASSWORD_ENV}")


def load_config(path: Path) -> AgentConfig:
    """Read and check an agent config file; raises ConfigError saying what is wrong and where."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no agent config at {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(raw, path.parent.resolve(), str(path))


def parse_config(raw: dict[str, Any], base_dir: Path, where: str = "config") -> AgentConfig:
    """Check a config already read into a dict."""
    if "base_dir" in raw:
        raise ConfigError(f"{where}: unknown key 'base_dir'")
    try:
        return AgentConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
