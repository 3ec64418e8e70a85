"""Conversations: the contact's open one, else a reopened or new one, with gap-free display ids."""

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import Event, emit
from shared.models import ACTIVE_STATUSES, Account, ContactInbox, Conversation, ConversationStatus, Inbox


async def _active(session: AsyncSession, contact_inbox: ContactInbox) -> Conversation | None:
    return await session.scalar(
        select(Conversation)
        .where(Conversation.contact_inbox_id == contact_inbox.id, Conversation.status.in_(ACTIVE_STATUSES))
        .with_for_update()
    )


async def conversation_for(
    session: AsyncSession, *, inbox: Inbox, contact_inbox: ContactInbox
) -> Conversation:
    """The open (or pending) conversation, reopening or creating one per `lock_to_single_conversation`.

    Creation holds the account's row lock, so concurrent events serialize there: the second one
    finds the first one's conversation, and display ids never gap or repeat.
    """
    conversation = await _active(session, contact_inbox)
    if conversation is not None:
        return conversation
    # NO KEY UPDATE: it does not conflict with the KEY SHARE locks that inserts referencing the account take.
    await session.execute(
        select(Account.id).where(Account.id == inbox.account_id).with_for_update(key_share=True)
    )
    conversation = await _active(session, contact_inbox)
    if conversation is not None:
        return conversation
    if inbox.lock_to_single_conversation:
        last = await session.scalar(
            select(Conversation)
            .where(Conversation.contact_inbox_id == contact_inbox.id)
            .order_by(Conversation.id.desc())
            .limit(1)
            .with_for_update()
        )
        if last is not None:
            previous, last.status = last.status, ConversationStatus.OPEN.value
            emit(
                session,
                event=Event.CONVERSATION_STATUS_CHANGED,
                account_id=inbox.account_id,
                inbox_id=inbox.id,
                conversation_id=last.id,
                changed_attributes={"status": [previous, ConversationStatus.OPEN.value]},
            )
            return last
    display_id = await session.scalar(
        update(Account)
        .where(Account.id == inbox.account_id)
        .values(last_display_id=Account.last_display_id + 1)
        .returning(Account.last_display_id)
    )
    conversation = Conversation(
        account_id=inbox.account_id,
        inbox_id=inbox.id,
        contact_id=contact_inbox.contact_id,
        contact_inbox_id=contact_inbox.id,
        display_id=display_id,
        status=ConversationStatus.OPEN.value,
    )
    session.add(conversation)
    await session.flush()
    emit(
        session,
        event=Event.CONVERSATION_CREATED,
        account_id=inbox.account_id,
        inbox_id=inbox.id,
        conversation_id=conversation.id,
    )
    return conversation


async def touch(session: AsyncSession, *, conversation: Conversation, at: datetime, incoming: bool) -> None:
    """Keep activity time, unread count and the messaging window current (out-of-order safe)."""
    values: dict[str, object] = {"last_activity_at": func.greatest(Conversation.last_activity_at, at)}
    if incoming:
        values["unread_count"] = Conversation.unread_count + 1
        values["last_incoming_at"] = func.greatest(func.coalesce(Conversation.last_incoming_at, at), at)
    await session.execute(update(Conversation).where(Conversation.id == conversation.id).values(**values))
