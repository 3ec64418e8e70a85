"""Turning one Instagram webhook event into messages, receipts, reactions, unsends and edits.

Every write is idempotent: messages are inserted with ON CONFLICT on (inbox_id, source_id),
and events without a Meta id get a synthetic `source_id` from the event's deterministic key,
so a redelivered or retried event changes nothing and emits no second webhook event.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.inbound import contacts, conversations
from shared.db import among, pairs_among, table
from shared.events import Event, emit
from shared.logging import get_logger
from shared.models import (
    Attachment,
    ChannelInstagram,
    Inbox,
    Message,
    MessageStatus,
    MessageType,
)
from shared.schemas.events import InboundEvent

log = get_logger("inbound")

# Meta attachment type -> our file_type; media types are downloaded into our storage.
FILE_TYPES = {
    "image": "image",
    "video": "video",
    "audio": "audio",
    "file": "file",
    "share": "share",
    "story_mention": "story_mention",
    "ig_reel": "ig_reel",
    "reel": "ig_reel",
    "ig_post": "ig_post",
    "ig_story": "ig_story",
    "story": "ig_story",
    "media": "image",
}
DOWNLOADED = frozenset({"image", "video", "audio", "file", "story_mention", "ig_story"})
_MESSAGES, _ATTACHMENTS = table(Message), table(Attachment)


class EchoMayBeOurs(Exception):
    """An echo arrived while one of our sends in that conversation has no Meta id yet."""


@dataclass
class Followups:
    """Jobs to enqueue once the transaction has committed."""

    enrich: set[int] = field(default_factory=set)  # contact_inbox ids whose profile is owed
    downloads: list[int] = field(default_factory=list)


@dataclass
class Route:
    inbox: Inbox
    channel: ChannelInstagram
    customer: str  # the customer's IGSID


def _parties(event: InboundEvent) -> tuple[str, str]:
    """(business, customer): the business is the recipient, or the sender of an echo."""
    sender = str((event.item.get("sender") or {}).get("id", ""))
    recipient = str((event.item.get("recipient") or {}).get("id", ""))
    business, customer = (sender, recipient) if event.kind == "echo" else (recipient, sender)
    if event.entry_id != "0":  # the Dashboard's test button sends entry id "0"
        business = event.entry_id
    return business, customer


async def route_many(session: AsyncSession, events: Sequence[InboundEvent]) -> list[Route | None]:
    """The inbox each event belongs to (one query for all), None for an account not connected."""
    parties = [_parties(event) for event in events]
    rows = await session.execute(
        select(Inbox, ChannelInstagram)
        .join(ChannelInstagram, ChannelInstagram.id == Inbox.channel_id)
        .where(among(ChannelInstagram.instagram_id, {business for business, _ in parties}))
    )
    inboxes = {channel.instagram_id: (inbox, channel) for inbox, channel in rows}
    routes: list[Route | None] = []
    for event, (business, customer) in zip(events, parties, strict=True):
        found = inboxes.get(business)
        if found is None or not customer:
            log.info(
                "event for an Instagram account that is not connected; dropped",
                business=business,
                kind=event.kind,
            )
            routes.append(None)
        else:
            routes.append(Route(inbox=found[0], channel=found[1], customer=customer))
    return routes


def event_time(event: InboundEvent) -> datetime:
    milliseconds = event.timestamp_ms
    return datetime.fromtimestamp(milliseconds / 1000, UTC) if milliseconds else datetime.now(UTC)


async def _find(session: AsyncSession, *, inbox_id: int, mid: str | None) -> Message | None:
    if not mid:
        return None
    return await session.scalar(
        select(Message).where(Message.inbox_id == inbox_id, Message.source_id == mid).with_for_update()
    )


async def _ids(session: AsyncSession, keys: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Message ids by (inbox_id, source_id), for the keys that are stored."""
    if not keys:
        return {}
    rows = await session.execute(
        select(Message.inbox_id, Message.source_id, Message.id).where(
            pairs_among(Message.inbox_id, Message.source_id, keys)
        )
    )
    return {(inbox_id, source_id or ""): id_ for inbox_id, source_id, id_ in rows}


