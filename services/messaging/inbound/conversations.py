"""Conversations: the contact's open one, else a reopened or new one, with gap-free display ids."""

from datetime import datetime
from typing import Any, cast

from sqlalchemy import DateTime, Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import Event, emit
from shared.models import ACTIVE_STATUSES, Account, ContactInbox, Conversation, ConversationStatus, Inbox


async def _active(session: AsyncSession, contact_inbox: ContactInbox) -> Conversation | None:
    return await session.scalar(
        select(Conversation)
        .where(Conversation.contact_inbox_id == contact_inbox.id, Conversation.status.in_(ACTIVE_STATUSES))
        .with_for_update()
    )


async def active_many(session: AsyncSession, contact_inbox_ids: list[int]) -> dict[int, Conversation]:
    """The open (or pending) conversations of these contacts, by contact_inbox id, locked in id
    order (two workers locking overlapping sets wait for each other instead of deadlocking)."""
    if not contact_inbox_ids:
        return {}
    rows = await session.scalars(
        select(Conversation)
        .where(Conversation.contact_inbox_id.in_(contact_inbox_ids), Conversation.status.in_(ACTIVE_STATUSES))
        .order_by(Conversation.id)
        .with_for_update()
    )
    return {conversation.contact_inbox_id: conversation for conversation in rows}


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


Activity = tuple[int, datetime, bool]  # (conversation id, message time, from the customer)
_TIME = DateTime(timezone=True)
_TABLE = cast(Table, Conversation.__table__)
_TOUCH = (  # run for many rows at once: Core executemany, one round trip
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("conversation"))
    .values(
        last_activity_at=func.greatest(_TABLE.c.last_activity_at, bindparam("at", type_=_TIME)),
        unread_count=_TABLE.c.unread_count + bindparam("unread"),
        # greatest() ignores NULL: conversations without a new customer message keep theirs
        last_incoming_at=func.greatest(_TABLE.c.last_incoming_at, bindparam("incoming_at", type_=_TIME)),
    )
)


async def touch(session: AsyncSession, activity: list[Activity]) -> None:
    """Keep activity time, unread count and the messaging window current (out-of-order safe), in
    one round trip for any number of new messages."""
    touched: dict[int, dict[str, Any]] = {}
    for conversation, at, incoming in sorted(activity):  # id order: concurrent batches never deadlock
        values = touched.setdefault(
            conversation, {"conversation": conversation, "at": at, "unread": 0, "incoming_at": None}
        )
        values["at"] = max(values["at"], at)
        if incoming:
            values["unread"] += 1
            values["incoming_at"] = max(values["incoming_at"] or at, at)
    if touched:
        connection = await session.connection()
        await connection.execute(_TOUCH, list(touched.values()))
