"""A simulated charging station, pure: its connectors, the cars plugged into them, its energy meter, the limits
its charging profiles set and the ledger of every transaction it metered.

No I/O and no clock: every method that depends on time takes `now`, and energy only flows when time is moved
forward (`tick`, or any method that changes what a connector does). What the station has to tell the central
system comes out as events (`StatusChanged`, `TxEvent`) in `StationModel.events`, in the order they happened;
the OCPP adapter (`ocpp_station.py`) renders them for its protocol version, and the runtime (`chargers.py`)
decides when they travel.

Charging follows the car's curve (`battery.py`): AC at the lower of the car's on-board charger, the station's
power and any profile limit, tapering above 80 %; DC at the car's peak power tapering from 50 %, capped by the
station and the limits. Below 6 A an AC car does not charge at all (SuspendedEVSE).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from smartev.sim.battery import ac_charge_factor, dc_charge_factor

AC_VOLTAGE_V = 230.0
AC_PHASES = 3
MIN_AC_CURRENT_A = 6.0  # IEC 61851: below this an AC car pauses
AC_EFFICIENCY = 0.92  # the car's on-board charger, from the station's meter to the battery
DC_EFFICIENCY = 0.97  # the cable and the car's battery, from the station's DC meter
_STEP_S = 30.0  # integration step; power only changes with the state of charge and the limits


class ConnectorStatus(StrEnum):
    """What a connector shows (the OCPP 1.6 states; 2.0.1 folds the busy ones into Occupied)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class StopReason(StrEnum):
    """Why a transaction ended."""

    EV_DISCONNECTED = "EVDisconnected"
    LOCAL = "Local"
    REMOTE = "Remote"
    DEAUTHORIZED = "DeAuthorized"
    SOFT_RESET = "SoftReset"
    HARD_RESET = "HardReset"
    REBOOT = "Reboot"
    UNLOCK_COMMAND = "UnlockCommand"
    OTHER = "Other"


class Trigger(StrEnum):
    """What made the station report a transaction event."""

    AUTHORIZED = "Authorized"
    REMOTE_START = "RemoteStart"
    PERIODIC = "MeterValuePeriodic"
    CHARGING_STATE = "ChargingStateChanged"
    TRIGGER = "Trigger"
    EV_LEFT = "EVCommunicationLost"
    STOP_AUTHORIZED = "StopAuthorized"
    REMOTE_STOP = "RemoteStop"
    RESET = "ResetCommand"
    DEAUTHORIZED = "Deauthorized"
    UNLOCK = "UnlockCommand"


class TxEventKind(StrEnum):
    """Where in its transaction an event is."""

    STARTED = "Started"
    UPDATED = "Updated"
    ENDED = "Ended"


class TokenType(StrEnum):
    """How the driver identified themself."""

    RFID = "ISO14443"
    VIN = "Local"  # autocharge: the car's VIN, read over the charging cable
    CENTRAL = "Central"  # a remote start from the central system


class ProfilePurpose(StrEnum):
    """Which stack of charging profiles a profile belongs to."""

    STATION_MAX = "StationMax"
    TX_DEFAULT = "TxDefault"
    TX = "Tx"


