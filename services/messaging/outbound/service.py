"""Sending a stored reply through the Instagram Send API, exactly once.

A message goes out as parts (its text, then each attachment); each part's Meta id is recorded
as it is confirmed, so a retry never resends a part. A timeout after a request went out is
never retried: the message waits for Meta's echo to confirm it (the inbound worker adopts it).
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import ColumnElement, Select, bindparam, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.messaging.outbound import ratelimit
from shared import channels, storage
from shared.app_config import InstagramApp
from shared.events import Event, emit
from shared.graph import GraphClient, GraphError, GraphOutcomeUnknown, GraphTokenError, GraphTransientError
from shared.models import (
    Attachment,
    ChannelInstagram,
    ContactInbox,
    Conversation,
    Inbox,
    Message,
    MessageStatus,
    MessageType,
)
from shared.settings import Settings

WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
# A reply waiting for earlier ones is normally sent right after them by the same job (see
# jobs.send_message), which brings the reply's own job forward wherever the chain stops; that
# job also checks back this long after each earlier reply (up to ORDER_RECHECK_MAX_SECONDS), for
# a reply written while the one before it was going out (the chain did not know it) or a chain
# cut off by a crash. A reply queued behind many waits longer, instead of having every waiting
# reply of a busy conversation read again every few seconds.
ORDER_RECHECK_SECONDS = 5.0
ORDER_RECHECK_MAX_SECONDS = 60.0


class Deferred(Exception):
    """Not yet: an earlier reply in the conversation is still going out, or the account's window is full."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"deferred {seconds:.3f} s")
        self.seconds = seconds


@dataclass
class Outbound:
    message: Message
    last_incoming_at: datetime | None  # the customer's last message: the messaging window
    channel_id: int
    access_token: str
    reauthorization_required: bool
    recipient: str  # the customer's IGSID
    earlier_in_flight: int  # earlier replies of the conversation still going out
    next_in_flight: int | None  # the conversation's next reply waiting to go out
    has_attachments: bool


def _in_flight(message: type[Message]) -> list[ColumnElement[bool]]:
    """Replies of the loaded message's conversation (`Message`) that are still going out."""
    return [
        message.conversation_id == Message.conversation_id,
        message.message_type == int(MessageType.OUTGOING),
        message.private.is_(False),
        message.status == MessageStatus.PROGRESS.value,
        message.content_attributes["outcome_unknown"].as_boolean().is_not(True),
    ]


