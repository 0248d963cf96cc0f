"""Device secrets and their Mosquitto-compatible hashes.

That a real Mosquitto accepts our hashes is shown in test_mosquitto.py, which runs one on a password file
written from them; here mosquitto_passwd's own hashes are checked with our verifier.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartev.transport.credentials import hash_device_secret, new_device_secret, verify_device_secret

MOSQUITTO_HASH = re.compile(r"^\$7\$(\d+)\$([A-Za-z0-9+/]{16})\$([A-Za-z0-9+/]{86}==)$")


def tool(name: str) -> str:
    """The path of a Mosquitto tool; fails in CI when it is missing, skips elsewhere."""
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    if path is None:
        message = f"{name} is not installed (apt-get install mosquitto); it is needed to check compatibility"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_new_secrets_are_long_url_safe_and_unique() -> None:
    secrets = {new_device_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(secret) >= 32 and re.fullmatch(r"[A-Za-z0-9_-]+", secret) for secret in secrets)


@pytest.mark.parametrize("iterations", [1, 101, 1000])
def test_hash_has_mosquitto_passwd_format(iterations: int) -> None:
    match = MOSQUITTO_HASH.match(hash_device_secret("secret", iterations))
    assert match is not None
    assert int(match.group(1)) == iterations


def test_hash_is_salted() -> None:
    assert hash_device_secret("secret") != hash_device_secret("secret")


def test_hash_refuses_zero_iterations() -> None:
    with pytest.raises(ValueError, match="iterations"):
        hash_device_secret("secret", 0)


def test_verify_accepts_the_secret_and_nothing_else() -> None:
    secret = new_device_secret()
    stored = hash_device_secret(secret)
    assert verify_device_secret(secret, stored)
    assert not verify_device_secret(secret + "x", stored)
    assert not verify_device_secret(secret[:-1], stored)
    assert not verify_device_secret("", stored)


def _swap_part(stored: str, index: int, value: str) -> str:
    parts = stored.split("$")
    parts[index] = value
    return "$".join(parts)


GOOD = hash_device_secret("secret")


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "secret",
        "$7$",
        "$7$101$",
        GOOD.replace("$7$", "$6$", 1),
        GOOD + "$",
        _swap_part(GOOD, 2, "0"),
        _swap_part(GOOD, 2, "-5"),
        _swap_part(GOOD, 2, "²"),
        _swap_part(GOOD, 2, "abc"),
        _swap_part(GOOD, 3, ""),
        _swap_part(GOOD, 3, "not base64!"),
        _swap_part(GOOD, 4, GOOD.split("$")[4][:-4]),
        _swap_part(GOOD, 4, "AAAA"),
    ],
)
def test_verify_says_no_to_malformed_hashes(stored: str) -> None:
    assert verify_device_secret("secret", stored) is False


@given(secret=st.text(), stored=st.text())
def test_verify_never_raises(secret: str, stored: str) -> None:
    assert verify_device_secret(secret, stored) in (True, False)


@given(secret=st.text(max_size=50))
def test_any_text_secret_round_trips(secret: str) -> None:
    # surrogates cannot be encoded as UTF-8, so no client could send them
    if any("\ud800" <= char <= "\udfff" for char in secret):
        return
    assert verify_device_secret(secret, hash_device_secret(secret, iterations=1))


def test_verifies_hashes_made_by_mosquitto_passwd(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    secret = new_device_secret()
    subprocess.run([tool("mosquitto_passwd"), "-c", "-b", str(passwd), "car", secret], check=True)
    username, stored = passwd.read_text().strip().split(":", 1)
    assert username == "car"
    assert MOSQUITTO_HASH.match(stored), stored
    assert verify_device_secret(secret, stored)
    assert not verify_device_secret(secret + "x", stored)
