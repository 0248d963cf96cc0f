"""Users: creation, login and lookups. Other contexts call this module, never the users table."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from smartev.accounts.models import ApiToken, User
from smartev.accounts.schemas import Role
from smartev.accounts.security import TokenSigner, hash_password, verify_password
from smartev.errors import Conflict, InvalidInput, NotFound, Unauthorized

logger = logging.getLogger(__name__)


def normalise_email(email: str) -> str:
    """Emails compare case-insensitively."""
    return email.strip().lower()


class Accounts:
    """The accounts service."""

    def __init__(self, sessions: async_sessionmaker[Any], signer: TokenSigner) -> None:
        self._sessions = sessions
        self.signer = signer

    async def create_user(self, email: str, password: str, role: Role | str) -> User:
        """A new user; Conflict if the email is taken."""
        email = normalise_email(email)
        if "@" not in email:
            raise InvalidInput(f"{email!r} is not an email address", ("body", "email"))
        if len(password) < 8:
            raise InvalidInput("the password must have at least 8 characters", ("body", "password"))
        user = User(
            email=email,
            password_hash=hash_password(password),
            role=Role(role).value,
            token_epoch=0,
            created_ms=int(time.time() * 1000),
        )
        async with self._sessions() as s:
            s.add(user)
            try:
                await s.commit()
            except IntegrityError:
                raise Conflict(f"a user with email {email} exists already") from None
        return user

    async def ensure_user(self, email: str, password: str, role: Role | str) -> User:
        """The user with this email, created if missing (demo and bootstrap)."""
        existing = await self.by_email(email)
        return existing if existing is not None else await self.create_user(email, password, role)

    async def by_email(self, email: str) -> User | None:
        """The user with this email, or None."""
        async with self._sessions() as s:
            result = await s.execute(select(User).where(User.email == normalise_email(email)))
            user: User | None = result.scalar_one_or_none()
            return user

    async def by_id(self, user_id: int) -> User | None:
        """The user with this id, or None."""
        async with self._sessions() as s:
            user: User | None = await s.get(User, user_id)
            return user

    async def emails(self, user_ids: set[int]) -> dict[int, str]:
        """Emails of the given users (to show a car's owner)."""
        if not user_ids:
            return {}
        async with self._sessions() as s:
            rows = await s.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
            return {uid: email for uid, email in rows.all()}

    async def login(self, email: str, password: str) -> tuple[str, int]:
        """A bearer token and its lifetime for valid credentials; Unauthorized otherwise."""
        user = await self.by_email(email)
        if not verify_password(password, user.password_hash if user else None) or user is None:
            raise Unauthorized("wrong email or password")
        return self.issue_token(user), self.signer._ttl_s

    def issue_token(self, user: User) -> str:
        """A bearer token for `user`."""
        return self.signer.issue(user.id, user.role, user.token_epoch, int(time.time()))

    async def authenticate_token(self, token: str) -> User:
        """The user behind a bearer token; Unauthorized if invalid, expired or revoked."""
        if token.startswith(API_TOKEN_PREFIX):
            return await self._authenticate_api_token(token)
        claims = self.signer.check(token)
        user = await self.by_id(claims.user_id)
        if user is None or user.token_epoch != claims.epoch:
            raise Unauthorized("the access token is no longer valid; log in again")
        return user

    async def change_password(self, user_id: int, current: str, new: str) -> None:
        """Set a new password and revoke every token issued before, API tokens included.

        A password is changed when it may be known to someone else; that someone may have made tokens.
        """
        async with self._sessions() as s:
            user = await s.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            if not verify_password(current, user.password_hash):
                # not 401: the caller is logged in; the form's field is what is wrong
                raise InvalidInput("the current password is wrong", ("body", "current_password"))
            user.password_hash = hash_password(new)
            user.token_epoch += 1
            await s.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
            await s.commit()

    # -- API tokens: long-lived, named, revocable; for the owner's own scripts ----------------------------

    async def create_api_token(self, user_id: int, name: str) -> tuple[ApiToken, str]:
        """A new token (its secret is returned only here); Conflict past MAX_API_TOKENS."""
        name = name.strip()
        if not name:
            raise InvalidInput("give the token a name, e.g. the script that will use it", ("body", "name"))
        secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._sessions() as s:
            count = len((await s.execute(select(ApiToken.id).where(ApiToken.user_id == user_id))).all())
            if count >= MAX_API_TOKENS:
                raise Conflict(f"you have {count} API tokens already; revoke one you no longer use")
            token = ApiToken(
                user_id=user_id,
                name=name,
                prefix=secret[: len(API_TOKEN_PREFIX) + 4],
                token_hash=_token_hash(secret),
                created_ms=int(time.time() * 1000),
            )
            s.add(token)
            await s.commit()
        return token, secret

    async def api_tokens(self, user_id: int) -> list[ApiToken]:
        """The user's tokens, oldest first."""
        async with self._sessions() as s:
            rows = await s.execute(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id))
            return list(rows.scalars())

    async def revoke_api_token(self, user_id: int, token_id: int) -> None:
        """Delete one of the user's tokens; NotFound if it is not theirs."""
        async with self._sessions() as s:
            token = await s.get(ApiToken, token_id)
            if token is None or token.user_id != user_id:
                raise NotFound(f"you have no API token {token_id}")
            await s.delete(token)
            await s.commit()

    async def _authenticate_api_token(self, secret: str) -> User:
        now_ms = int(time.time() * 1000)
        async with self._sessions() as s:
            token = (
                await s.execute(select(ApiToken).where(ApiToken.token_hash == _token_hash(secret)))
            ).scalar_one_or_none()
            if token is None:
                raise Unauthorized("the API token is not valid (revoked, or mistyped)")
            user: User | None = await s.get(User, token.user_id)
            if user is None:
                raise Unauthorized("the API token is not valid (revoked, or mistyped)")
            if token.last_used_ms is None or now_ms - token.last_used_ms > LAST_USED_RESOLUTION_MS:
                token.last_used_ms = now_ms  # written at most once a minute, not per request
                try:
                    await s.commit()
                except DBAPIError as exc:  # a busy database must not fail the request it authenticates
                    logger.warning(
                        "could not note when API token %s was used: %s", token.id, type(exc).__name__
                    )
            return user


API_TOKEN_PREFIX = "sev_"
MAX_API_TOKENS = 20
LAST_USED_RESOLUTION_MS = 60_000


def _token_hash(secret: str) -> str:
    # a 256-bit random secret needs no slow hash: SHA-256 cannot be brute-forced back to it
    return hashlib.sha256(secret.encode()).hexdigest()