# -- the station's settings, described once for both protocol versions ---------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration item: its OCPP 1.6 key, its OCPP 2.0.1 component and variable, its type and default."""

    key: str
    component: str | None
    variable: str | None
    kind: str  # "integer" | "boolean" | "string" | "MemberList"
    default: str
    readonly: bool = False
    instance: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("HeartbeatInterval", "OCPPCommCtrlr", "HeartbeatInterval", "integer", "300"),
    Setting("MeterValueSampleInterval", "SampledDataCtrlr", "TxUpdatedInterval", "integer", "60"),
    Setting(
        "MeterValuesSampledData",
        "SampledDataCtrlr",
        "TxUpdatedMeasurands",
        "MemberList",
        "Energy.Active.Import.Register,Power.Active.Import,SoC,Current.Import",
    ),
    Setting(
        "StopTxnSampledData",
        "SampledDataCtrlr",
        "TxEndedMeasurands",
        "MemberList",
        "Energy.Active.Import.Register",
    ),
    Setting("ClockAlignedDataInterval", "AlignedDataCtrlr", "Interval", "integer", "0"),
    Setting("ConnectionTimeOut", "TxCtrlr", "EVConnectionTimeOut", "integer", "120"),
    Setting("AuthorizeRemoteTxRequests", "AuthCtrlr", "AuthorizeRemoteStart", "boolean", "true"),
    Setting("LocalAuthorizeOffline", "AuthCtrlr", "LocalAuthorizeOffline", "boolean", "true"),
    Setting("LocalPreAuthorize", "AuthCtrlr", "LocalPreAuthorize", "boolean", "false"),
    Setting("AllowOfflineTxForUnknownId", "AuthCtrlr", "OfflineTxForUnknownIdEnabled", "boolean", "true"),
    Setting("AuthorizationCacheEnabled", "AuthCacheCtrlr", "Enabled", "boolean", "true"),
    Setting("LocalAuthListEnabled", "LocalAuthListCtrlr", "Enabled", "boolean", "true"),
    Setting("StopTransactionOnInvalidId", "TxCtrlr", "StopTxOnInvalidId", "boolean", "true"),
    Setting(
        "StopTransactionOnEVSideDisconnect", "TxCtrlr", "StopTxOnEVSideDisconnect", "boolean", "true", True
    ),
    Setting(
        "TransactionMessageAttempts",
        "OCPPCommCtrlr",
        "MessageAttempts",
        "integer",
        "3",
        instance="TransactionEvent",
    ),
    Setting(
        "TransactionMessageRetryInterval",
        "OCPPCommCtrlr",
        "MessageAttemptInterval",
        "integer",
        "10",
        instance="TransactionEvent",
    ),
    Setting("WebSocketPingInterval", "OCPPCommCtrlr", "WebSocketPingInterval", "integer", "20"),
    Setting("ResetRetries", "OCPPCommCtrlr", "ResetRetries", "integer", "1"),
    Setting("NumberOfConnectors", None, None, "integer", "0", True),
    Setting(
        "SupportedFeatureProfiles",
        None,
        None,
        "string",
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
        True,
    ),
    Setting("ChargeProfileMaxStackLevel", "SmartChargingCtrlr", "ProfileStackLevel", "integer", "8", True),
    Setting(
        "ChargingScheduleAllowedChargingRateUnit",
        "SmartChargingCtrlr",
        "RateUnit",
        "MemberList",
        "Current,Power",
        True,
    ),
    Setting("ChargingScheduleMaxPeriods", "SmartChargingCtrlr", "PeriodsPerSchedule", "integer", "24", True),
    Setting(
        "MaxChargingProfilesInstalled",
        "SmartChargingCtrlr",
        "Entries",
        "integer",
        "16",
        True,
        "ChargingProfiles",
    ),
    Setting("LocalAuthListMaxLength", None, None, "integer", "1000", True),
    Setting("SendLocalListMaxLength", "LocalAuthListCtrlr", "ItemsPerMessage", "integer", "100", True),
    Setting(
        "GetConfigurationMaxKeys", "DeviceDataCtrlr", "ItemsPerMessage", "integer", "50", True, "GetVariables"
    ),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}


def valid_setting(setting: Setting, value: str) -> bool:
    """True when `value` is a valid value of this setting."""
    if setting.kind == "integer":
        try:
            return int(value) >= 0
        except ValueError:
            return False
    if setting.kind == "boolean":
        return value.lower() in ("true", "false")
    return len(value) <= 500


# -- cars, samples, sessions ---------------------------------------------------------------------------------


@dataclass(slots=True)
class PluggedCar:
    """The car at a connector: how full it is, how full it wants to be, and what it can take."""

    soc: float  # percent
    capacity_kwh: float
    target_soc: float = 100.0
    vin: str | None = None
    max_ac_w: float = 11_000.0
    max_dc_w: float = 150_000.0
    leave_when_full: bool = True

    @property
    def full(self) -> bool:
        """True once the car has reached its target."""
        return self.soc >= self.target_soc - 1e-9


@dataclass(frozen=True, slots=True)
class MeterSample:
    """What the station's meter read at one moment on one connector."""

    at: datetime
    energy_wh: int  # the connector's cumulative import register
    power_w: float
    current_a: float  # per phase on AC, the DC current on DC
    voltage_v: float
    phases: int  # 0 on DC
    soc: float | None  # what the car says, when a car is plugged in


@dataclass(slots=True)
class ChargeSession:
    """One transaction: the ledger entry a test compares with what the central system stored."""

    key: str  # the station's own name for it, known from the start
    connector: int
    id_tag: str
    token_type: TokenType
    meter_start_wh: int
    started_at: datetime
    begin: MeterSample
    transaction_id: int | str | None = None  # the central system's (1.6, once answered) or ours (2.0.1)
    offline: bool = False  # started while the station could not reach the central system
    remote_start_id: int | None = None
    reservation_id: int | None = None
    meter_now_wh: int = 0
    meter_stop_wh: int | None = None
    stopped_at: datetime | None = None
    stop_reason: StopReason | None = None
    charging_s: float = 0.0
    authorized: bool = True  # False once the central system refused the id tag
    next_seq: int = 0  # the next 2.0.1 seqNo

    @property
    def active(self) -> bool:
        """True until the transaction ends."""
        return self.stopped_at is None

    @property
    def energy_wh(self) -> int:
        """Energy the station metered in this transaction, Wh (so far, while it runs)."""
        end = self.meter_stop_wh if self.meter_stop_wh is not None else self.meter_now_wh
        return end - self.meter_start_wh


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """A connector's status changed."""

    connector: int
    status: ConnectorStatus
    at: datetime


