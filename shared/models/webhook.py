"""Account webhooks (events for API consumers), their outbox and delivery log."""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.crypto import EncryptedText
from shared.models.base import Base, IdMixin, Timestamps


class Webhook(IdMixin, Timestamps, Base):
    __tablename__ = "webhooks"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    subscriptions: Mapped[list] = mapped_column(JSONB, server_default="[]")
    secret: Mapped[str] = mapped_column(EncryptedText)
    enabled: Mapped[bool] = mapped_column(server_default="true")
    failing_since: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class WebhookEvent(IdMixin, Base):
    """Outbox: written in the transaction that made the change, delivered after it commits."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_undispatched", "id", postgresql_where=text("dispatched_at IS NULL")),
    )

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    inbox_id: Mapped[int | None]
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    dispatched_at: Mapped[datetime | None]


class WebhookDelivery(IdMixin, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),)

    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    status_code: Mapped[int | None]
    latency_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    delivered: Mapped[bool] = mapped_column(server_default="false")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
