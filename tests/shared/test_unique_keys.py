from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import ChannelInstagram, Contact, ContactInbox, Conversation, Message
from tests.conftest import Factory


async def _expect_duplicate(db: AsyncSession, row: object) -> None:
    db.add(row)
    with pytest.raises(IntegrityError):
        await db.commit()
    await db.rollback()


async def _conversation(db: AsyncSession, factory: Factory) -> tuple[Conversation, ContactInbox]:
    account = await factory.account()
    inbox = await factory.inbox(account)
    contact = Contact(account_id=account.id, name="Jane")
    db.add(contact)
    await db.flush()
    contact_inbox = ContactInbox(contact_id=contact.id, inbox_id=inbox.id, source_id="1190000000000001")
    db.add(contact_inbox)
    await db.flush()
    conversation = Conversation(
        account_id=account.id,
        inbox_id=inbox.id,
        contact_id=contact.id,
        contact_inbox_id=contact_inbox.id,
        display_id=1,
    )
    db.add(conversation)
    await db.commit()
    return conversation, contact_inbox


async def test_one_channel_per_instagram_account(db: AsyncSession, factory: Factory) -> None:
    first = await factory.account()
    await factory.inbox(first, instagram_id="17841400000000009")
    other = await factory.account("Other")
    now = datetime.now(UTC)
    await _expect_duplicate(
        db,
        ChannelInstagram(
            account_id=other.id,
            instagram_id="17841400000000009",
            access_token="x",
            expires_at=now + timedelta(days=1),
            token_updated_at=now,
        ),
    )


async def test_contact_inbox_source_id_unique_per_inbox(db: AsyncSession, factory: Factory) -> None:
    _, contact_inbox = await _conversation(db, factory)
    await _expect_duplicate(
        db,
        ContactInbox(
            contact_id=contact_inbox.contact_id, inbox_id=contact_inbox.inbox_id, source_id="1190000000000001"
        ),
    )


async def test_display_id_unique_per_account(db: AsyncSession, factory: Factory) -> None:
    conversation, contact_inbox = await _conversation(db, factory)
    conversation.status = "resolved"
    await db.commit()
    await _expect_duplicate(
        db,
        Conversation(
            account_id=conversation.account_id,
            inbox_id=conversation.inbox_id,
            contact_id=conversation.contact_id,
            contact_inbox_id=contact_inbox.id,
            display_id=conversation.display_id,
        ),
    )


async def test_one_active_conversation_per_contact_inbox(db: AsyncSession, factory: Factory) -> None:
    conversation, contact_inbox = await _conversation(db, factory)
    await _expect_duplicate(
        db,
        Conversation(
            account_id=conversation.account_id,
            inbox_id=conversation.inbox_id,
            contact_id=conversation.contact_id,
            contact_inbox_id=contact_inbox.id,
            display_id=2,
            status="pending",
        ),
    )


async def test_message_source_id_unique_per_inbox_but_many_without(
    db: AsyncSession, factory: Factory
) -> None:
    conversation, _ = await _conversation(db, factory)
    common = {
        "account_id": conversation.account_id,
        "inbox_id": conversation.inbox_id,
        "conversation_id": conversation.id,
    }
    db.add_all(
        [Message(**common, content="a"), Message(**common, content="b"), Message(**common, source_id="mid-1")]
    )
    await db.commit()
    await _expect_duplicate(db, Message(**common, source_id="mid-1", content="again"))
