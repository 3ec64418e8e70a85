from datetime import datetime
from enum import IntEnum, StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.models.base import Base, IdMixin


class MessageType(IntEnum):
    INCOMING = 0
    OUTGOING = 1
    ACTIVITY = 2


class MessageStatus(StrEnum):
    PROGRESS = "progress"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# Replies not yet confirmed by Meta: few at any time, read by the outbound recovery sweep. A query
# must repeat this exact text (with literals, never parameters) for Postgres to use the index.
WAITING_TO_SEND = text("message_type = 1 AND status = 'progress' AND NOT private AND source_id IS NULL")


class Message(IdMixin, Base):
    __tablename__ = "messages"
    __table_args__ = (
        # A redelivered webhook can never create a second message.
        Index(
            "uq_messages_inbox_id_source_id",
            "inbox_id",
            "source_id",
            unique=True,
            postgresql_where=text("source_id IS NOT NULL"),
        ),
        Index("ix_messages_conversation_id_created_at_id", "conversation_id", "created_at", "id"),
        Index("ix_messages_waiting_to_send", "id", postgresql_where=WAITING_TO_SEND),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    message_type: Mapped[int] = mapped_column(server_default="0")
    content: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(32), server_default="text")
    content_attributes: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    status: Mapped[str] = mapped_column(String(16), server_default=MessageStatus.SENT.value)
    source_id: Mapped[str | None] = mapped_column(String(255))
    private: Mapped[bool] = mapped_column(server_default="false")
    sender_type: Mapped[str | None] = mapped_column(String(16))  # "Contact" | "User" | None (the business)
    sender_id: Mapped[int | None]
    # Meta's event time for inbound messages, so out-of-order delivery still lists in order.
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    attachments: Mapped[list["Attachment"]] = relationship(
        back_populates="message", lazy="raise", order_by="Attachment.id"
    )


class Attachment(IdMixin, Base):
    __tablename__ = "attachments"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    file_type: Mapped[str] = mapped_column(String(32))  # image, video, audio, file, share, story_mention...
    external_url: Mapped[str | None] = mapped_column(Text)  # Meta's (expiring) URL
    storage_key: Mapped[str | None] = mapped_column(Text)  # our copy, once downloaded
    extension: Mapped[str | None] = mapped_column(String(16))
    content_type: Mapped[str | None] = mapped_column(String(255))
    file_size: Mapped[int | None]
    meta: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    download_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    message: Mapped[Message] = relationship(back_populates="attachments", lazy="raise")
