"""Request and response bodies of the accounts API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Role(StrEnum):
    """What a user is allowed to do: owners their own cars, operators the fleet, admins also users."""

    owner = "owner"
    operator = "operator"
    admin = "admin"


class Token(BaseModel):
    """OAuth2 bearer token response."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserOut(BaseModel):
    """A user as the API shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    role: Role


class UserCreate(BaseModel):
    """An admin creates a user."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=8, max_length=256)
    role: Role = Role.owner


class PasswordChange(BaseModel):
    """A user changes their own password."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


class ApiTokenCreate(BaseModel):
    """Name a new API token after what will use it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)


class ApiTokenOut(BaseModel):
    """An API token as listed (never its secret)."""

    id: int
    name: str
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    created_at: datetime
    last_used_at: datetime | None = Field(description="to the minute")


class ApiTokenCreated(ApiTokenOut):
    """A new API token; `token` is shown only this once."""

    token: str