async def _pending_downloads(session: AsyncSession, message_ids: Iterable[int]) -> list[int]:
    """Attachments of these messages still waiting for their copy (their download job may be lost)."""
    ids = list(message_ids)
    if not ids:
        return []
    pending = await session.scalars(
        select(Attachment.id).where(
            among(Attachment.message_id, ids),
            Attachment.file_type.in_(DOWNLOADED),
            Attachment.external_url.is_not(None),
            Attachment.storage_key.is_(None),
            Attachment.download_error.is_(None),
        )
    )
    return list(pending)


def _attachment_rows(
    account_id: int, message_id: int, attachments: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for item in attachments:
        payload = item.get("payload") or {}
        kind = str(item.get("type", "fallback"))
        rows.append(
            {
                "account_id": account_id,
                "message_id": message_id,
                "file_type": FILE_TYPES.get(kind, "fallback"),
                "external_url": payload.get("url") or payload.get("story_media_url"),
                "meta": {"instagram_type": kind, **{k: v for k, v in payload.items() if k != "url"}},
            }
        )
    return rows


@dataclass
class Draft:
    """A message for the customer's conversation, stored unless a message with its source_id is."""

    route: Route
    source_id: str
    message_type: MessageType
    content: str | None
    content_attributes: dict[str, Any]
    at: datetime
    attachments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, str]:
        return self.route.inbox.id, self.source_id


Thread = tuple[int, int]  # the customer's contact id, their active conversation's id


async def threads(session: AsyncSession, routes: Sequence[Route], followups: Followups) -> list[Thread]:
    """Each customer's contact and active conversation, created where missing, in a few statements
    whatever their number. Owed profiles are added to `followups`."""
    known = await contacts.contacts_for(session, [(found.inbox, found.customer) for found in routes])
    customers = [known[found.inbox.id, found.customer] for found in routes]
    active = await conversations.active_many(session, [c.contact_inbox_id for c in known.values()])
    missing = [
        (found.inbox, customer)
        for found, customer in zip(routes, customers, strict=True)
        if customer.contact_inbox_id not in active
    ]
    active |= await conversations.open_many(session, missing)
    result: list[Thread] = []
    for found, customer in zip(routes, customers, strict=True):
        if contacts.needs_profile(customer.profile_fetched_at) and not found.channel.reauthorization_required:
            followups.enrich.add(customer.contact_inbox_id)
        result.append((customer.contact_id, active[customer.contact_inbox_id]))
    return result


async def store(session: AsyncSession, drafts: Sequence[Draft], followups: Followups) -> list[int | None]:
    """Insert each draft's message in its customer's conversation, in a few statements for all of
    them: the new message's id, or None where it was stored before (a retry or a redelivery, for
    which only downloads that may not have been queued are added to `followups`)."""
    stored = await _ids(session, {draft.key for draft in drafts})
    followups.downloads += await _pending_downloads(session, stored.values())
    fresh = list({draft.key: draft for draft in drafts if draft.key not in stored}.values())
    if not fresh:
        return [None] * len(drafts)
    rows: list[dict[str, Any]] = []
    for draft, (contact_id, conversation_id) in zip(
        fresh, await threads(session, [d.route for d in fresh], followups), strict=True
    ):
        incoming = draft.message_type == MessageType.INCOMING
        rows.append(
            {
                "account_id": draft.route.inbox.account_id,
                "inbox_id": draft.route.inbox.id,
                "conversation_id": conversation_id,
                "message_type": int(draft.message_type),
                "content": draft.content,
                "content_attributes": draft.content_attributes,
                "status": MessageStatus.SENT.value,
                "source_id": draft.source_id,
                "sender_type": "Contact" if incoming else None,
                "sender_id": contact_id if incoming else None,
                "created_at": draft.at,
            }
        )
    inserted = {
        (row.inbox_id, row.source_id): row
        for row in await session.execute(
            insert(_MESSAGES)
            .on_conflict_do_nothing(
                index_elements=[_MESSAGES.c.inbox_id, _MESSAGES.c.source_id],
                index_where=text("source_id IS NOT NULL"),
            )
            .returning(_MESSAGES.c.id, _MESSAGES.c.inbox_id, _MESSAGES.c.source_id, _MESSAGES.c.account_id),
            rows,
        )
    }  # a message missing here was inserted by a concurrent delivery: it is that one's to announce
    attachments: list[dict[str, Any]] = []
    activity: list[conversations.Activity] = []
    for draft, row in zip(fresh, rows, strict=True):
        message = inserted.get(draft.key)
        if message is None:
            continue
        attachments += _attachment_rows(message.account_id, message.id, draft.attachments)
        activity.append((row["conversation_id"], draft.at, draft.message_type == MessageType.INCOMING))
        emit(
            session,
            event=Event.MESSAGE_CREATED,
            account_id=message.account_id,
            inbox_id=message.inbox_id,
            message_id=message.id,
        )
    if attachments:
        saved = await session.execute(
            insert(_ATTACHMENTS).returning(
                _ATTACHMENTS.c.id, _ATTACHMENTS.c.file_type, _ATTACHMENTS.c.external_url
            ),
            attachments,
        )
        followups.downloads += [a.id for a in saved if a.file_type in DOWNLOADED and a.external_url]
    await conversations.touch(session, activity)
    ids = {key: message.id for key, message in inserted.items()}
    return [None if draft.key in stored else ids.get(draft.key) for draft in drafts]


