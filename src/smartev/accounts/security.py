"""Password hashing (argon2id) and signed access tokens (JWT, HS256)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from smartev.errors import Unauthorized

_hasher = PasswordHasher()
# Verifying against this when the user is unknown keeps response times alike for known and unknown emails.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches the stored hash; never raises."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid access token says about its bearer."""

    user_id: int
    role: str
    epoch: int


class TokenSigner:
    """Issues and checks access tokens with one secret."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self._ttl_s = ttl_s

    def issue(self, user_id: int, role: str, epoch: int, now_s: int) -> str:
        """A signed bearer token for the user."""
        claims = {"sub": str(user_id), "role": role, "ep": epoch, "iat": now_s, "exp": now_s + self._ttl_s}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def check(self, token: str) -> TokenClaims:
        """The claims of a valid, unexpired token; raises Unauthorized otherwise."""
        try:
            data = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
            return TokenClaims(user_id=int(data["sub"]), role=str(data["role"]), epoch=int(data.get("ep", 0)))
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            raise Unauthorized("the access token is invalid or expired; log in again") from None
