"""Every table, importable from one place (Alembic reads `Base.metadata` from here)."""

from shared.models.account import (
    AccessToken,
    Account,
    AccountUser,
    InstallationConfig,
    PlatformApp,
    Role,
    User,
)
from shared.models.base import Base, metadata
from shared.models.contact import Contact, ContactInbox
from shared.models.conversation import ACTIVE_STATUSES, Conversation, ConversationStatus
from shared.models.dead_letter import DeadLetter
from shared.models.inbox import INSTAGRAM_CHANNEL_TYPE, ChannelInstagram, Inbox
from shared.models.message import Attachment, Message, MessageStatus, MessageType
from shared.models.webhook import Webhook, WebhookDelivery, WebhookEvent

__all__ = [
    "ACTIVE_STATUSES",
    "INSTAGRAM_CHANNEL_TYPE",
    "AccessToken",
    "Account",
    "AccountUser",
    "Attachment",
    "Base",
    "ChannelInstagram",
    "Contact",
    "ContactInbox",
    "Conversation",
    "ConversationStatus",
    "DeadLetter",
    "Inbox",
    "InstallationConfig",
    "Message",
    "MessageStatus",
    "MessageType",
    "PlatformApp",
    "Role",
    "User",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
    "metadata",
]
