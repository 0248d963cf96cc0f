"""Configuration for running smartev against an external Mosquitto 2.0 instead of the embedded broker.

The files hold the rules of `smartev.transport.broker` as far as Mosquitto's password and ACL files can:
each car publishes only its own uplink topics and reads only its own downlink topics. Two rules have no
Mosquitto equivalent: a car may retain on any topic it may publish to, and a car may connect with any client
id, so it could take over another car's session (`use_username_as_clientid true` prevents that, at the price
of a single connection for the platform's service user; the conf file carries it commented out).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from smartev.transport.broker import VEHICLE_PUBLISH_TOPICS, VEHICLE_SUBSCRIBE_TOPICS


@dataclass(frozen=True)
class MosquittoFiles:
    """Where `write_mosquitto_files` put the password file, the ACL file and the conf snippet."""

    passwd_path: Path
    acl_path: Path
    conf_path: Path


def write_mosquitto_files(
    directory: Path,
    vehicles: Iterable[tuple[str, str]],
    service_username: str,
    service_password_hash: str,
    *,
    port: int = 1883,
    host: str | None = None,
) -> MosquittoFiles:
    """Write `passwd`, `acl` and `smartev.conf` for Mosquitto into `directory`.

    Args:
        vehicles: `(vin, stored secret hash)` pairs; the hashes are already in Mosquitto's `$7$` format.
        service_password_hash: the platform's password, hashed with `hash_device_secret`.
        port, host: the listener; no host means every interface.

    The password file is readable by its owner only: run Mosquitto as that user, or hand the file to
    Mosquitto's user. Each file is replaced atomically, so a running Mosquitto reloads whole files on SIGHUP.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    users = [(service_username, service_password_hash), *vehicles]
    for username, password_hash in users:
        if not username or any(char in username for char in ":\n\r+#/") or "\n" in password_hash:
            raise ValueError(f"cannot write the MQTT user {username!r} to a Mosquitto password file")
    files = MosquittoFiles(directory / "passwd", directory / "acl", directory / "smartev.conf")
    _write(
        files.passwd_path,
        "".join(f"{username}:{password_hash}\n" for username, password_hash in users),
        0o600,
    )
    _write(files.acl_path, _acl(service_username), 0o644)
    _write(files.conf_path, _conf(files, port, host), 0o644)
    return files


def _acl(service_username: str) -> str:
    # `pattern` lines apply to every user with %u replaced by the username, which for a car is its VIN
    lines = ["# Written by smartev: each car only on its own topics, the platform on all of them."]
    lines += [f"pattern write vehicles/%u/{suffix}" for suffix in VEHICLE_PUBLISH_TOPICS]
    lines += [f"pattern read vehicles/%u/{suffix}" for suffix in VEHICLE_SUBSCRIBE_TOPICS]
    lines += ["", f"user {service_username}", "topic readwrite vehicles/#"]
    return "\n".join(lines) + "\n"


def _conf(files: MosquittoFiles, port: int, host: str | None) -> str:
    return "\n".join(
        [
            "# Written by smartev: run `mosquitto -c` on it, or copy it into your mosquitto.conf.",
            "per_listener_settings false",
            f"listener {port} {host}" if host else f"listener {port}",
            "allow_anonymous false",
            f"password_file {files.passwd_path}",
            f"acl_file {files.acl_path}",
            "# Binds each car's session to its VIN, but allows the platform a single connection:",
            "# use_username_as_clientid true",
            "# The default of 1000 drops QoS 1 messages to the platform whenever it falls behind:",
            "# max_queued_messages 100000",
            "",
        ]
    )


def _write(path: Path, text: str, mode: int) -> None:
    """Replace `path` atomically; the temporary file is private from the start (mkstemp makes it 0600)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
