"""Who is calling, and what they may see. Every API route authorizes through these dependencies.

Header `api_access_token`: a user's token for `/api/v1/...`, a platform app's token for
`/platform/api/v1/...`, a super admin user's token for `/api/v1/super_admin/...`. Only the
SHA-256 digest of a token is stored, so a database leak does not leak credentials.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import crypto
from shared.app import SessionDep
from shared.errors import Forbidden, NotFound, Unauthorized
from shared.models import AccessToken, AccountUser, PlatformApp, Role, User

USER_OWNER = "User"
PLATFORM_APP_OWNER = "PlatformApp"

api_access_token = APIKeyHeader(name="api_access_token", auto_error=False, description="API access token")


async def issue_token(session: AsyncSession, *, owner_type: str, owner_id: int) -> str:
    """A new token for the owner, replacing any previous one. Returned once; only its digest is kept."""
    token = crypto.new_token()
    statement = insert(AccessToken).values(
        owner_type=owner_type, owner_id=owner_id, token_digest=crypto.digest(token)
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[AccessToken.owner_type, AccessToken.owner_id],
            set_={"token_digest": statement.excluded.token_digest},
        )
    )
    return token


def _owned_by(model: type[User] | type[PlatformApp], owner_type: str, token: str | None) -> Select[Any]:
    """The token's owner (a user or a platform app), found by the token's digest in one query."""
    if not token:
        raise Unauthorized("missing api_access_token header")
    return (
        select(model)
        .join(AccessToken, (AccessToken.owner_id == model.id) & (AccessToken.owner_type == owner_type))
        .where(AccessToken.token_digest == crypto.digest(token))
    )


async def current_user(session: SessionDep, token: Annotated[str | None, Security(api_access_token)]) -> User:
    user = await session.scalar(_owned_by(User, USER_OWNER, token))
    if user is None:
        raise Unauthorized("invalid access token")
    return user


async def current_platform_app(
    session: SessionDep, token: Annotated[str | None, Security(api_access_token)]
) -> PlatformApp:
    app = await session.scalar(_owned_by(PlatformApp, PLATFORM_APP_OWNER, token))
    if app is None:
        raise Unauthorized("invalid access token")
    return app


CurrentUser = Annotated[User, Depends(current_user)]
CurrentPlatformApp = Annotated[PlatformApp, Depends(current_platform_app)]


async def super_admin(user: CurrentUser) -> User:
    if not user.super_admin:
        raise Unauthorized("a super admin access token is required")
    return user


SuperAdmin = Annotated[User, Depends(super_admin)]


@dataclass(frozen=True)
class Member:
    """The caller, inside the account named by the path."""

    account_id: int
    user: User
    role: Role

    @property
    def is_administrator(self) -> bool:
        return self.role == Role.ADMINISTRATOR


async def account_member(
    session: SessionDep,
    token: Annotated[str | None, Security(api_access_token)],
    account_id: Annotated[int, Path(ge=1)],
) -> Member:
    """The caller and their role in the account, in one query."""
    membership = (AccountUser.user_id == User.id) & (AccountUser.account_id == account_id)
    row = (
        await session.execute(
            _owned_by(User, USER_OWNER, token)
            .add_columns(AccountUser.role)
            .outerjoin(AccountUser, membership)
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("invalid access token")
    user, role = row
    if role is None:  # not a member: the account does not exist for this caller
        raise NotFound("account not found")
    return Member(account_id=account_id, user=user, role=Role(role))


async def account_administrator(member: Annotated[Member, Depends(account_member)]) -> Member:
    if not member.is_administrator:
        raise Forbidden("only administrators of this account can do this")
    return member


AccountMember = Annotated[Member, Depends(account_member)]
AccountAdministrator = Annotated[Member, Depends(account_administrator)]
