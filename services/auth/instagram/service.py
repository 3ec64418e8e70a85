"""Instagram Business Login: the consent URL, and turning a callback into a connected inbox.

Meta's three calls (code → short-lived token → long-lived token → `/me`) happen before any
write; the channel and its inbox are then created, or re-authorized, in one transaction keyed
by the unique `channel_instagram.instagram_id`, so concurrent callbacks end with one inbox.
"""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import channels, crypto
from shared.errors import Unprocessable
from shared.graph import GraphClient, GraphError, GraphTokenError, GraphTransientError
from shared.models import INSTAGRAM_CHANNEL_TYPE, ChannelInstagram, Inbox
from shared.settings import Settings

SCOPES = ("instagram_business_basic", "instagram_business_manage_messages")
STATE_SALT = "instagram-business-login"
STATE_MAX_AGE_SECONDS = 600


class ConnectFailure(Exception):
    """Why a connection attempt failed, as shown on the dashboard's error page."""

    def __init__(self, error_type: str, code: int, message: str, *, account_id: int | None = None) -> None:
        super().__init__(message)
        self.error_type, self.code, self.message, self.account_id = error_type, code, message, account_id


@dataclass(frozen=True)
class ConnectedAccount:
    instagram_id: str  # `/me.user_id`: the professional account id webhooks carry as `entry.id`
    username: str
    name: str | None
    profile_picture_url: str | None
    access_token: str
    expires_at: datetime
    issued_at: datetime


def redirect_uri(settings: Settings) -> str:
    return f"{settings.FRONTEND_URL.rstrip('/')}/instagram/callback"


async def authorization_url(graph: GraphClient, settings: Settings, *, account_id: int, user_id: int) -> str:
    app = await graph.app()
    if not app.configured:
        raise Unprocessable(
            "the Instagram app is not configured: set INSTAGRAM_APP_ID and INSTAGRAM_APP_SECRET "
            "(environment, `inboxctl config set`, or the super admin app config)"
        )
    state = crypto.sign(
        {"account_id": account_id, "user_id": user_id, "nonce": secrets.token_hex(8)}, salt=STATE_SALT
    )
    return await graph.authorize_url(redirect_uri=redirect_uri(settings), scopes=SCOPES, state=state)


def account_of_state(state: str | None) -> int:
    """The account named by a valid, unexpired state; ConnectFailure otherwise."""
    if not state:
        raise ConnectFailure(
            "invalid_state", 400, "The sign-in link is missing its state. Start again from the dashboard."
        )
    try:
        value: Any = crypto.unsign(state, salt=STATE_SALT, max_age_seconds=STATE_MAX_AGE_SECONDS)
    except crypto.SignatureInvalid as invalid:
        if invalid.reason == "expired":
            raise ConnectFailure(
                "expired_state", 400, "The sign-in link expired. Start again from the dashboard."
            ) from None
        raise ConnectFailure(
            "invalid_state", 400, "The sign-in link is not valid. Start again from the dashboard."
        ) from None
    return int(value["account_id"])


def _meta_failure(error: GraphError, account_id: int, step: str) -> ConnectFailure:
    if isinstance(error, GraphTransientError):
        kind = "meta_unavailable"
    elif isinstance(error, GraphTokenError):
        kind = "invalid_token"
    else:
        kind = "oauth_error"
    return ConnectFailure(
        kind, error.code or error.http_status or 502, f"{step}: {error.message}", account_id=account_id
    )


async def fetch_account(
    graph: GraphClient, settings: Settings, *, code: str, account_id: int
) -> ConnectedAccount:
    """Meta's side of the login: exchange the code, make the token long-lived, read `/me`."""
    code = code.removesuffix("#_")  # Meta appends `#_`; it is not part of the code
    try:
        short = await graph.exchange_code(code=code, redirect_uri=redirect_uri(settings))
    except GraphError as error:
        raise _meta_failure(error, account_id, "Instagram refused the authorization code") from error
    if "instagram_business_manage_messages" not in short.permissions:
        raise ConnectFailure(
            "missing_permission",
            403,
            "Messaging permission was not granted: allow 'instagram_business_manage_messages' and try again.",
            account_id=account_id,
        )
    try:
        issued_at = datetime.now(UTC)
        long = await graph.long_lived_token(short.access_token)
    except GraphError as error:
        raise _meta_failure(error, account_id, "Instagram refused the long-lived token exchange") from error
    try:
        me = await graph.me(long.access_token)
    except GraphError as error:
        raise _meta_failure(error, account_id, "Instagram did not return the account") from error
    if not me.get("user_id"):
        raise ConnectFailure(
            "oauth_error", 502, "Instagram did not return the account's user_id", account_id=account_id
        )
    return ConnectedAccount(
        instagram_id=str(me["user_id"]),
        username=str(me.get("username") or me["user_id"]),
        name=me.get("name") or None,
        profile_picture_url=me.get("profile_picture_url"),
        access_token=long.access_token,
        expires_at=long.expires_at(issued_at),
        issued_at=issued_at,
    )


async def connect(
    session: AsyncSession, *, account_id: int, connected: ConnectedAccount
) -> tuple[Inbox, bool]:
    """Create the channel and inbox, or re-authorize the existing one. (inbox, created)."""
    token_fields = {
        "access_token": connected.access_token,
        "expires_at": connected.expires_at,
        "token_updated_at": connected.issued_at,
        "username": connected.username,
    }
    channel_id = await session.scalar(
        insert(ChannelInstagram)
        .values(account_id=account_id, instagram_id=connected.instagram_id, **token_fields)
        .on_conflict_do_nothing(index_elements=[ChannelInstagram.instagram_id])
        .returning(ChannelInstagram.id)
    )
    if channel_id is not None:
        inbox = Inbox(
            account_id=account_id,
            name=connected.username,
            channel_type=INSTAGRAM_CHANNEL_TYPE,
            channel_id=channel_id,
            avatar_url=connected.profile_picture_url,
        )
        session.add(inbox)
        await session.flush()
        return inbox, True
    channel = await session.scalar(
        select(ChannelInstagram)
        .where(ChannelInstagram.instagram_id == connected.instagram_id)
        .with_for_update()
    )
    assert channel is not None
    if channel.account_id != account_id:
        raise ConnectFailure(
            "account_in_use",
            409,
            f"@{connected.username} is already connected to another account. Disconnect it there first.",
            account_id=account_id,
        )
    channel.access_token = connected.access_token
    channel.expires_at = connected.expires_at
    channel.token_updated_at = connected.issued_at
    channel.username = connected.username
    channel.refresh_error = None
    await channels.clear_token_errors(session, channel_id=channel.id)
    inbox = (await session.scalars(select(Inbox).where(Inbox.channel_id == channel.id))).one()
    if connected.profile_picture_url:
        inbox.avatar_url = connected.profile_picture_url
    return inbox, False


def success_location(settings: Settings, *, account_id: int, inbox_id: int, created: bool) -> str:
    base = f"{settings.FRONTEND_URL.rstrip('/')}/app/accounts/{account_id}/settings/inboxes"
    return f"{base}/new/{inbox_id}/agents" if created else f"{base}/{inbox_id}"


def failure_location(settings: Settings, failure: ConnectFailure) -> str:
    account = f"/accounts/{failure.account_id}" if failure.account_id else ""
    query = urlencode(
        {"error_type": failure.error_type, "code": failure.code, "error_message": failure.message}
    )
    return f"{settings.FRONTEND_URL.rstrip('/')}/app{account}/settings/inboxes/new/instagram?{query}"
