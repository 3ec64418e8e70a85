"""Accounts, people, their roles and the tokens that authenticate API callers."""

from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, IdMixin, Timestamps


class Role(StrEnum):
    AGENT = "agent"
    ADMINISTRATOR = "administrator"


class Account(IdMixin, Timestamps, Base):
    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(255))
    # Last conversation display id handed out; bumped under the row lock, so ids never gap or repeat.
    last_display_id: Mapped[int] = mapped_column(server_default="0")


class User(IdMixin, Timestamps, Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_digest: Mapped[str | None] = mapped_column(Text)
    super_admin: Mapped[bool] = mapped_column(server_default="false")


class AccountUser(IdMixin, Timestamps, Base):
    __tablename__ = "account_users"
    __table_args__ = (UniqueConstraint("account_id", "user_id"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32), server_default=Role.AGENT.value)


class PlatformApp(IdMixin, Timestamps, Base):
    __tablename__ = "platform_apps"

    name: Mapped[str] = mapped_column(String(255))


class AccessToken(IdMixin, Timestamps, Base):
    """An API token; only its SHA-256 digest is stored."""

    __tablename__ = "access_tokens"
    __table_args__ = (UniqueConstraint("owner_type", "owner_id"),)

    owner_type: Mapped[str] = mapped_column(String(32))  # "User" | "PlatformApp"
    owner_id: Mapped[int]
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)


class InstallationConfig(IdMixin, Timestamps, Base):
    """Installation-wide settings saved by a super admin; they win over the environment."""

    __tablename__ = "installation_configs"

    name: Mapped[str] = mapped_column(String(255), unique=True)
    # {"value": ...}; secrets hold ciphertext and set "encrypted": true.
    value: Mapped[dict] = mapped_column(JSONB, server_default="{}")
