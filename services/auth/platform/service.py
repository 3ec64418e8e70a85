"""Platform API: accounts, users and memberships, for the platform apps that provision them."""

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import crypto
from shared.access import USER_OWNER, issue_token
from shared.errors import Conflict, NotFound
from shared.models import Account, AccountUser, Role, User


async def create_account(session: AsyncSession, *, name: str) -> Account:
    account = Account(name=name)
    session.add(account)
    await session.flush()
    await session.refresh(account)
    return account


async def create_user(session: AsyncSession, *, name: str, email: str, password: str) -> tuple[User, str]:
    """The new user and their access token (shown once)."""
    email = email.lower()
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email} already exists")
    user = User(name=name, email=email, password_digest=crypto.hash_password(password))
    session.add(user)
    await session.flush()
    return user, await issue_token(session, owner_type=USER_OWNER, owner_id=user.id)


async def add_account_user(
    session: AsyncSession, *, account_id: int, user_id: int, role: Role
) -> AccountUser:
    """Add the user to the account, or change their role there."""
    if await session.get(Account, account_id) is None:
        raise NotFound("account not found")
    if await session.get(User, user_id) is None:
        raise NotFound("user not found")
    values = insert(AccountUser).values(account_id=account_id, user_id=user_id, role=role.value)
    statement = values.on_conflict_do_update(
        index_elements=[AccountUser.account_id, AccountUser.user_id], set_={"role": role.value}
    ).returning(AccountUser)
    return (await session.scalars(statement)).one()