@dataclass(slots=True)
class TxEvent:
    """A transaction event to report; queued while offline and delivered in order."""

    kind: TxEventKind
    session: ChargeSession
    at: datetime
    trigger: Trigger
    sample: MeterSample
    seq_no: int
    offline: bool
    charging_state: ConnectorStatus
    attempts: int = 0  # deliveries the central system answered with an error
    message_id: str | None = None  # kept across retries, so a repeat is recognisably the same message


Event = StatusChanged | TxEvent


# -- charging profiles ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """From `start_s` into its schedule, charge at most `limit` (in the schedule's unit)."""

    start_s: int
    limit: float
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    """A charging limit over time, for one connector (0: the whole station)."""

    id: int
    connector: int
    purpose: ProfilePurpose
    stack_level: int
    unit: str  # "W" or "A"
    periods: tuple[SchedulePeriod, ...]
    kind: str = "Absolute"  # Absolute | Recurring | Relative
    recurrency: str | None = None  # Daily | Weekly
    start: datetime | None = None
    duration_s: int | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: int | str | None = None

    def origin(self, now: datetime, tx_started: datetime | None) -> datetime | None:
        """When the schedule's current run began (None: it does not apply now)."""
        if self.kind == "Relative":
            return tx_started
        if self.kind == "Recurring" and self.start is not None:
            cycle = 7 * 86_400 if self.recurrency == "Weekly" else 86_400
            elapsed = (now - self.start).total_seconds()
            return self.start + timedelta(seconds=math.floor(elapsed / cycle) * cycle)
        return self.start or tx_started or now

    def limit_at(self, now: datetime, tx_started: datetime | None) -> SchedulePeriod | None:
        """The period in force at `now`, or None when the profile does not apply."""
        if (self.valid_from and now < self.valid_from) or (self.valid_to and now >= self.valid_to):
            return None
        origin = self.origin(now, tx_started)
        if origin is None:
            return None
        elapsed = (now - origin).total_seconds()
        if elapsed < 0 or (self.duration_s is not None and elapsed >= self.duration_s):
            return None
        current = None
        for period in self.periods:
            if period.start_s <= elapsed:
                current = period
        return current

    def boundaries(self, start: datetime, end: datetime, tx_started: datetime | None) -> Iterator[datetime]:
        """Moments in [start, end) at which this profile's limit may change."""
        for moment in (self.valid_from, self.valid_to):
            if moment is not None:
                yield moment
        origin = self.origin(start, tx_started)
        if origin is None:
            return
        cycles = 1
        if self.kind == "Recurring":
            cycle = 7 * 86_400 if self.recurrency == "Weekly" else 86_400
            cycles = 2 + int((end - start).total_seconds() // cycle)
        else:
            cycle = 0
        for n in range(cycles):
            base = origin + timedelta(seconds=n * cycle)
            for period in self.periods:
                yield base + timedelta(seconds=period.start_s)
            if self.duration_s is not None:
                yield base + timedelta(seconds=self.duration_s)


def limit_to_w(limit: float, unit: str, phases: int | None, dc: bool, dc_voltage_v: float = 400.0) -> float:
    """A profile limit in watts."""
    if unit == "W":
        return limit
    if dc:
        return limit * dc_voltage_v
    return limit * (phases or AC_PHASES) * AC_VOLTAGE_V


def w_to_limit(power_w: float, unit: str, dc: bool, dc_voltage_v: float = 400.0) -> float:
    """Watts as a limit in `unit` ("W", or "A" per phase)."""
    if unit == "W":
        return power_w
    return power_w / (dc_voltage_v if dc else AC_PHASES * AC_VOLTAGE_V)


# -- the curve ------------------------------------------------------------------------------------------------


def charge_power_w(car: PluggedCar, station_max_w: float, limit_w: float, dc: bool) -> float:
    """What the station delivers to this car now, W: the car's curve capped by the station and the limits."""
    if car.full:
        return 0.0
    if dc:
        return max(min(car.max_dc_w * dc_charge_factor(car.soc), station_max_w, limit_w), 0.0)
    if limit_w < MIN_AC_CURRENT_A * AC_VOLTAGE_V:
        return 0.0  # below 6 A on one phase the car pauses
    return min(car.max_ac_w, station_max_w, limit_w) * ac_charge_factor(car.soc)


def dc_voltage_v(soc: float) -> float:
    """The voltage of a typical 400 V pack at this state of charge."""
    return 340.0 + 0.8 * min(max(soc, 0.0), 100.0)


# -- the station ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reservation:
    """A connector held for one id tag until `expires_at`."""

    id: int
    connector: int
    id_tag: str
    expires_at: datetime
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class AwaitedStart:
    """A start the central system asked for, waiting for its car (or its authorisation) until `deadline`."""

    id_tag: str
    token_type: TokenType
    deadline: datetime
    remote_start_id: int | None = None
    profile: ChargingProfile | None = None
    authorized: bool = False  # the central system accepted the id tag (or need not be asked)


@dataclass(slots=True)
class Connector:
    """One connector (in OCPP 2.0.1: one EVSE with one connector)."""

    id: int
    register_wh: float
    status: ConnectorStatus = ConnectorStatus.AVAILABLE
    car: PluggedCar | None = None
    session: ChargeSession | None = None
    finished: bool = False  # a transaction ended and its car is still plugged in
    operative: bool = True
    inoperative_when_idle: bool = False
    reservation: Reservation | None = None
    awaiting: AwaitedStart | None = None
    power_w: float = 0.0


class StationModel:
    """One station's connectors, meters, limits, reservations, local list and ledger."""

    def __init__(
        self,
        station_id: str,
        *,
        connectors: int,
        max_power_w: float,
        dc: bool,
        now: datetime,
        seed: int | str = 1,
        register_wh: float | None = None,
    ) -> None:
        """Create an idle station at `now`; each connector's register starts where the seed puts it."""
        if connectors < 1:
            raise ValueError("a station needs at least one connector")
        if max_power_w <= 0:
            raise ValueError("max_power_w must be positive")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        rng = random.Random(f"{seed}:{station_id}:registers")
        self.station_id = station_id
        self.max_power_w = float(max_power_w)
        self.dc = dc
        self.connectors: dict[int, Connector] = {
            n: Connector(n, register_wh if register_wh is not None else round(rng.uniform(50_000, 5_000_000)))
            for n in range(1, connectors + 1)
        }
        self.config: dict[str, str] = {s.key: s.default for s in SETTINGS}
        self.config["NumberOfConnectors"] = str(connectors)
        self.profiles: dict[int, ChargingProfile] = {}
        self.local_list: dict[str, str] = {}  # id tag → status
        self.local_list_version = 0
        self.auth_cache: dict[str, bool] = {}
        self.sessions: dict[str, ChargeSession] = {}  # the ledger, by session key
        self.events: deque[Event] = deque()
        self._sessions_started = 0
        self._t = now

    # -- settings ----------------------------------------------------------------------------------------------

    def setting_int(self, key: str) -> int:
        """An integer setting."""
        return int(self.config[key])

    def setting_bool(self, key: str) -> bool:
        """A boolean setting."""
        return self.config[key].lower() == "true"

    def change_setting(self, key: str, value: str) -> str:
        """Set a configuration value: "Accepted", "Rejected" (read-only or invalid) or "NotSupported"."""
        setting = SETTINGS_BY_KEY.get(key)
        if setting is None:
            return "NotSupported"
        if setting.readonly or not valid_setting(setting, value):
            return "Rejected"
        self.config[key] = value.lower() if setting.kind == "boolean" else value
        return "Accepted"

    # -- time --------------------------------------------------------------------------------------------------

    @property
    def time(self) -> datetime:
        """The station's time: the latest `now` it was given."""
        return self._t

    def tick(self, now: datetime) -> None:
        """Move time to `now`: meter the energy, expire reservations and waits, let full cars leave."""
        self._advance(now)
        for conn in self.connectors.values():
            if conn.reservation is not None and conn.reservation.expires_at <= now:
                conn.reservation = None
                self._refresh(conn)
            if conn.awaiting is not None and conn.awaiting.deadline <= now and conn.car is None:
                conn.awaiting = None
                self._refresh(conn)
            car = conn.car
            if car is not None and conn.session is not None and car.full and car.leave_when_full:
                self.unplug(conn.id, now)

    def report(self, now: datetime, trigger: Trigger = Trigger.PERIODIC) -> None:
        """Queue an Updated event with a meter sample for every running transaction."""
        self._advance(now)
        for conn in self.connectors.values():
            if conn.session is not None:
                self._tx_event(conn, TxEventKind.UPDATED, trigger)

    def report_one(self, connector: int, now: datetime, trigger: Trigger) -> None:
        """Queue an Updated event for the transaction at `connector`, if one runs."""
        self._advance(now)
        conn = self.connectors[connector]
        if conn.session is not None:
            self._tx_event(conn, TxEventKind.UPDATED, trigger)

    def sample(self, connector: int, now: datetime) -> MeterSample:
        """What the meter of `connector` reads at `now`."""
        self._advance(now)
        return self._sample(self.connectors[connector])

    # -- cars and transactions -----------------------------------------------------------------------------

    def connector(self, connector: int) -> Connector:
        """A connector by number; raises KeyError for one the station does not have."""
        return self.connectors[connector]

    def plug(self, connector: int, car: PluggedCar, now: datetime) -> None:
        """A car is plugged in; raises ValueError when the connector is taken or out of service."""
        self._advance(now)
        conn = self.connectors[connector]
        if conn.car is not None or conn.session is not None:
            raise ValueError(f"connector {connector} already has a car")
        if not conn.operative:
            raise ValueError(f"connector {connector} is out of service")
        conn.car = car
        conn.finished = False
        self._refresh(conn)

    def may_start(self, connector: int, id_tag: str) -> bool:
        """True when `id_tag` may start a transaction on `connector` now (free, operative, not held for another)."""
        conn = self.connectors[connector]
        if conn.session is not None or not conn.operative:
            return False
        held = conn.reservation
        return held is None or held.id_tag.lower() == id_tag.lower() or held.parent_id_tag is not None

    def start(
        self,
        connector: int,
        id_tag: str,
        now: datetime,
        *,
        token_type: TokenType = TokenType.RFID,
        offline: bool = False,
        transaction_id: str | None = None,
        remote_start_id: int | None = None,
        trigger: Trigger = Trigger.AUTHORIZED,
    ) -> ChargeSession:
        """Start a transaction for the car at `connector`; raises ValueError when there is none or it is busy."""
        self._advance(now)
        conn = self.connectors[connector]
        if conn.car is None:
            raise ValueError(f"no car at connector {connector}")
        if conn.session is not None:
            raise ValueError(f"connector {connector} already has a transaction")
        awaited = conn.awaiting
        conn.awaiting = None
        reservation = conn.reservation
        conn.reservation = None
        self._sessions_started += 1
        sample = self._sample(conn)
        session = ChargeSession(
            key=f"{self.station_id}/{self._sessions_started}",
            connector=connector,
            id_tag=id_tag,
            token_type=token_type,
            meter_start_wh=sample.energy_wh,
            started_at=now,
            begin=sample,
            transaction_id=transaction_id,
            offline=offline,
            remote_start_id=remote_start_id,
            reservation_id=reservation.id if reservation is not None else None,
            meter_now_wh=sample.energy_wh,
        )
        self.sessions[session.key] = session
        conn.session = session
        conn.finished = False
        conn.power_w = self._power(conn, now)
        self._tx_event(conn, TxEventKind.STARTED, trigger, sample=sample)
        self._refresh(conn)
        self._repower_others(conn)  # a station-wide limit is now shared by one more car
        if awaited is not None and awaited.profile is not None:
            self.set_profile(replace(awaited.profile, connector=connector, transaction_id=transaction_id))
        return session

    def stop(
        self, connector: int, reason: StopReason, now: datetime, trigger: Trigger = Trigger.STOP_AUTHORIZED
    ) -> ChargeSession | None:
        """End the transaction at `connector` (the car stays plugged in); None when there is none."""
        self._advance(now)
        conn = self.connectors[connector]
        session = conn.session
        if session is None:
            return None
        conn.power_w = 0.0
        sample = self._sample(conn)
        session.meter_stop_wh = session.meter_now_wh = sample.energy_wh
        session.stopped_at = now
        session.stop_reason = reason
        self._tx_event(conn, TxEventKind.ENDED, trigger, sample=sample, state=ConnectorStatus.FINISHING)
        conn.session = None
        conn.finished = conn.car is not None
        for profile in list(self.profiles.values()):
            if profile.purpose is ProfilePurpose.TX and profile.connector == connector:
                del self.profiles[profile.id]
        if conn.inoperative_when_idle:
            conn.inoperative_when_idle = False
            conn.operative = False
        self._refresh(conn)
        self._repower_others(conn)
        return session

    def unplug(self, connector: int, now: datetime) -> ChargeSession | None:
        """The car leaves, ending its transaction (EVDisconnected) if one runs; returns that transaction."""
        session = self.stop(connector, StopReason.EV_DISCONNECTED, now, Trigger.EV_LEFT)
        conn = self.connectors[connector]
        conn.car = None
        conn.finished = False
        self._refresh(conn)
        return session

    def session_by_transaction(self, transaction_id: int | str) -> ChargeSession | None:
        """The running transaction with this central-system or station id."""
        for conn in self.connectors.values():
            if conn.session is not None and str(conn.session.transaction_id) == str(transaction_id):
                return conn.session
        return None

    def free_connector(self, preferred: int | None = None) -> int | None:
        """A connector a remote start can use: `preferred` if free, else one with a car waiting, else any."""
        if preferred:
            conn = self.connectors.get(preferred)
            ok = conn is not None and conn.session is None and conn.operative and conn.awaiting is None
            return preferred if ok else None
        candidates = [
            c for c in self.connectors.values() if c.session is None and c.operative and c.awaiting is None
        ]
        with_car = [c for c in candidates if c.car is not None and not c.finished]
        unreserved = [c for c in candidates if c.reservation is None and c.car is None]
        for group in (with_car, unreserved):
            if group:
                return group[0].id
        return None

    def await_start(self, connector: int, start: AwaitedStart) -> None:
        """Hold `connector` for a start the central system asked for, until its car comes or time runs out."""
        conn = self.connectors[connector]
        conn.awaiting = start
        self._refresh(conn)

    def cancel_awaited(self, connector: int) -> None:
        """Give up a start that was waiting (its id tag was refused)."""
        conn = self.connectors[connector]
        conn.awaiting = None
        self._refresh(conn)

    # -- availability, reservations, authorisation -----------------------------------------------------------

    def change_availability(self, connector: int, operative: bool) -> str:
        """Take connectors (0: all) in or out of service: "Accepted", "Scheduled" or "Rejected"."""
        if connector != 0 and connector not in self.connectors:
            return "Rejected"
        targets = list(self.connectors.values()) if connector == 0 else [self.connectors[connector]]
        scheduled = False
        for conn in targets:
            if not operative and conn.session is not None:
                conn.inoperative_when_idle = True
                scheduled = True
                continue
            conn.operative = operative
            conn.inoperative_when_idle = False
            self._refresh(conn)
        return "Scheduled" if scheduled else "Accepted"

    def reserve(self, reservation: Reservation, now: datetime) -> str:
        """Hold a connector (0: any free one) for an id tag: "Accepted", "Occupied", "Unavailable" or "Rejected"."""
        self._advance(now)
        for conn in self.connectors.values():
            if conn.reservation is not None and conn.reservation.id == reservation.id:
                conn.reservation = None  # a reservation with a known id replaces the old one
                self._refresh(conn)
        if reservation.connector == 0:
            free = [c for c in self.connectors.values() if self._status_of(c) is ConnectorStatus.AVAILABLE]
            if not free:
                return "Occupied"
            conn = free[0]
        elif reservation.connector not in self.connectors:
            return "Rejected"
        else:
            conn = self.connectors[reservation.connector]
        if not conn.operative:
            return "Unavailable"
        if self._status_of(conn) is not ConnectorStatus.AVAILABLE:
            return "Occupied"
        conn.reservation = replace(reservation, connector=conn.id)
        self._refresh(conn)
        return "Accepted"

    def cancel_reservation(self, reservation_id: int) -> bool:
        """Release a reservation; False when there is none with this id."""
        for conn in self.connectors.values():
            if conn.reservation is not None and conn.reservation.id == reservation_id:
                conn.reservation = None
                self._refresh(conn)
                return True
        return False

    def update_local_list(self, version: int, full: bool, entries: Iterable[tuple[str, str | None]]) -> str:
        """Replace or patch the local authorisation list; entries are (id tag, status or None to remove)."""
        if full:
            self.local_list.clear()
        elif version <= self.local_list_version:
            return "VersionMismatch"
        for id_tag, status in entries:
            if status is None:
                self.local_list.pop(id_tag, None)
            else:
                self.local_list[id_tag] = status
        self.local_list_version = version
        return "Accepted"

    def remember_authorization(self, id_tag: str, accepted: bool) -> None:
        """Cache what the central system said about an id tag, for use while offline."""
        if self.setting_bool("AuthorizationCacheEnabled"):
            self.auth_cache[id_tag] = accepted

    def authorize_offline(self, id_tag: str) -> bool:
        """Whether the station lets `id_tag` charge while it cannot ask the central system."""
        if self.setting_bool("LocalAuthListEnabled") and id_tag in self.local_list:
            return self.local_list[id_tag] == "Accepted"
        if self.setting_bool("LocalAuthorizeOffline") and id_tag in self.auth_cache:
            return self.auth_cache[id_tag]
        return self.setting_bool("AllowOfflineTxForUnknownId")

    # -- charging profiles ---------------------------------------------------------------------------------

    def set_profile(self, profile: ChargingProfile) -> bool:
        """Install a profile (replacing one with its id, or with its connector, purpose and stack level)."""
        if profile.connector != 0 and profile.connector not in self.connectors:
            return False
        if profile.purpose is ProfilePurpose.STATION_MAX and profile.connector != 0:
            return False
        if profile.purpose is ProfilePurpose.TX:
            session = self.connectors[profile.connector].session if profile.connector else None
            if session is None:
                return False
            if profile.transaction_id is not None and str(profile.transaction_id) != str(
                session.transaction_id
            ):
                return False
            profile = replace(profile, transaction_id=session.transaction_id)
        for other in list(self.profiles.values()):
            same_slot = (other.connector, other.purpose, other.stack_level) == (
                profile.connector,
                profile.purpose,
                profile.stack_level,
            )
            if other.id == profile.id or same_slot:
                del self.profiles[other.id]
        self.profiles[profile.id] = profile
        self._advance(self._t)
        for conn in self.connectors.values():
            self._repower(conn)
        return True

    def clear_profiles(
        self,
        *,
        profile_id: int | None = None,
        connector: int | None = None,
        purpose: ProfilePurpose | None = None,
        stack_level: int | None = None,
    ) -> bool:
        """Remove the profiles matching every criterion given; False when none matched."""
        matched = [
            p
            for p in self.profiles.values()
            if (profile_id is None or p.id == profile_id)
            and (connector is None or p.connector == connector)
            and (purpose is None or p.purpose is purpose)
            and (stack_level is None or p.stack_level == stack_level)
        ]
        for p in matched:
            del self.profiles[p.id]
        for conn in self.connectors.values():
            self._repower(conn)
        return bool(matched)

    def limit_w(self, connector: int, now: datetime) -> float:
        """The power the profiles allow on `connector` at `now`, W (inf when none limits it)."""
        conn = self.connectors[connector]
        started = conn.session.started_at if conn.session is not None else None
        voltage = dc_voltage_v(conn.car.soc if conn.car is not None else 50.0)
        tx_limit = None
        if conn.session is not None:
            tx_limit = self._stack_limit(ProfilePurpose.TX, (connector,), now, started, voltage)
        if tx_limit is None:
            tx_limit = self._stack_limit(ProfilePurpose.TX_DEFAULT, (connector,), now, started, voltage)
        if tx_limit is None:
            tx_limit = self._stack_limit(ProfilePurpose.TX_DEFAULT, (0,), now, started, voltage)
        limit = math.inf if tx_limit is None else tx_limit
        station = self._stack_limit(ProfilePurpose.STATION_MAX, (0,), now, started, voltage)
        if station is not None:
            # The station's limit is shared evenly by the connectors that draw power.
            sharing = sum(1 for c in self.connectors.values() if c.session is not None) or 1
            limit = min(limit, station / sharing)
        return limit

    def composite_schedule(
        self, connector: int, now: datetime, duration_s: int, unit: str
    ) -> list[SchedulePeriod]:
        """The limits that will apply on `connector` (0: the station) from `now` for `duration_s`, in `unit`."""
        end = now + timedelta(seconds=duration_s)
        conns = [connector] if connector else list(self.connectors)
        started = {c: (s.started_at if (s := self.connectors[c].session) else None) for c in conns}
        moments = {now}
        for profile in self.profiles.values():
            for c in conns:
                if profile.connector in (0, c):
                    moments.update(t for t in profile.boundaries(now, end, started[c]) if now <= t < end)
        periods: list[SchedulePeriod] = []
        for moment in sorted(moments):
            power = sum(min(self.limit_w(c, moment), self.max_power_w) for c in conns)
            if not connector:
                power = min(power, self.max_power_w)
            limit = round(w_to_limit(power, unit, self.dc), 1)
            if not periods or periods[-1].limit != limit:
                periods.append(SchedulePeriod(int((moment - now).total_seconds()), limit))
        return periods

    # -- internals ---------------------------------------------------------------------------------------------

    def _stack_limit(
        self,
        purpose: ProfilePurpose,
        connectors: tuple[int, ...],
        now: datetime,
        started: datetime | None,
        voltage: float,
    ) -> float | None:
        stack = sorted(
            (p for p in self.profiles.values() if p.purpose is purpose and p.connector in connectors),
            key=lambda p: -p.stack_level,
        )
        for profile in stack:
            period = profile.limit_at(now, started)
            if period is not None:
                return limit_to_w(period.limit, profile.unit, period.phases, self.dc, voltage)
        return None

    def _power(self, conn: Connector, now: datetime) -> float:
        if conn.session is None or conn.car is None or not conn.session.authorized:
            return 0.0
        return charge_power_w(conn.car, self.max_power_w, self.limit_w(conn.id, now), self.dc)

    def _repower_others(self, conn: Connector) -> None:
        for other in self.connectors.values():
            if other is not conn and other.session is not None:
                self._repower(other)

    def _repower(self, conn: Connector) -> None:
        conn.power_w = self._power(conn, self._t)
        self._refresh(conn)

    def _advance(self, now: datetime) -> None:
        """Integrate every connector's energy from the last time to `now`."""
        remaining = (now - self._t).total_seconds()
        if remaining <= 0:
            return
        t = self._t
        charging = [c for c in self.connectors.values() if c.session is not None and c.car is not None]
        while remaining > 1e-9:
            step = min(remaining, _STEP_S)
            for conn in charging:
                car, session = conn.car, conn.session
                assert car is not None and session is not None
                power = self._power(conn, t)
                efficiency = DC_EFFICIENCY if self.dc else AC_EFFICIENCY
                wh = power * step / 3600.0
                needed = max(car.target_soc - car.soc, 0.0) * car.capacity_kwh * 10.0 / efficiency
                if wh > needed:
                    wh = needed
                if wh > 0:
                    session.charging_s += step if wh < needed else needed / power * 3600.0
                conn.register_wh += wh
                car.soc = min(car.soc + wh * efficiency / (car.capacity_kwh * 10.0), car.target_soc)
                if wh >= needed:
                    car.soc = max(car.soc, car.target_soc)
            t += timedelta(seconds=step)
            remaining -= step
        self._t = now
        for conn in charging:
            assert conn.session is not None
            conn.session.meter_now_wh = round(conn.register_wh)
            self._repower(conn)

    def _sample(self, conn: Connector) -> MeterSample:
        car = conn.car
        power = conn.power_w
        if self.dc:
            voltage = dc_voltage_v(car.soc if car is not None else 50.0)
            current, phases = power / voltage, 0
        else:
            voltage, phases = AC_VOLTAGE_V, AC_PHASES
            current = power / (AC_PHASES * AC_VOLTAGE_V)
        return MeterSample(
            at=self._t,
            energy_wh=round(conn.register_wh),
            power_w=round(power, 1),
            current_a=round(current, 2),
            voltage_v=round(voltage, 1),
            phases=phases,
            soc=round(car.soc, 1) if car is not None else None,
        )

    def _tx_event(
        self,
        conn: Connector,
        kind: TxEventKind,
        trigger: Trigger,
        *,
        sample: MeterSample | None = None,
        state: ConnectorStatus | None = None,
    ) -> None:
        session = conn.session
        assert session is not None
        event = TxEvent(
            kind=kind,
            session=session,
            at=self._t,
            trigger=trigger,
            sample=sample or self._sample(conn),
            seq_no=session.next_seq,
            offline=False,  # the runtime marks events that happen while it is offline
            charging_state=state or self._status_of(conn),
        )
        session.next_seq += 1
        self.events.append(event)

    def _status_of(self, conn: Connector) -> ConnectorStatus:
        if conn.session is not None:
            if conn.power_w > 0:
                return ConnectorStatus.CHARGING
            if conn.car is not None and conn.car.full:
                return ConnectorStatus.SUSPENDED_EV
            return ConnectorStatus.SUSPENDED_EVSE
        if not conn.operative:
            return ConnectorStatus.UNAVAILABLE
        if conn.car is not None:
            return ConnectorStatus.FINISHING if conn.finished else ConnectorStatus.PREPARING
        if conn.reservation is not None:
            return ConnectorStatus.RESERVED
        if conn.awaiting is not None:
            return ConnectorStatus.PREPARING
        return ConnectorStatus.AVAILABLE

    def _refresh(self, conn: Connector) -> None:
        status = self._status_of(conn)
        if status is conn.status:
            return
        was = conn.status
        conn.status = status
        self.events.append(StatusChanged(conn.id, status, self._t))
        busy = (ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE)
        if conn.session is not None and was in busy and status in busy:
            self._tx_event(conn, TxEventKind.UPDATED, Trigger.CHARGING_STATE)


def is_busy(status: ConnectorStatus) -> bool:
    """True for the statuses in which a cable is connected (2.0.1 reports them as Occupied)."""
    return status in (
        ConnectorStatus.PREPARING,
        ConnectorStatus.CHARGING,
        ConnectorStatus.SUSPENDED_EV,
        ConnectorStatus.SUSPENDED_EVSE,
        ConnectorStatus.FINISHING,
    )


__all__ = [
    "SETTINGS",
    "AwaitedStart",
    "ChargeSession",
    "ChargingProfile",
    "Connector",
    "ConnectorStatus",
    "Event",
    "MeterSample",
    "PluggedCar",
    "ProfilePurpose",
    "Reservation",
    "SchedulePeriod",
    "Setting",
    "StationModel",
    "StatusChanged",
    "StopReason",
    "TokenType",
    "Trigger",
    "TxEvent",
    "TxEventKind",
    "charge_power_w",
]
