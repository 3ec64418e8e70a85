from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, IdMixin, Timestamps


class Contact(IdMixin, Timestamps, Base):
    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_account_id_name", "account_id", "name"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255), server_default="")
    avatar_url: Mapped[str | None] = mapped_column(Text)
    additional_attributes: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    # When the Instagram profile was last fetched; None while enrichment is still owed.
    profile_fetched_at: Mapped[datetime | None]


class ContactInbox(IdMixin, Timestamps, Base):
    __tablename__ = "contact_inboxes"
    __table_args__ = (UniqueConstraint("inbox_id", "source_id"),)

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    # The customer's Instagram-scoped id (IGSID).
    source_id: Mapped[str] = mapped_column(String(64))
