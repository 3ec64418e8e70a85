"""Conversations: the contact's open one, else a reopened or new one, with gap-free display ids."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.inbound.contacts import Customer
from shared.db import among, table
from shared.events import Event, emit
from shared.models import ACTIVE_STATUSES, Account, Conversation, ConversationStatus, Inbox

_TABLE = table(Conversation)
# what reopening a conversation needs of it
_STATUS_ROW = (Conversation.id, Conversation.status, Conversation.account_id, Conversation.inbox_id)


async def active_many(session: AsyncSession, contact_inbox_ids: list[int]) -> dict[int, int]:
    """The ids of these contacts' open (or pending) conversations, by contact_inbox id. Not locked:
    `touch` locks them just before the commit (and reopens one resolved in between)."""
    if not contact_inbox_ids:
        return {}
    rows = await session.execute(
        select(Conversation.contact_inbox_id, Conversation.id).where(
            among(Conversation.contact_inbox_id, contact_inbox_ids), Conversation.status.in_(ACTIVE_STATUSES)
        )
    )
    return {contact_inbox_id: id_ for contact_inbox_id, id_ in rows}


async def open_many(session: AsyncSession, missing: Sequence[tuple[Inbox, Customer]]) -> dict[int, int]:
    """A conversation for each contact without an active one (its id, by contact_inbox id): the
    last one reopened where the inbox is locked to a single conversation and there is one, else a
    new one.

    This holds the accounts' row locks, so concurrent events serialize there: the later one finds
    the earlier one's conversation, and display ids never gap or repeat.
    """
    if not missing:
        return {}
    # NO KEY UPDATE: it does not conflict with the KEY SHARE locks that inserts referencing the account take.
    account_ids = sorted({inbox.account_id for inbox, _ in missing})
    await session.execute(
        select(Account.id)
        .where(Account.id.in_(account_ids))
        .order_by(Account.id)
        .with_for_update(key_share=True)
    )
    # made meanwhile by another event
    opened = await active_many(session, [customer.contact_inbox_id for _, customer in missing])
    single = [
        customer.contact_inbox_id
        for inbox, customer in missing
        if inbox.lock_to_single_conversation and customer.contact_inbox_id not in opened
    ]
    if single:
        last = (
            select(func.max(Conversation.id))
            .where(among(Conversation.contact_inbox_id, single))
            .group_by(Conversation.contact_inbox_id)
        )
        reopened = list(
            await session.execute(
                select(*_STATUS_ROW, Conversation.contact_inbox_id)
                .where(Conversation.id.in_(last))
                .order_by(Conversation.id)
                .with_for_update()
            )
        )
        await _reopen(session, reopened)
        opened |= {row.contact_inbox_id: row.id for row in reopened}
    new = list(
        {
            customer.contact_inbox_id: (inbox, customer)
            for inbox, customer in missing
            if customer.contact_inbox_id not in opened
        }.values()
    )
    rows: list[dict[str, Any]] = []
    for account_id in account_ids:
        inboxes = [(inbox, customer) for inbox, customer in new if inbox.account_id == account_id]
        if not inboxes:
            continue
        last_display_id = await session.scalar(
            update(Account)
            .where(Account.id == account_id)
            .values(last_display_id=Account.last_display_id + len(inboxes))
            .returning(Account.last_display_id)
        )
        assert last_display_id is not None
        for display_id, (inbox, customer) in enumerate(inboxes, start=last_display_id - len(inboxes) + 1):
            rows.append(
                {
                    "account_id": account_id,
                    "inbox_id": inbox.id,
                    "contact_id": customer.contact_id,
                    "contact_inbox_id": customer.contact_inbox_id,
                    "display_id": display_id,
                    "status": ConversationStatus.OPEN.value,
                }
            )
    if rows:
        created = await session.execute(
            insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True), rows
        )
        for values, (conversation_id,) in zip(rows, created, strict=True):
            opened[values["contact_inbox_id"]] = conversation_id
    for inbox, customer in new:
        emit(
            session,
            event=Event.CONVERSATION_CREATED,
            account_id=inbox.account_id,
            inbox_id=inbox.id,
            conversation_id=opened[customer.contact_inbox_id],
        )
    return opened


Activity = tuple[int, datetime, bool]  # (conversation id, message time, from the customer)
_TIME = DateTime(timezone=True)
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
    two round trips for any number of new messages.

    The conversations are locked here, in id order, so concurrent batches hold them only until
    their commit and never deadlock. One that an agent resolved since it was looked up is reopened
    by the customer's new message, as a reply to a resolved conversation reopens it."""
    touched: dict[int, dict[str, Any]] = {}
    for conversation, at, incoming in activity:
        values = touched.setdefault(
            conversation, {"conversation": conversation, "at": at, "unread": 0, "incoming_at": None}
        )
        values["at"] = max(values["at"], at)
        if incoming:
            values["unread"] += 1
            values["incoming_at"] = max(values["incoming_at"] or at, at)
    if not touched:
        return
    locked = await session.execute(
        select(*_STATUS_ROW)
        .where(among(Conversation.id, touched))
        .order_by(Conversation.id)
        .with_for_update(key_share=True)
    )
    connection = await session.connection()
    await connection.execute(_TOUCH, [touched[id_] for id_ in sorted(touched)])
    await _reopen(
        session, [row for row in locked if row.status not in ACTIVE_STATUSES and touched[row.id]["unread"]]
    )


async def _reopen(session: AsyncSession, rows: Sequence[Any]) -> None:
    """Open these conversations again (rows of `_STATUS_ROW`, locked) in one UPDATE, and announce each."""
    if not rows:
        return
    await session.execute(
        update(_TABLE)
        .where(among(_TABLE.c.id, [row.id for row in rows]))
        .values(status=ConversationStatus.OPEN.value)
    )
    for row in rows:
        emit(
            session,
            event=Event.CONVERSATION_STATUS_CHANGED,
            account_id=row.account_id,
            inbox_id=row.inbox_id,
            conversation_id=row.id,
            changed_attributes={"status": [row.status, ConversationStatus.OPEN.value]},
        )
