"""Messages of a conversation: history pages, and replies stored before they are sent."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from shared import storage
from shared.errors import NotFound, Unprocessable
from shared.events import Event, emit
from shared.models import Attachment, Conversation, Message, MessageStatus, MessageType, User

TEXT_LIMIT_BYTES = 1000  # Instagram's limit is in UTF-8 bytes, not characters
MB = 1024 * 1024
# Content types Instagram accepts, by file_type, with its size limits (instagram-platform.md §7.3).
ACCEPTED = {
    "image": ({"image/png", "image/jpeg", "image/gif"}, 8 * MB),
    "video": ({"video/mp4", "video/ogg", "video/avi", "video/quicktime", "video/webm"}, 25 * MB),
    "audio": ({"audio/aac", "audio/mp4", "audio/x-m4a", "audio/m4a", "audio/wav", "audio/x-wav"}, 25 * MB),
    "file": ({"application/pdf"}, 25 * MB),
}


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


def file_type_of(upload: Upload) -> str:
    for file_type, (types, limit) in ACCEPTED.items():
        if upload.content_type in types:
            if len(upload.data) > limit:
                raise Unprocessable(f"{upload.filename}: {file_type} files may be at most {limit // MB} MB")
            return file_type
    accepted = ", ".join(sorted(t for types, _ in ACCEPTED.values() for t in types))
    raise Unprocessable(
        f"{upload.filename}: Instagram does not accept {upload.content_type!r}; accepted: {accepted}"
    )


async def history(
    session: AsyncSession, *, conversation: Conversation, before: int | None, limit: int
) -> list[Message]:
    """Up to `limit` messages before message `before` (or the latest), oldest first."""
    query = select(Message).where(Message.conversation_id == conversation.id)
    if before is not None:
        anchor = await session.get(Message, before)
        if anchor is None or anchor.conversation_id != conversation.id:
            raise NotFound("message given as `before` not found in this conversation")
        query = query.where(tuple_(Message.created_at, Message.id) < tuple_(anchor.created_at, anchor.id))
    page = await session.scalars(query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit))
    return list(reversed(page.all()))


async def create_outgoing(
    session: AsyncSession,
    files: storage.Storage,
    *,
    conversation: Conversation,
    user: User,
    content: str | None,
    private: bool,
    content_attributes: dict[str, Any],
    uploads: list[Upload],
) -> Message:
    """Store a reply (status `progress` until Meta confirms it) or a private note (never sent).
    Its files are saved before the caller commits: a store that is down fails the request, and
    no message is kept."""
    content = content or None
    if content is None and not uploads:
        raise Unprocessable("a message needs content or at least one attachment")
    if content and len(content.encode()) > TEXT_LIMIT_BYTES and not private:
        raise Unprocessable(
            f"content is {len(content.encode())} bytes; Instagram accepts at most {TEXT_LIMIT_BYTES} bytes "
            "(UTF-8) per message: split it into several messages"
        )
    file_types = [file_type_of(upload) for upload in uploads]
    attributes = dict(content_attributes)
    if "in_reply_to" in attributes:
        replied = await session.get(Message, attributes["in_reply_to"])
        if replied is None or replied.conversation_id != conversation.id:
            raise Unprocessable("in_reply_to must be the id of a message in this conversation")
        if replied.source_id:
            attributes["in_reply_to_external_id"] = replied.source_id
    message = Message(
        account_id=conversation.account_id,
        inbox_id=conversation.inbox_id,
        conversation_id=conversation.id,
        message_type=int(MessageType.OUTGOING),
        content=content,
        content_attributes=attributes,
        status=(MessageStatus.SENT if private else MessageStatus.PROGRESS).value,
        private=private,
        sender_type="User",
        sender_id=user.id,
    )
    session.add(message)
    await session.flush()
    for upload, file_type in zip(uploads, file_types, strict=True):
        attachment = Attachment(
            account_id=message.account_id,
            message_id=message.id,
            file_type=file_type,
            content_type=upload.content_type,
            extension=storage.extension_for(upload.content_type, upload.filename),
            file_size=len(upload.data),
            meta={"filename": upload.filename},
        )
        session.add(attachment)
        await session.flush()
        attachment.storage_key = storage.attachment_key(attachment)
        await files.save(attachment.storage_key, upload.data, upload.content_type)
    conversation.last_activity_at = (
        message.created_at if message.created_at else conversation.last_activity_at
    )
    emit(
        session,
        event=Event.MESSAGE_CREATED,
        account_id=message.account_id,
        inbox_id=message.inbox_id,
        message_id=message.id,
    )
    return message
