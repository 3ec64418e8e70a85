from fastapi import APIRouter, status

from services.auth.platform import service as platform
from services.auth.platform.schemas import (
    AccountCreate,
    AccountRead,
    AccountUserCreate,
    AccountUserRead,
    UserCreate,
    UserRead,
)
from shared.access import CurrentPlatformApp
from shared.app import SessionDep
from shared.models import Role

router = APIRouter(prefix="/platform/api/v1", tags=["platform"])


@router.post("/accounts", status_code=status.HTTP_200_OK)
async def create_account(body: AccountCreate, _: CurrentPlatformApp, session: SessionDep) -> AccountRead:
    account = await platform.create_account(session, name=body.name)
    await session.commit()
    return AccountRead.model_validate(account, from_attributes=True)


@router.post("/users")
async def create_user(body: UserCreate, _: CurrentPlatformApp, session: SessionDep) -> UserRead:
    user, token = await platform.create_user(
        session, name=body.name, email=body.email, password=body.password
    )
    await session.commit()
    return UserRead(id=user.id, name=user.name, email=user.email, access_token=token)


@router.post("/accounts/{account_id}/account_users")
async def add_account_user(
    account_id: int, body: AccountUserCreate, _: CurrentPlatformApp, session: SessionDep
) -> AccountUserRead:
    membership = await platform.add_account_user(
        session, account_id=account_id, user_id=body.user_id, role=body.role
    )
    await session.commit()
    return AccountUserRead(
        account_id=membership.account_id, user_id=membership.user_id, role=Role(membership.role)
    )
