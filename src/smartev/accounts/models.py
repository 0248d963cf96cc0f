"""Tables of the accounts context."""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from smartev.db.base import Base


class User(Base):
    """A person who logs in: an owner, an operator of the platform, or an admin."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    token_epoch: Mapped[int] = mapped_column(Integer, default=0)  # bump to revoke all tokens
    created_ms: Mapped[int] = mapped_column(BigInteger)
