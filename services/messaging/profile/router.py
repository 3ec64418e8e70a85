from fastapi import APIRouter
from sqlalchemy import select

from shared.access import CurrentUser
from shared.app import SessionDep
from shared.models import Account, AccountUser
from shared.schemas.api import AccountRef, ProfileRead

router = APIRouter(prefix="/api/v1", tags=["profile"])


@router.get("/profile")
async def get_profile(user: CurrentUser, session: SessionDep) -> ProfileRead:
    """The calling user, with the accounts they belong to and their role in each."""
    rows = await session.execute(
        select(Account.id, Account.name, AccountUser.role)
        .join(AccountUser, AccountUser.account_id == Account.id)
        .where(AccountUser.user_id == user.id)
        .order_by(Account.id)
    )
    return ProfileRead(
        id=user.id,
        name=user.name,
        email=user.email,
        type="super_admin" if user.super_admin else "user",
        accounts=[AccountRef(id=id_, name=name, role=role) for id_, name, role in rows],
    )
