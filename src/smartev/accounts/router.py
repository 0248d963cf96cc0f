"""HTTP routes of the accounts context: login, me, users, password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from fastapi.security import OAuth2PasswordRequestForm

from smartev.accounts.dependencies import AdminUser, CurrentUser, LoggedInUser, accounts_service
from smartev.accounts.models import ApiToken
from smartev.accounts.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenOut,
    PasswordChange,
    Token,
    UserCreate,
    UserOut,
)
from smartev.accounts.service import Accounts
from smartev.clock import ms_to_datetime

router = APIRouter(prefix="/api/v1", tags=["accounts"])
AccountsDep = Annotated[Accounts, Depends(accounts_service)]


@router.post("/auth/token", response_model=Token, summary="Log in (OAuth2 password form; username = email)")
async def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], accounts: AccountsDep) -> Token:
    token, ttl = await accounts.login(form.username, form.password)
    return Token(access_token=token, expires_in=ttl)


@router.get("/users/me", response_model=UserOut, summary="Who am I")
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.post(
    "/users", response_model=UserOut, status_code=status.HTTP_201_CREATED, summary="Create a user (admin)"
)
async def create_user(body: UserCreate, _: AdminUser, accounts: AccountsDep) -> UserOut:
    return UserOut.model_validate(await accounts.create_user(body.email, body.password, body.role))


@router.post("/users/me/password", status_code=status.HTTP_204_NO_CONTENT, summary="Change my password")
async def change_password(body: PasswordChange, user: LoggedInUser, accounts: AccountsDep) -> None:
    await accounts.change_password(user.id, body.current_password, body.new_password)


def _token_out(t: ApiToken) -> ApiTokenOut:
    return ApiTokenOut(
        id=t.id,
        name=t.name,
        prefix=t.prefix,
        created_at=ms_to_datetime(t.created_ms),
        last_used_at=ms_to_datetime(t.last_used_ms) if t.last_used_ms else None,
    )


@router.get(
    "/users/me/api-tokens", response_model=list[ApiTokenOut], summary="My API tokens (for my scripts)"
)
async def list_api_tokens(user: LoggedInUser, accounts: AccountsDep) -> list[ApiTokenOut]:
    return [_token_out(t) for t in await accounts.api_tokens(user.id)]


@router.post(
    "/users/me/api-tokens",
    response_model=ApiTokenCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Make an API token: send it as 'Authorization: Bearer <token>'; shown only once",
)
async def create_api_token(
    body: ApiTokenCreate, user: LoggedInUser, accounts: AccountsDep
) -> ApiTokenCreated:
    token, secret = await accounts.create_api_token(user.id, body.name)
    return ApiTokenCreated(**_token_out(token).model_dump(), token=secret)


@router.delete(
    "/users/me/api-tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke one of my API tokens",
)
async def revoke_api_token(
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], user: CurrentUser, accounts: AccountsDep
) -> None:
    await accounts.revoke_api_token(user.id, token_id)
