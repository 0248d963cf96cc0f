"""FastAPI dependencies: the current user from the bearer token, role checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from smartev.accounts.models import User
from smartev.accounts.schemas import Role
from smartev.accounts.service import API_TOKEN_PREFIX, Accounts
from smartev.errors import Forbidden, Unauthorized

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def accounts_service(request: Request) -> Accounts:
    """The accounts service of the running platform."""
    accounts: Accounts = request.app.state.platform.accounts
    return accounts


async def current_user(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> User:
    """The authenticated user; 401 without a valid bearer token."""
    if not token:
        raise Unauthorized("log in first: send 'Authorization: Bearer <token>' from POST /api/v1/auth/token")
    user = await accounts_service(request).authenticate_token(token)
    request.state.via_api_token = token.startswith(API_TOKEN_PREFIX)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_login(request: Request, user: CurrentUser) -> User:
    """A user who logged in with their password: an API token cannot make tokens or change the password
    (a leaked token must not be able to outlive its revocation)."""
    if getattr(request.state, "via_api_token", False):
        raise Forbidden("an API token cannot do this; log in with your password")
    return user


LoggedInUser = Annotated[User, Depends(require_login)]


def is_staff(user: User) -> bool:
    """Operators and admins see the whole fleet."""
    return user.role in (Role.operator, Role.admin)


def require_staff(user: CurrentUser) -> User:
    """Operators and admins only."""
    if not is_staff(user):
        raise Forbidden("only operators and admins may do this")
    return user


def require_admin(user: CurrentUser) -> User:
    """Admins only."""
    if user.role != Role.admin:
        raise Forbidden("only admins may do this")
    return user


StaffUser = Annotated[User, Depends(require_staff)]
AdminUser = Annotated[User, Depends(require_admin)]
