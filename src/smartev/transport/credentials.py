"""Device secrets, hashed in Mosquitto 2.0's password-file format.

One stored hash serves both brokers: the embedded one verifies it here, and an external Mosquitto reads it
from the password file that `smartev.transport.mosquitto` writes. The format is mosquitto_passwd's default
(`-H sha512-pbkdf2`):

    $7$<iterations>$<base64 salt, 12 bytes>$<base64 PBKDF2-HMAC-SHA512, 64 bytes>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_PREFIX = "$7$"
_SALT_BYTES = 12
_HASH_BYTES = 64
# mosquitto_passwd's default. Stretching guards weak human passwords; a device secret carries 256 random
# bits, so more iterations would only make every CONNECT dearer.
DEFAULT_ITERATIONS = 101


def new_device_secret() -> str:
    """A fresh random secret for one car: 43 URL-safe characters (256 bits)."""
    return secrets.token_urlsafe(32)


def hash_device_secret(secret: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    """Hash `secret` for storage, as mosquitto_passwd would."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, _HASH_BYTES)
    return f"{_PREFIX}{iterations}${_b64(salt)}${_b64(digest)}"


def verify_device_secret(secret: str, stored: str) -> bool:
    """True when `secret` matches the `stored` hash; False for any malformed hash."""
    try:
        if not stored.startswith(_PREFIX):
            return False
        iterations_text, salt_text, digest_text = stored[len(_PREFIX) :].split("$")
        if not iterations_text.isdigit():
            return False
        iterations = int(iterations_text)
        salt = base64.b64decode(salt_text, validate=True)
        expected = base64.b64decode(digest_text, validate=True)
        if iterations < 1 or not salt or len(expected) != _HASH_BYTES:
            return False
        actual = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, _HASH_BYTES)
    # ValueError covers bad base64 and unencodable text; the others, values that are not even strings
    except (ValueError, TypeError, AttributeError, OverflowError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
