"""What several services do to an Instagram channel: subscribe its webhooks, count token errors.

Re-authorization rule: REAUTH_ERROR_THRESHOLD token errors (Graph code 190, default 3) within
REAUTH_ERROR_WINDOW_SECONDS (default 24 h), from any service, flag the channel
`reauthorization_required`. A single error from the token refresh itself (Meta says the token
is expired or revoked) flags it at once. While flagged, nobody calls Meta with the dead token;
a successful Business Login clears the flag and the count.
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.graph import GraphClient, GraphError
from shared.logging import get_logger
from shared.models import ChannelInstagram
from shared.settings import Settings

log = get_logger("channels")

# Every field the inbound pipeline handles (instagram-platform.md §4 names).
SUBSCRIBED_FIELDS = (
    "messages",
    "message_reactions",
    "messaging_seen",
    "messaging_postbacks",
    "messaging_referral",
    "message_edit",
)


async def subscribe_webhooks(session: AsyncSession, graph: GraphClient, *, channel: ChannelInstagram) -> None:
    """Subscribe the account to our webhook fields; the outcome is recorded on the channel.

    Raises the GraphError so a job can retry; the inbox shows `subscription_error` meanwhile.
    """
    try:
        await graph.subscribe_webhooks(channel.access_token, SUBSCRIBED_FIELDS)
    except GraphError as error:
        channel.subscription_error = str(error)
        log.warning("webhook subscription failed", channel_id=channel.id, error=str(error))
        raise
    channel.webhooks_subscribed_at = datetime.now(UTC)
    channel.subscription_error = None


async def record_token_error(
    session: AsyncSession, settings: Settings, *, channel_id: int, immediate: bool = False
) -> bool:
    """Count one token error against the channel; True when the channel is (now) flagged.

    One atomic UPDATE, so concurrent workers count every error exactly once.
    """
    now = datetime.now(UTC)
    window_start = now - timedelta(seconds=settings.REAUTH_ERROR_WINDOW_SECONDS)
    in_window = ChannelInstagram.authorization_error_window_start >= window_start
    count = case((in_window, ChannelInstagram.authorization_error_count + 1), else_=1)
    flagged = (
        true()
        if immediate
        else ChannelInstagram.reauthorization_required | (count >= settings.REAUTH_ERROR_THRESHOLD)
    )
    statement = (
        update(ChannelInstagram)
        .where(ChannelInstagram.id == channel_id)
        .values(
            authorization_error_count=count,
            authorization_error_window_start=case(
                (in_window, ChannelInstagram.authorization_error_window_start), else_=now
            ),
            reauthorization_required=flagged,
        )
        .returning(ChannelInstagram.reauthorization_required)
    )
    result = (await session.execute(statement)).scalar_one_or_none()
    if result:
        log.warning("channel requires re-authorization", channel_id=channel_id)
    return bool(result)


async def clear_token_errors(session: AsyncSession, *, channel_id: int) -> None:
    await session.execute(
        update(ChannelInstagram)
        .where(ChannelInstagram.id == channel_id)
        .values(
            reauthorization_required=False,
            authorization_error_count=0,
            authorization_error_window_start=None,
            updated_at=func.now(),
        )
    )
