from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, IdMixin, Timestamps


class ConversationStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    PENDING = "pending"
    SNOOZED = "snoozed"


ACTIVE_STATUSES = (ConversationStatus.OPEN, ConversationStatus.PENDING)


class Conversation(IdMixin, Timestamps, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("account_id", "display_id"),
        # At most one open or pending conversation per contact in an inbox, whatever the races.
        Index(
            "uq_conversations_active_contact_inbox",
            "contact_inbox_id",
            unique=True,
            postgresql_where=text("status IN ('open', 'pending')"),
        ),
        Index("ix_conversations_account_id_last_activity_at", "account_id", "last_activity_at"),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    contact_inbox_id: Mapped[int] = mapped_column(ForeignKey("contact_inboxes.id", ondelete="CASCADE"))
    display_id: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), server_default=ConversationStatus.OPEN.value)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    unread_count: Mapped[int] = mapped_column(server_default="0")
    last_activity_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    # The customer's latest message: the messaging window (24 h, 7 d with HUMAN_AGENT) runs from here.
    last_incoming_at: Mapped[datetime | None]
    agent_last_seen_at: Mapped[datetime | None]
    additional_attributes: Mapped[dict] = mapped_column(JSONB, server_default="{}")