def _load_statement() -> Select[Any]:
    """The message (locked) with everything a send needs, in one round trip (of the
    conversation and the channel only the columns it uses: loading them whole costs more)."""
    other = aliased(Message)
    earlier = select(func.count()).where(*_in_flight(other), other.id < Message.id)
    following = select(func.min(other.id)).where(*_in_flight(other), other.id > Message.id)
    attachments = exists().where(Attachment.message_id == Message.id)
    return (
        select(
            Message,
            Conversation.last_incoming_at,
            ChannelInstagram.id,
            ChannelInstagram.access_token,
            ChannelInstagram.reauthorization_required,
            ContactInbox.source_id,
            earlier.scalar_subquery(),
            following.scalar_subquery(),
            attachments,
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(ContactInbox, ContactInbox.id == Conversation.contact_inbox_id)
        .join(Inbox, Inbox.id == Message.inbox_id)
        .join(ChannelInstagram, ChannelInstagram.id == Inbox.channel_id)
        .where(Message.id == bindparam("message_id"))
        .with_for_update(of=Message)
    )


LOAD = _load_statement()  # built once: building it costs more CPU than running it


async def _load(session: AsyncSession, message_id: int) -> Outbound | None:
    row = (await session.execute(LOAD, {"message_id": message_id})).one_or_none()
    return None if row is None else Outbound(*row)


def _finish(
    session: AsyncSession, message: Message, *, status: MessageStatus, error: str | None = None
) -> None:
    previous = message.status
    message.status = status.value
    if error:
        message.content_attributes = {**message.content_attributes, "external_error": error}
    emit(
        session,
        event=Event.MESSAGE_UPDATED,
        account_id=message.account_id,
        inbox_id=message.inbox_id,
        message_id=message.id,
        changed_attributes={"status": [previous, status.value]},
    )


def fail(session: AsyncSession, message: Message, reason: str) -> None:
    _finish(session, message, status=MessageStatus.FAILED, error=reason)


def _set(message: Message, **attributes: Any) -> None:
    """Update content_attributes (None removes a key)."""
    merged = {**message.content_attributes, **attributes}
    message.content_attributes = {k: v for k, v in merged.items() if v is not None}


def _await_echo(message: Message, reason: str) -> None:
    """The send may have happened: never resend; Meta's echo will confirm it (inbound adopts it)."""
    _set(message, outcome_unknown=True, external_error=f"{reason}; awaiting Instagram's echo")


def _part_in_flight(message: Message) -> bool:
    """A part's request went out and its answer never came back: it may have been sent."""
    sending = message.content_attributes.get("sending_part")
    return bool(sending) and sending not in message.content_attributes.get("sent_parts", {})


def give_up(session: AsyncSession, message: Message, reason: str) -> None:
    """Stop sending the message: failed with the reason, unless a part may have gone out (then
    Meta's echo settles it, as after a timeout)."""
    if _part_in_flight(message):
        _await_echo(message, reason)
    else:
        fail(session, message, reason)


def _window_tag(out: Outbound, app: InstagramApp, now: datetime) -> dict[str, str] | None:
    """{} inside 24 h; the HUMAN_AGENT tag up to 7 days when enabled; None when Instagram would refuse."""
    since = out.last_incoming_at
    age = now - since if since else None
    if age is not None and age <= WINDOW:
        return {"messaging_type": "RESPONSE"}
    if age is not None and age <= HUMAN_AGENT_WINDOW and app.human_agent_enabled:
        return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
    return None


async def _parts(
    session: AsyncSession, settings: Settings, out: Outbound
) -> list[tuple[str, str, dict[str, Any]]]:
    """(part name, rate-limit kind, Send API `message`) for every part not sent yet."""
    sent = out.message.content_attributes.get("sent_parts", {})
    parts: list[tuple[str, str, dict[str, Any]]] = []
    if out.message.content and "text" not in sent:
        parts.append(("text", "text", {"text": out.message.content}))
    if not out.has_attachments:
        return parts
    attachments = await session.scalars(
        select(Attachment).where(Attachment.message_id == out.message.id).order_by(Attachment.id)
    )
    for attachment in attachments:
        name = f"attachment:{attachment.id}"
        if name not in sent:
            kind = "media" if attachment.file_type in ("audio", "video") else "text"
            payload = {
                "type": attachment.file_type,
                "payload": {"url": storage.data_url(settings, attachment)},
            }
            parts.append((name, kind, {"attachment": payload}))
    return parts


async def send(
    session: AsyncSession,
    graph: GraphClient,
    redis: ArqRedis,
    settings: Settings,
    app: InstagramApp,
    *,
    message_id: int,
) -> int | None:
    """Send what is left of the message. Raises Deferred, or GraphTransientError to be retried.
    Once it is settled (sent, failed, or left to Meta's echo): the id of the conversation's next
    reply waiting to go out, if any, which may go out now."""
    out = await _load(session, message_id)
    if out is None:
        return None
    message = out.message
    if (
        message.private
        or message.status != MessageStatus.PROGRESS.value
        or message.content_attributes.get("outcome_unknown")
    ):
        return None
    if _part_in_flight(message):
        # Another job may be waiting for Instagram's answer right now: give it the time a
        # request can take before concluding that it was cut off.
        started = float(message.content_attributes.get("sending_at", 0))
        answer_by = started + 2 * settings.GRAPH_TIMEOUT_SECONDS + 1
        if time.time() < answer_by:
            raise Deferred(min(answer_by - time.time(), ORDER_RECHECK_SECONDS))
        _await_echo(message, "a send was interrupted before Instagram answered")
        return out.next_in_flight
    if out.earlier_in_flight:
        raise Deferred(min(ORDER_RECHECK_SECONDS * out.earlier_in_flight, ORDER_RECHECK_MAX_SECONDS))
    if out.reauthorization_required:
        fail(
            session,
            message,
            "The inbox needs to be re-authorized (Instagram refused its token); reconnect it.",
        )
        return out.next_in_flight
    context = _window_tag(out, app, datetime.now(UTC))
    if context is None:
        fail(
            session,
            message,
            "Outside Instagram's messaging window: replies are allowed within 24 hours of the "
            "customer's last message (7 days with the HUMAN_AGENT tag, when enabled).",
        )
        return out.next_in_flight
    sent: dict[str, str] = dict(message.content_attributes.get("sent_parts", {}))
    reply_to = message.content_attributes.get("in_reply_to_external_id")
    for name, kind, body in await _parts(session, settings, out):
        limit = (
            settings.MEDIA_SEND_RATE_LIMIT_PER_SECOND
            if kind == "media"
            else settings.SEND_RATE_LIMIT_PER_SECOND
        )
        turn = await ratelimit.take(
            redis, channel_id=out.channel_id, kind=kind, limit=limit, part=f"{message.id}:{name}"
        )
        if turn.defer is not None:
            raise Deferred(turn.defer)
        request = {"recipient": {"id": out.recipient}, "message": body, **context}
        if reply_to:
            request["reply_to"] = {"mid": reply_to}
        _set(message, sending_part=name, sending_at=time.time())
        await session.commit()  # from here a crash must not lead to a resend: the echo will tell
        if (full := await turn.arrive(redis)) is not None:  # the account's last second is full
            _set(message, sending_part=None, sending_at=None)
            await session.commit()
            raise Deferred(full)
        try:
            answer = await graph.send_message(out.access_token, request)
        except GraphOutcomeUnknown as error:
            _await_echo(message, f"Instagram did not confirm the send ({error.message})")
            return out.next_in_flight
        except GraphError as error:
            _set(message, sending_part=None, sending_at=None)
            if isinstance(error, GraphTransientError):
                raise
            if isinstance(error, GraphTokenError):
                await channels.record_token_error(session, settings, channel_id=out.channel_id)
                fail(session, message, f"Instagram refused the inbox's token: {error.message}")
            else:
                fail(session, message, error.message)
            return out.next_in_flight
        sent[name] = str(answer.get("message_id"))
        _set(message, sent_parts=dict(sent), sending_part=None, sending_at=None)
        message.source_id = message.source_id or sent[name]
    _finish(session, message, status=MessageStatus.SENT)
    return out.next_in_flight
