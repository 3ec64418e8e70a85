from datetime import datetime

from sqlalchemy import String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, IdMixin


class DeadLetter(IdMixin, Base):
    """A job that failed for good, parked for operators to inspect and replay (`inboxctl dead-letters`)."""

    __tablename__ = "dead_letters"

    job_name: Mapped[str] = mapped_column(String(64))
    job_key: Mapped[str] = mapped_column(String(255))
    kwargs: Mapped[dict] = mapped_column(JSONB)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    replayed_at: Mapped[datetime | None]
