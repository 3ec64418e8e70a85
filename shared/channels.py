"""What several services do to an Instagram channel: subscribe its webhooks, count token errors.

Re-authorization rule: REAUTH_ERROR_THRESHOLD token errors (Graph code 190, default 3) within
REAUTH_ERROR_WINDOW_SECONDS (default 24 h), from any service (profile lookups, sends,
subscriptions), flag the channel `reauthorization_required` and emit
`inbox.reauthorization_required`. The token refresh flags at once when Meta says the token is
expired or revoked, and so does a token found expired. While flagged, nobody calls Meta with
the dead token; a successful Business Login clears the flag and the count.
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import Event, emit
from shared.graph import GraphClient, GraphError
from shared.logging import get_logger
from shared.models import ChannelInstagram, Inbox
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

    The channel row is locked, so concurrent workers count every error once, and the
    `inbox.reauthorization_required` event is emitted exactly once, when the flag turns on.
    """
    channel = await session.get(ChannelInstagram, channel_id, with_for_update=True, populate_existing=True)
    if channel is None:
        return False
    now = datetime.now(UTC)
    started = channel.authorization_error_window_start
    in_window = started is not None and now - started <= timedelta(
        seconds=settings.REAUTH_ERROR_WINDOW_SECONDS
    )
    channel.authorization_error_count = channel.authorization_error_count + 1 if in_window else 1
    channel.authorization_error_window_start = started if in_window else now
    if channel.reauthorization_required:
        return True
    if immediate or channel.authorization_error_count >= settings.REAUTH_ERROR_THRESHOLD:
        channel.reauthorization_required = True
        inbox_id = await session.scalar(select(Inbox.id).where(Inbox.channel_id == channel.id))
        emit(
            session,
            event=Event.INBOX_REAUTHORIZATION_REQUIRED,
            account_id=channel.account_id,
            inbox_id=inbox_id,
        )
        log.warning(
            "channel requires re-authorization",
            channel_id=channel.id,
            errors=channel.authorization_error_count,
        )
        return True
    return False


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
