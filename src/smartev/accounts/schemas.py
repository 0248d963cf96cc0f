"""Request and response bodies of the accounts API."""

from __future__ import annotations

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
