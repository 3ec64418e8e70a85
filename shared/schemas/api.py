"""The API objects, with Chatwoot's Application API field names (see DESIGN.md, "Field names").

Timestamps are Unix seconds. These shapes are also the payloads of account webhook events.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AccountRef(Schema):
    id: int
    name: str
    role: str


class ProfileRead(Schema):
    id: int
    name: str
    email: str
    type: Literal["user", "super_admin"] = "user"
    accounts: list[AccountRef]


class InboxRead(Schema):
    id: int
    account_id: int
    name: str
    channel_type: str = "Channel::Instagram"
    channel_id: int
    instagram_id: str
    username: str | None = None
    avatar_url: str | None = None
    lock_to_single_conversation: bool
    reauthorization_required: bool
    webhooks_subscribed: bool = Field(description="Meta webhooks are subscribed for this account")
    subscription_error: str | None = None
    token_expires_at: int | None = None


class InboxRef(Schema):
    id: int
    name: str
    channel_type: str = "Channel::Instagram"


class ContactInboxRead(Schema):
    source_id: str
    inbox: InboxRef


class ContactRead(Schema):
    id: int
    name: str
    thumbnail: str = ""
    email: str | None = None
    phone_number: str | None = None
    identifier: str | None = None
    additional_attributes: dict[str, Any] = {}
    custom_attributes: dict[str, Any] = {}
    contact_inboxes: list[ContactInboxRead] = []
    created_at: int
    last_activity_at: int | None = None


class SenderRead(Schema):
    id: int
    name: str
    thumbnail: str = ""
    type: Literal["contact", "user"]


class AttachmentRead(Schema):
    id: int
    message_id: int
    account_id: int
    file_type: str
    data_url: str | None
    thumb_url: str | None
    extension: str | None = None
    file_size: int | None = None


class MessageRead(Schema):
    id: int
    content: str | None
    account_id: int
    inbox_id: int
    conversation_id: int = Field(description="the conversation's display id")
    message_type: int = Field(description="0 incoming, 1 outgoing, 2 activity")
    content_type: str = "text"
    content_attributes: dict[str, Any] = {}
    status: str
    source_id: str | None = None
    private: bool = False
    created_at: int
    sender_type: str | None = None
    sender_id: int | None = None
    sender: SenderRead | None = None
    attachments: list[AttachmentRead] = []


class ConversationMeta(Schema):
    sender: ContactRead
    channel: str = "Channel::Instagram"
    assignee: dict[str, Any] | None = None
    hmac_verified: bool = False


class ConversationRead(Schema):
    id: int = Field(description="the per-account display id")
    account_id: int
    inbox_id: int
    status: str
    can_reply: bool
    unread_count: int
    last_activity_at: int
    timestamp: int
    created_at: int
    agent_last_seen_at: int | None = None
    additional_attributes: dict[str, Any] = {}
    meta: ConversationMeta
    messages: list[MessageRead] = []


# -- list envelopes (Chatwoot's shapes) ---------------------------------------------------


class PageMeta(Schema):
    count: int
    current_page: int


class ContactList(Schema):
    meta: PageMeta
    payload: list[ContactRead]


class ConversationCounts(Schema):
    mine_count: int
    unassigned_count: int
    assigned_count: int
    all_count: int


class ConversationPage(Schema):
    meta: ConversationCounts
    payload: list[ConversationRead]


class ConversationList(Schema):
    data: ConversationPage


class MessageListMeta(Schema):
    contact: ContactRead
    assignee: dict[str, Any] | None = None
    agent_last_seen_at: int | None = None


class MessageList(Schema):
    meta: MessageListMeta
    payload: list[MessageRead] = Field(description="oldest first")
