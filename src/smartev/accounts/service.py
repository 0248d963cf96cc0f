"""Users: creation, login and lookups. Other contexts call this module, never the users table."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from smartev.accounts.models import User
from smartev.accounts.schemas import Role
from smartev.accounts.security import TokenSigner, hash_password, verify_password
from smartev.errors import Conflict, InvalidInput, NotFound, Unauthorized


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
        claims = self.signer.check(token)
        user = await self.by_id(claims.user_id)
        if user is None or user.token_epoch != claims.epoch:
            raise Unauthorized("the access token is no longer valid; log in again")
        return user

    async def change_password(self, user_id: int, current: str, new: str) -> None:
        """Set a new password and revoke every token issued before."""
        async with self._sessions() as s:
            user = await s.get(User, user_id)
            if user is None:
                raise NotFound("no such user")
            if not verify_password(current, user.password_hash):
                raise Unauthorized("the current password is wrong")
            user.password_hash = hash_password(new)
            user.token_epoch += 1
            await s.commit()
