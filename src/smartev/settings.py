"""All configuration in one place: `SMARTEV_*` environment variables, overridden by CLI flags."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_FILE = "secret.key"


class IngestSettings(BaseModel):
    """Tuning of the telemetry pipeline (`SMARTEV_INGEST__*`)."""

    max_payload_bytes: int = Field(256 * 1024, ge=1024)
    max_samples_per_message: int = Field(1000, ge=1)
    max_signals_per_sample: int = Field(2000, ge=1)
    queue_messages: int = Field(20_000, ge=10, description="messages held before telemetry is shed")
    batch_messages: int = Field(2000, ge=1)
    batch_wait_ms: int = Field(20, ge=0)
    twin_flush_s: float = Field(
        10.0,
        gt=0,
        description="write-behind interval of the twin; its cost is per changed signal, not per update",
    )
    stall_after_s: float = Field(30.0, gt=0, description="health turns red after this long without a commit")
    max_future_skew_s: float = Field(300.0, ge=0, description="samples further in the future are rejected")


class OcppSettings(BaseModel):
    """The OCPP central system (`SMARTEV_OCPP__*`): its own port, security profile 2, limits."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535, description="0 picks a free port")
    public_url: str = Field("", description="the ws(s)://host:port/ocpp URL handed to station owners")
    tls_cert: Path | None = Field(None, description="PEM certificate chain: enables TLS (security profile 2)")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    heartbeat_interval_s: int = Field(300, ge=10, description="interval returned in BootNotification")
    response_timeout_s: float = Field(30.0, gt=0, description="how long a station may take to answer us")
    max_frame_bytes: int = Field(256 * 1024, ge=4096, description="larger frames close the connection")
    listen_backlog: int = Field(
        4096, ge=1, description="pending TCP connections the kernel queues (capped by net.core.somaxconn)"
    )
    auth_failures_per_min: int = Field(
        10, ge=1, description="failed Basic-auth attempts per station id before 429"
    )
    auth_failures_per_address_per_min: int = Field(
        100, ge=1, description="failed Basic-auth attempts per client address before 429 (NAT: keep it high)"
    )
    store_retry_s: float = Field(
        20.0, gt=0, description="how long a transaction message waits for the database before a CALLERROR"
    )
    default_tariff: str = Field("", description="name of the tariff for stations without their own")


class WebSettings(BaseModel):
    """The owner app and operator console (`SMARTEV_WEB__*`)."""

    tile_url: str = Field(
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="map tile URL template ({z}/{x}/{y}); empty: maps without tiles (fully offline)",
    )
    tile_attribution: str = Field(
        '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
        description="attribution shown on maps, as the tile provider requires",
    )
    tile_max_zoom: int = Field(19, ge=1, le=24)


class EnergySettings(BaseModel):
    """Smart charging: how often sites are re-planned and how plans reach the stations."""

    enabled: bool = Field(True, description="plan the sites' sessions and send charging profiles")
    period_s: int = Field(300, ge=60, le=3600, description="length of one planning period")
    horizon_h: float = Field(24.0, gt=0, le=72, description="how far ahead the plan looks")
    replan_every_s: float = Field(60.0, gt=0, description="re-plan every site this often, events or not")
    settle_s: float = Field(0.5, ge=0, description="gather events this long before re-planning")
    time_budget_s: float = Field(0.5, gt=0, description="the LP's time limit; least-laxity-first after it")
    raise_by_a: int = Field(2, ge=1, description="a raise smaller than this is not worth a new profile")
    resend_after_s: float = Field(900.0, gt=0, description="re-send an unchanged profile after this long")
    verify_every_s: float = Field(600.0, gt=0, description="read a station's composite schedule this often")
    retry_refusing_s: float = Field(3600.0, gt=0, description="try a station that refused profiles again")


class Settings(BaseSettings):
    """Settings of one platform process."""

    model_config = SettingsConfigDict(env_prefix="SMARTEV_", env_nested_delimiter="__", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("smartev-data")
    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(1883, ge=0, le=65535, description="port of the embedded broker")
    mqtt_url: str = Field(
        "", description="external broker, e.g. mqtt://user:pass@127.0.0.1:1883; empty = embedded"
    )
    mqtt_public_url: str = Field("", description="the broker URL handed to cars; defaults to the one in use")
    mqtt_client_id: str = Field(
        "", description="the platform's MQTT client id; default smartev-platform-main"
    )
    mqtt_clean_session: bool = Field(
        False, description="false: the broker queues telemetry while we are down"
    )
    mqtt_shared_subscription: bool = Field(
        False, description="use $share/smartev/ subscriptions (many workers)"
    )
    secret_key: SecretStr = SecretStr("")
    token_ttl_s: int = Field(8 * 3600, ge=60)
    command_default_ttl_s: int = Field(30, ge=1, le=86_400)
    unlock_rate_per_min: int = Field(6, ge=1)
    auto_migrate: bool = Field(True, description="apply database migrations when the platform starts")
    ingest: IngestSettings = IngestSettings()
    ocpp: OcppSettings = OcppSettings()
    web: WebSettings = WebSettings()
    energy: EnergySettings = EnergySettings()

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'smartev.db'}"
        if self.environment == "production" and len(self.secret_key.get_secret_value()) < 32:
            raise ValueError(
                "SMARTEV_SECRET_KEY must be set to a random string of at least 32 characters in production"
            )
        if (self.ocpp.tls_cert is None) != (self.ocpp.tls_key is None):
            raise ValueError("SMARTEV_OCPP__TLS_CERT and SMARTEV_OCPP__TLS_KEY must be set together")
        return self

    @property
    def embedded_broker(self) -> bool:
        """True when the platform runs its own MQTT broker."""
        return not self.mqtt_url

    def resolved_secret(self) -> str:
        """The token-signing secret; in development a random one is kept in the data dir."""
        value = self.secret_key.get_secret_value()
        if value:
            return value
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / DEV_SECRET_FILE
        if path.exists():
            return path.read_text().strip()
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return value
