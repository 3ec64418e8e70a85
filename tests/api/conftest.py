"""Conversations with messages, built directly in the database (independent of the inbound worker)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Account, Contact, ContactInbox, Conversation, Inbox, Message
from tests.conftest import Factory


@dataclass
class Thread:
    account: Account
    inbox: Inbox
    contact: Contact
    conversation: Conversation
    messages: list[Message]


class Threads:
    def __init__(self, db: AsyncSession, factory: Factory) -> None:
        self.db, self.factory = db, factory

    async def create(
        self,
        account: Account,
        inbox: Inbox,
        *,
        igsid: str = "1190000000000001",
        name: str = "Jane Doe",
        username: str = "jane.doe",
        messages: int = 3,
        last_incoming_ago: timedelta = timedelta(hours=1),
        status: str = "open",
    ) -> Thread:
        contact = Contact(account_id=account.id, name=name, additional_attributes={"username": username})
        self.db.add(contact)
        await self.db.flush()
        contact_inbox = ContactInbox(contact_id=contact.id, inbox_id=inbox.id, source_id=igsid)
        self.db.add(contact_inbox)
        await self.db.flush()
        account.last_display_id += 1
        now = datetime.now(UTC)
        conversation = Conversation(
            account_id=account.id,
            inbox_id=inbox.id,
            contact_id=contact.id,
            contact_inbox_id=contact_inbox.id,
            display_id=account.last_display_id,
            status=status,
            unread_count=messages,
            last_activity_at=now - last_incoming_ago,
            last_incoming_at=now - last_incoming_ago,
        )
        self.db.add(conversation)
        await self.db.flush()
        rows = [
            Message(
                account_id=account.id,
                inbox_id=inbox.id,
                conversation_id=conversation.id,
                message_type=0,
                content=f"message {i}",
                source_id=f"{igsid}-m{i}",
                sender_type="Contact",
                sender_id=contact.id,
                created_at=now - last_incoming_ago - timedelta(minutes=messages - i),
            )
            for i in range(messages)
        ]
        self.db.add_all(rows)
        await self.db.commit()
        return Thread(account, inbox, contact, conversation, rows)


@pytest.fixture
def threads(db: AsyncSession, factory: Factory) -> Threads:
    return Threads(db, factory)
