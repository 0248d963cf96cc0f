"""HTTP routes of the accounts context: login, me, users, password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from smartev.accounts.dependencies import AdminUser, CurrentUser, accounts_service
from smartev.accounts.schemas import PasswordChange, Token, UserCreate, UserOut
from smartev.accounts.service import Accounts

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
async def change_password(body: PasswordChange, user: CurrentUser, accounts: AccountsDep) -> None:
    await accounts.change_password(user.id, body.current_password, body.new_password)
