"""API objects (shared/schemas/api.py) built from rows, loading related rows in batches.

Used by the API routes and by the account-webhook renderer, so an event carries exactly the
object the API shows.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import storage
from shared.models import (
    Attachment,
    ChannelInstagram,
    Contact,
    ContactInbox,
    Conversation,
    Inbox,
    Message,
    User,
)
from shared.schemas.api import (
    AttachmentRead,
    ContactInboxRead,
    ContactRead,
    ConversationMeta,
    ConversationRead,
    InboxRead,
    InboxRef,
    MessageRead,
    SenderRead,
)
from shared.settings import Settings

WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)


def unix(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def can_reply(last_incoming_at: datetime | None, *, human_agent: bool, now: datetime | None = None) -> bool:
    """Instagram allows answers within 24 h of the customer's last message (7 days with HUMAN_AGENT)."""
    if last_incoming_at is None:
        return False
    age = (now or datetime.now(UTC)) - last_incoming_at
    return age <= (HUMAN_AGENT_WINDOW if human_agent else WINDOW)


def inbox_view(inbox: Inbox, channel: ChannelInstagram) -> InboxRead:
    return InboxRead(
        id=inbox.id,
        account_id=inbox.account_id,
        name=inbox.name,
        channel_type=inbox.channel_type,
        channel_id=channel.id,
        instagram_id=channel.instagram_id,
        username=channel.username,
        avatar_url=inbox.avatar_url,
        lock_to_single_conversation=inbox.lock_to_single_conversation,
        reauthorization_required=channel.reauthorization_required,
        webhooks_subscribed=channel.webhooks_subscribed_at is not None,
        subscription_error=channel.subscription_error,
        token_expires_at=unix(channel.expires_at),
    )


async def contact_views(session: AsyncSession, contacts: Sequence[Contact]) -> list[ContactRead]:
    ids = [c.id for c in contacts]
    rows = await session.execute(
        select(ContactInbox.contact_id, ContactInbox.source_id, Inbox.id, Inbox.name, Inbox.channel_type)
        .join(Inbox, Inbox.id == ContactInbox.inbox_id)
        .where(ContactInbox.contact_id.in_(ids))
    )
    linked: dict[int, list[ContactInboxRead]] = {}
    for contact_id, source_id, inbox_id, name, channel_type in rows:
        ref = InboxRef(id=inbox_id, name=name, channel_type=channel_type)
        linked.setdefault(contact_id, []).append(ContactInboxRead(source_id=source_id, inbox=ref))
    activity = dict(
        (
            await session.execute(
                select(Conversation.contact_id, func.max(Conversation.last_activity_at))
                .where(Conversation.contact_id.in_(ids))
                .group_by(Conversation.contact_id)
            )
        ).all()
    )
    return [
        ContactRead(
            id=c.id,
            name=c.name,
            thumbnail=c.avatar_url or "",
            additional_attributes=c.additional_attributes,
            contact_inboxes=linked.get(c.id, []),
            created_at=int(c.created_at.timestamp()),
            last_activity_at=unix(activity.get(c.id)),
        )
        for c in contacts
    ]


def attachment_view(settings: Settings, attachment: Attachment) -> AttachmentRead:
    url = storage.data_url(settings, attachment)
    return AttachmentRead(
        id=attachment.id,
        message_id=attachment.message_id,
        account_id=attachment.account_id,
        file_type=attachment.file_type,
        data_url=url,
        thumb_url=url if attachment.file_type in ("image", "story_mention", "ig_story") else None,
        extension=attachment.extension,
        file_size=attachment.file_size,
    )


async def message_views(
    session: AsyncSession,
    settings: Settings,
    messages: Sequence[Message],
    *,
    conversation: Conversation | None = None,
) -> list[MessageRead]:
    """`conversation`: the one all the messages belong to, when the caller has it."""
    ids = [m.id for m in messages]
    files: dict[int, list[AttachmentRead]] = {}
    for attachment in await session.scalars(
        select(Attachment).where(Attachment.message_id.in_(ids)).order_by(Attachment.id)
    ):
        files.setdefault(attachment.message_id, []).append(attachment_view(settings, attachment))
    if conversation is not None:
        display = {conversation.id: conversation.display_id}
    else:
        display = dict(
            (
                await session.execute(
                    select(Conversation.id, Conversation.display_id).where(
                        Conversation.id.in_({m.conversation_id for m in messages})
                    )
                )
            ).all()
        )
    contact_ids = {m.sender_id for m in messages if m.sender_type == "Contact" and m.sender_id}
    user_ids = {m.sender_id for m in messages if m.sender_type == "User" and m.sender_id}
    senders: dict[tuple[str, int], SenderRead] = {}
    for contact in await session.scalars(select(Contact).where(Contact.id.in_(contact_ids))):
        senders[("Contact", contact.id)] = SenderRead(
            id=contact.id, name=contact.name, thumbnail=contact.avatar_url or "", type="contact"
        )
    for user in await session.scalars(select(User).where(User.id.in_(user_ids))):
        senders[("User", user.id)] = SenderRead(id=user.id, name=user.name, type="user")
    return [
        MessageRead(
            id=m.id,
            content=m.content,
            account_id=m.account_id,
            inbox_id=m.inbox_id,
            conversation_id=display.get(m.conversation_id, 0),
            message_type=m.message_type,
            content_type=m.content_type,
            content_attributes=m.content_attributes,
            status=m.status,
            source_id=m.source_id,
            private=m.private,
            created_at=int(m.created_at.timestamp()),
            sender_type=m.sender_type,
            sender_id=m.sender_id,
            sender=senders.get((m.sender_type or "", m.sender_id or 0)),
            attachments=files.get(m.id, []),
        )
        for m in messages
    ]


async def conversation_views(
    session: AsyncSession, settings: Settings, conversations: Sequence[Conversation], *, human_agent: bool
) -> list[ConversationRead]:
    if not conversations:
        return []
    contacts = {
        c.id: c
        for c in await session.scalars(
            select(Contact).where(Contact.id.in_({c.contact_id for c in conversations}))
        )
    }
    contact_reads = {read.id: read for read in await contact_views(session, list(contacts.values()))}
    latest_ids = (
        select(func.max(Message.id))
        .where(Message.conversation_id.in_([c.id for c in conversations]))
        .group_by(Message.conversation_id)
    )
    latest = list(await session.scalars(select(Message).where(Message.id.in_(latest_ids))))
    latest_reads = {read.id: read for read in await message_views(session, settings, latest)}
    last_by_conversation = {m.conversation_id: latest_reads[m.id] for m in latest}
    now = datetime.now(UTC)
    return [
        ConversationRead(
            id=c.display_id,
            account_id=c.account_id,
            inbox_id=c.inbox_id,
            status=c.status,
            can_reply=can_reply(c.last_incoming_at, human_agent=human_agent, now=now),
            unread_count=c.unread_count,
            last_activity_at=int(c.last_activity_at.timestamp()),
            timestamp=int(c.last_activity_at.timestamp()),
            created_at=int(c.created_at.timestamp()),
            agent_last_seen_at=unix(c.agent_last_seen_at),
            additional_attributes=c.additional_attributes,
            meta=ConversationMeta(sender=contact_reads[c.contact_id]),
            messages=[last_by_conversation[c.id]] if c.id in last_by_conversation else [],
        )
        for c in conversations
    ]