def _content_attributes(message: dict[str, Any], referral: dict[str, Any] | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    reply_to = message.get("reply_to") or {}
    if "story" in reply_to:
        attributes["story_id"] = reply_to["story"].get("id")
        attributes["story_url"] = reply_to["story"].get("url")
        attributes["story_reply"] = True
    if "mid" in reply_to:
        attributes["in_reply_to_external_id"] = reply_to["mid"]
    if "quick_reply" in message:
        attributes["quick_reply_payload"] = (message["quick_reply"] or {}).get("payload")
    if referral or message.get("referral"):
        attributes["referral"] = referral or message.get("referral")
    if message.get("is_unsupported"):
        attributes["is_unsupported"] = True
    kinds = {a.get("type") for a in message.get("attachments") or []}
    if "story_mention" in kinds:
        attributes["image_type"] = "story_mention"
    return attributes


def message_draft(event: InboundEvent, found: Route) -> Draft:
    """A customer's message or postback (a button pressed) as the message to store."""
    item = event.item
    body = item.get("message") or {}
    if event.kind == "postback":
        postback = item["postback"]
        body = {"mid": postback.get("mid"), "text": postback.get("title")}
        attributes = {"postback_payload": postback.get("payload")}
    else:
        attributes = _content_attributes(body, None)
    return Draft(
        route=found,
        source_id=str(body.get("mid") or f"{event.kind}:{event.key}"),
        message_type=MessageType.INCOMING,
        content=body.get("text"),
        content_attributes=attributes,
        at=event_time(event),
        attachments=body.get("attachments") or [],
    )


async def _link_replies(session: AsyncSession, drafts: list[Draft]) -> None:
    """A reply to a message we have also names that message's local id (`in_reply_to`)."""
    wanted = {
        (draft.route.inbox.id, draft.content_attributes["in_reply_to_external_id"])
        for draft in drafts
        if "in_reply_to_external_id" in draft.content_attributes
    }
    replied = await _ids(session, wanted)
    for draft in drafts:
        key = (draft.route.inbox.id, draft.content_attributes.get("in_reply_to_external_id"))
        if key in replied:
            draft.content_attributes["in_reply_to"] = replied[key]  # type: ignore[index]


BATCHED_KINDS = frozenset({"message", "postback"})


async def store_incoming(session: AsyncSession, events: Sequence[InboundEvent], followups: Followups) -> None:
    """Customers' messages and postbacks (`BATCHED_KINDS`): any number in a few statements."""
    routes = await route_many(session, events)
    drafts = [message_draft(e, found) for e, found in zip(events, routes, strict=True) if found is not None]
    if drafts:
        await _link_replies(session, drafts)
        await store(session, drafts, followups)


class Handler:
    """Handles one event inside the caller's transaction."""

    def __init__(self, session: AsyncSession, event: InboundEvent, *, echo_patience: bool = True) -> None:
        self.session, self.event, self.echo_patience = session, event, echo_patience
        self.followups = Followups()

    async def run(self) -> Followups:
        if not self.event.is_messaging:
            log.info(
                "event kind not handled by the inbox; dropped", kind=self.event.kind, field=self.event.field
            )
            return self.followups
        if self.event.kind in BATCHED_KINDS:
            await store_incoming(self.session, [self.event], self.followups)
            return self.followups
        (found,) = await route_many(self.session, [self.event])
        if found is None:
            return self.followups
        handler = {
            "echo": self.echo,
            "read": self.read,
            "reaction": self.reaction,
            "unsend": self.unsend,
            "message_edit": self.edit,
            "referral": self.referral,
        }.get(self.event.kind, self.unsupported)
        await handler(found)
        return self.followups

    # -- shared steps ------------------------------------------------------------------

    async def _store(
        self,
        found: Route,
        *,
        source_id: str,
        message_type: MessageType,
        content: str | None,
        content_attributes: dict[str, Any],
        attachments: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> int | None:
        """Insert the message in the customer's conversation: its id, or None if it was stored before."""
        draft = Draft(
            route=found,
            source_id=source_id,
            message_type=message_type,
            content=content,
            content_attributes=content_attributes,
            at=event_time(self.event),
            attachments=list(attachments),
        )
        (stored,) = await store(self.session, [draft], self.followups)
        return stored

    def _updated(self, message: Message, **changes: Any) -> None:
        emit(
            self.session,
            event=Event.MESSAGE_UPDATED,
            account_id=message.account_id,
            inbox_id=message.inbox_id,
            message_id=message.id,
            changed_attributes=changes or None,
        )

    # -- kinds -------------------------------------------------------------------------

    async def echo(self, found: Route) -> None:
        body = self.event.item.get("message") or {}
        mine = await _find(self.session, inbox_id=found.inbox.id, mid=body.get("mid"))
        if mine is not None:  # our own send: the echo only confirms it
            if mine.status == MessageStatus.PROGRESS.value:
                mine.status = MessageStatus.SENT.value
                self._updated(mine, status=[MessageStatus.PROGRESS.value, MessageStatus.SENT.value])
            return
        ((_, conversation_id),) = await threads(self.session, [found], self.followups)
        if await self._adopt(conversation_id, body):
            return
        if self.echo_patience:
            pending = await self.session.scalar(
                select(Message.id)
                .where(
                    Message.conversation_id == conversation_id,
                    Message.message_type == int(MessageType.OUTGOING),
                    Message.source_id.is_(None),
                    Message.status == MessageStatus.PROGRESS.value,
                    Message.private.is_(False),
                )
                .limit(1)
            )
            if pending is not None:
                raise EchoMayBeOurs(f"conversation {conversation_id} has a send in progress")
        await self._store(
            found,
            source_id=str(body["mid"]),
            message_type=MessageType.OUTGOING,
            content=body.get("text"),
            content_attributes={"external_echo": True},
            attachments=body.get("attachments") or [],
        )

    async def _adopt(self, conversation_id: int, body: dict[str, Any]) -> bool:
        """An echo of our own reply whose Send API answer never reached us (a timeout): confirm it."""
        text = body.get("text")
        candidate = await self.session.scalar(
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.message_type == int(MessageType.OUTGOING),
                Message.private.is_(False),
                Message.source_id.is_(None),
                Message.status == MessageStatus.PROGRESS.value,
                Message.content_attributes["outcome_unknown"].as_boolean().is_(True),
                Message.content == text if text else Message.content.is_(None),
            )
            .order_by(Message.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if candidate is None:
            return False
        candidate.source_id = str(body["mid"])
        candidate.status = MessageStatus.SENT.value
        attributes = {
            k: v
            for k, v in candidate.content_attributes.items()
            if k not in ("outcome_unknown", "external_error")
        }
        candidate.content_attributes = {**attributes, "confirmed_by_echo": True}
        self._updated(candidate, status=[MessageStatus.PROGRESS.value, MessageStatus.SENT.value])
        return True

    async def read(self, found: Route) -> None:
        seen = await _find(self.session, inbox_id=found.inbox.id, mid=self.event.item["read"].get("mid"))
        if seen is None:
            log.info("read receipt for a message we never saw", inbox_id=found.inbox.id)
            return
        marked = await self.session.scalars(
            update(Message)
            .where(
                Message.conversation_id == seen.conversation_id,
                Message.message_type == int(MessageType.OUTGOING),
                Message.status.in_([MessageStatus.SENT.value, MessageStatus.DELIVERED.value]),
                Message.created_at <= seen.created_at,
            )
            .values(status=MessageStatus.READ.value)
            .returning(Message)
        )
        for message in marked:
            self._updated(message, status=[MessageStatus.SENT.value, MessageStatus.READ.value])

    async def reaction(self, found: Route) -> None:
        reaction = self.event.item["reaction"]
        mid = reaction.get("mid")
        target = await _find(self.session, inbox_id=found.inbox.id, mid=mid)
        if reaction.get("action") == "unreact":
            await self._unreact(found, target, mid)
            return
        timeline = await self._store(
            found,
            source_id=f"reaction:{self.event.key}",
            message_type=MessageType.INCOMING,
            content=reaction.get("emoji") or reaction.get("reaction"),
            content_attributes={
                "is_reaction": True,
                "in_reply_to_external_id": mid,
                "reaction": reaction.get("reaction"),
                **({"in_reply_to": target.id} if target else {}),
            },
        )
        if timeline is None or target is None:
            return
        others = [r for r in target.content_attributes.get("reactions", []) if r.get("from") != "contact"]
        entry = {"emoji": reaction.get("emoji"), "reaction": reaction.get("reaction"), "from": "contact"}
        target.content_attributes = {**target.content_attributes, "reactions": [*others, entry]}
        self._updated(target, reactions=[entry])

    async def _unreact(self, found: Route, target: Message | None, mid: str | None) -> None:
        if target is not None and any(
            r.get("from") == "contact" for r in target.content_attributes.get("reactions", [])
        ):
            kept = [r for r in target.content_attributes["reactions"] if r.get("from") != "contact"]
            target.content_attributes = {**target.content_attributes, "reactions": kept}
            self._updated(target, reactions=[])
        shown = await self.session.scalars(
            select(Message).where(
                Message.inbox_id == found.inbox.id,
                Message.content_attributes["is_reaction"].as_boolean().is_(True),
                Message.content_attributes["in_reply_to_external_id"].as_string() == str(mid),
                Message.content.is_not(None),
            )
        )
        for message in shown:
            message.content = None
            message.content_attributes = {**message.content_attributes, "deleted": True}
            self._updated(message, deleted=True)

    async def unsend(self, found: Route) -> None:
        target = await _find(
            self.session, inbox_id=found.inbox.id, mid=(self.event.item.get("message") or {}).get("mid")
        )
        if target is None or target.content_attributes.get("deleted"):
            return
        target.content = None
        target.content_attributes = {**target.content_attributes, "deleted": True}
        await self.session.execute(delete(Attachment).where(Attachment.message_id == target.id))
        self._updated(target, deleted=True)

    async def edit(self, found: Route) -> None:
        edit = self.event.item["message_edit"]
        target = await _find(self.session, inbox_id=found.inbox.id, mid=edit.get("mid"))
        num_edit = int(edit.get("num_edit") or 0)
        if target is None or num_edit <= int(target.content_attributes.get("edit_count", 0)):
            return
        previous = [
            *target.content_attributes.get("previous_contents", []),
            {"content": target.content, "edited_at": event_time(self.event).isoformat()},
        ]
        target.content_attributes = {
            **target.content_attributes,
            "edit_count": num_edit,
            "previous_contents": previous,
        }
        target.content = edit.get("text")
        self._updated(target, content=target.content)

    async def referral(self, found: Route) -> None:
        referral = self.event.item["referral"]
        await self._store(
            found,
            source_id=f"referral:{self.event.key}",
            message_type=MessageType.ACTIVITY,
            content=f"Opened the conversation from a link (ref: {referral.get('ref')})",
            content_attributes={"referral": referral},
        )

    async def unsupported(self, found: Route) -> None:
        """Kinds we do not know yet are kept, visibly, never dropped."""
        await self._store(
            found,
            source_id=f"{self.event.kind}:{self.event.key}",
            message_type=MessageType.INCOMING,
            content=None,
            content_attributes={
                "is_unsupported": True,
                "unsupported_kind": self.event.kind,
                "raw": self.event.item,
            },
        )
