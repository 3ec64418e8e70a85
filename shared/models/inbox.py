"""Inboxes and the Instagram channel behind each one."""

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.crypto import EncryptedText
from shared.models.base import Base, IdMixin, Timestamps

INSTAGRAM_CHANNEL_TYPE = "Channel::Instagram"


class ChannelInstagram(IdMixin, Timestamps, Base):
    __tablename__ = "channel_instagram"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    # The Instagram professional account id (`/me.user_id`, webhook `entry.id`): one inbox per account.
    instagram_id: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str | None] = mapped_column(String(255))
    access_token: Mapped[str] = mapped_column(EncryptedText)
    expires_at: Mapped[datetime]
    token_updated_at: Mapped[datetime]

    reauthorization_required: Mapped[bool] = mapped_column(server_default="false")
    authorization_error_count: Mapped[int] = mapped_column(server_default="0")
    authorization_error_window_start: Mapped[datetime | None]
    webhooks_subscribed_at: Mapped[datetime | None]
    subscription_error: Mapped[str | None] = mapped_column(Text)
    refresh_attempted_at: Mapped[datetime | None]
    refresh_error: Mapped[str | None] = mapped_column(Text)

    inbox: Mapped["Inbox"] = relationship(back_populates="channel", lazy="raise", uselist=False)


class Inbox(IdMixin, Timestamps, Base):
    __tablename__ = "inboxes"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    channel_type: Mapped[str] = mapped_column(String(64), server_default=INSTAGRAM_CHANNEL_TYPE)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channel_instagram.id", ondelete="CASCADE"), unique=True
    )
    avatar_url: Mapped[str | None] = mapped_column(Text)
    # True: a resolved conversation is reopened for the contact's next message (the default).
    lock_to_single_conversation: Mapped[bool] = mapped_column(server_default="true")

    channel: Mapped[ChannelInstagram] = relationship(back_populates="inbox", lazy="raise")
