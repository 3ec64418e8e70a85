import json
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError

from services.messaging import views
from services.messaging.deps import ConversationDep
from services.messaging.messages import service as messages
from shared.access import AccountMember
from shared.app import QueueDep, SessionDep, SettingsDep, StorageDep
from shared.errors import Unprocessable
from shared.logging import get_logger
from shared.models import Contact
from shared.queue import SEND_MESSAGE, enqueue
from shared.schemas.api import MessageList, MessageListMeta, MessageRead

log = get_logger("messages")
router = APIRouter(
    prefix="/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages", tags=["messages"]
)


class MessageCreate(BaseModel):
    content: str | None = Field(default=None, max_length=20_000)
    message_type: str = Field(default="outgoing", description="only 'outgoing' is accepted")
    private: bool = Field(default=False, description="a private note: stored, never sent to Instagram")
    content_attributes: dict[str, Any] = Field(
        default_factory=dict, description="e.g. {'in_reply_to': <message id>}"
    )


@router.get("")
async def list_messages(
    conversation: ConversationDep,
    session: SessionDep,
    settings: SettingsDep,
    before: int | None = Query(None, description="message id: return the messages before it"),
    limit: int = Query(20, ge=1, le=100),
) -> MessageList:
    """Oldest first; page back through history with `before`."""
    page = await messages.history(session, conversation=conversation, before=before, limit=limit)
    contact = await session.get(Contact, conversation.contact_id)
    assert contact is not None
    [contact_view] = await views.contact_views(session, [contact])
    meta = MessageListMeta(
        contact=contact_view, agent_last_seen_at=views.unix(conversation.agent_last_seen_at)
    )
    payload = await views.message_views(session, settings, page, conversation=conversation)
    return MessageList(meta=meta, payload=payload)


async def _parse(request: Request) -> tuple[MessageCreate, list[messages.Upload]]:
    """JSON, or multipart/form-data with files under `attachments[]`."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form() as form:  # closes the spooled upload files
            fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
            files = [
                f
                for key in ("attachments[]", "attachments")
                for f in form.getlist(key)
                if not isinstance(f, str)
            ]
            uploads = [
                messages.Upload(
                    f.filename or "upload", f.content_type or "application/octet-stream", await f.read()
                )
                for f in files
            ]
        if "content_attributes" in fields:
            fields["content_attributes"] = json.loads(fields["content_attributes"] or "{}")
        return MessageCreate.model_validate(fields), uploads
    return MessageCreate.model_validate(await request.json()), []


MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "content": {"type": "string"},
        "private": {"type": "boolean"},
        "content_attributes": {"type": "string", "description": "JSON object"},
        "attachments[]": {"type": "array", "items": {"type": "string", "format": "binary"}},
    },
}


@router.post(
    "",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": MessageCreate.model_json_schema()},
                "multipart/form-data": {"schema": MULTIPART_SCHEMA},
            },
        }
    },
    responses={422: {"description": "invalid message, too long, or an attachment Instagram does not accept"}},
)
async def create_message(
    request: Request,
    conversation: ConversationDep,
    member: AccountMember,
    session: SessionDep,
    settings: SettingsDep,
    files: StorageDep,
    queue: QueueDep,
) -> MessageRead:
    """Store the reply (status `progress`) and queue it for sending; private notes are never sent."""
    try:
        body, uploads = await _parse(request)
    except (ValidationError, ValueError) as error:
        raise Unprocessable(f"invalid message: {error}") from error
    if body.message_type != "outgoing":
        raise Unprocessable("only outgoing messages can be created through the API")
    message = await messages.create_outgoing(
        session,
        files,
        conversation=conversation,
        user=member.user,
        content=body.content,
        private=body.private,
        content_attributes=body.content_attributes,
        uploads=uploads,
    )
    # The answer is read inside the transaction: an error after the commit would tell the client
    # "not stored" about a stored reply, and its retry would send the reply twice.
    [view] = await views.message_views(session, settings, [message])
    await session.commit()
    if not message.private:
        try:
            await enqueue(queue, SEND_MESSAGE, key=str(message.id), message_id=message.id)
        except (RedisError, OSError) as error:
            # Stored, so answered as stored: a 500 would make the client post it a second time.
            # The outbound worker's recovery sweep enqueues it once Redis answers again.
            log.warning(
                "reply stored but its send job not enqueued; the recovery sweep will send it",
                message_id=message.id,
                error=f"{type(error).__name__}: {error}"[:300],
            )
    return view
