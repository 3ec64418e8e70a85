"""Sandbox webhooks → webhooks service → inbound worker → Postgres."""

import asyncio
from typing import Any

import httpx
import pytest
from arq import Retry
from arq.connections import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox import events
from sandbox.client import SandboxAdmin
from services.messaging.inbound.jobs import process_event
from shared import storage
from shared.db import create_engine, create_sessionmaker
from shared.models import (
    Attachment,
    ChannelInstagram,
    Contact,
    ContactInbox,
    Conversation,
    DeadLetter,
    WebhookEvent,
)
from shared.queue import Queue
from shared.settings import Settings
from tests.inbound.conftest import ACME, JANE, OMAR, Connected
from tests.support import assert_serves_byte_ranges, free_port


async def test_first_text_creates_contact_conversation_and_message(
    connected: Connected, sandbox: SandboxAdmin, db: AsyncSession
) -> None:
    await sandbox.last_message(JANE)  # consent for the profile lookup
    await connected.deliver(
        events.text(JANE, ACME, text="Hi, is this in stock?", mid="m1", timestamp=1767225599876)
    )
    await connected.process()

    [message] = await connected.messages()
    assert (message.content, message.message_type, message.source_id, message.sender_type) == (
        "Hi, is this in stock?",
        0,
        "m1",
        "Contact",
    )
    assert message.created_at.timestamp() == 1767225599.876
    [conversation] = await connected.conversations()
    assert (conversation.display_id, conversation.status, conversation.unread_count) == (1, "open", 1)
    assert conversation.last_incoming_at == message.created_at
    contact = (await db.scalars(select(Contact))).one()
    assert contact.name == "Jane Doe"  # enriched from the profile
    assert contact.additional_attributes["username"] == "jane.doe"
    assert contact.additional_attributes["social_profiles"] == {
        "instagram": "https://www.instagram.com/jane.doe"
    }
    assert contact.additional_attributes["followers_count"] == 312
    assert contact.avatar_url and contact.profile_fetched_at is not None
    assert (await db.scalars(select(ContactInbox.source_id))).one() == JANE
    emitted = sorted((await db.scalars(select(WebhookEvent.event))).all())
    assert emitted == ["contact_created", "contact_updated", "conversation_created", "message_created"]


async def test_redelivery_and_concurrent_delivery_store_once(connected: Connected) -> None:
    item = events.text(JANE, ACME, text="once", mid="dup")
    await connected.deliver(item)
    await asyncio.gather(*(connected.deliver(item) for _ in range(3)))
    await connected.process()
    await connected.deliver(item)  # after processing, too
    await connected.process()
    assert [m.source_id for m in await connected.messages()] == ["dup"]
    assert (await connected.conversations())[0].unread_count == 1


async def test_out_of_order_delivery_lists_by_meta_time(connected: Connected) -> None:
    await connected.deliver(events.text(JANE, ACME, text="second", mid="b", timestamp=1767225600000))
    await connected.deliver(events.text(JANE, ACME, text="first", mid="a", timestamp=1767225500000))
    await connected.process()
    assert [m.content for m in await connected.messages()] == ["first", "second"]


async def test_multi_entry_batches_and_two_customers(connected: Connected) -> None:
    body = [
        events.text(JANE, ACME, text="j1"),
        events.text(OMAR, ACME, text="o1"),
        events.text(JANE, ACME, text="j2"),
    ]
    await connected.deliver(*body)
    await connected.process()
    assert len(await connected.messages()) == 3
    assert [c.display_id for c in await connected.conversations()] == [1, 2]


async def test_two_first_messages_from_one_person_at_once_make_one_contact(
    connected: Connected, db: AsyncSession
) -> None:
    await connected.deliver(*(events.text(OMAR, ACME, text=str(i)) for i in range(6)))
    await connected.process()
    assert await db.scalar(select(func.count()).select_from(Contact)) == 1
    assert await db.scalar(select(func.count()).select_from(Conversation)) == 1
    assert len(await connected.messages()) == 6


KINDS = [
    "image",
    "video",
    "audio",
    "file",
    "share",
    "story_mention",
    "ig_reel",
    "reel",
    "ig_post",
    "ig_story",
    "template",
    "fallback",
]


async def test_attachments_of_every_type_are_stored_and_served_at_stable_urls(
    connected: Connected,
    db: AsyncSession,
    sandbox_url: str,
    messaging_client: httpx.AsyncClient,
    settings: Settings,
) -> None:
    await connected.deliver(
        *(events.attachment(JANE, ACME, type=kind, url=f"{sandbox_url}/cdn/{kind}.jpg") for kind in KINDS)
    )
    await connected.process()
    rows = {a.meta["instagram_type"]: a for a in await db.scalars(select(Attachment))}
    assert set(rows) == set(KINDS)
    assert rows["reel"].file_type == "ig_reel" and rows["template"].file_type == "fallback"
    assert rows["ig_post"].meta["ig_post_media_id"] == "18000000000000001"
    story = next(
        m for m in await connected.messages() if m.content_attributes.get("image_type") == "story_mention"
    )
    assert story.message_type == 0
    downloaded = {kind for kind, row in rows.items() if row.storage_key}
    assert downloaded == {"image", "video", "audio", "file", "story_mention", "ig_story"}
    image = rows["image"]
    assert (image.extension, image.content_type, image.file_size) == (
        "jpg",
        "image/jpeg",
        len(b"sandbox media image.jpg\n") * 64,
    )
    url = storage.data_url(settings, image)
    assert url is not None and url.startswith(settings.PUBLIC_MEDIA_URL) and image.external_url not in url
    served = await messaging_client.get(url.removeprefix(settings.PUBLIC_MEDIA_URL))
    assert served.status_code == 200 and served.content.startswith(b"sandbox media image.jpg")
    await assert_serves_byte_ranges(
        messaging_client, url.removeprefix(settings.PUBLIC_MEDIA_URL), served.content
    )
    assert (
        await messaging_client.get(f"/media/{image.id}/wrongtoken/{storage.filename(image)}")
    ).status_code == 404
    assert storage.data_url(settings, rows["share"]) == rows["share"].external_url


async def test_attachment_download_retries_then_succeeds_and_refusals_are_recorded(
    connected: Connected, db: AsyncSession, sandbox: SandboxAdmin, sandbox_url: str
) -> None:
    await sandbox.fault("/cdn/flaky.jpg", times=2, status=503, body="busy")
    await connected.deliver(
        events.attachment(JANE, ACME, type="image", url=f"{sandbox_url}/cdn/flaky.jpg"),
        events.attachment(JANE, ACME, type="image", url=f"{sandbox_url}/cdn/gone.gif"),
    )
    await connected.process()
    rows = {(a.external_url or "").rsplit("/", 1)[-1]: a for a in await db.scalars(select(Attachment))}
    assert rows["flaky.jpg"].storage_key is not None and rows["flaky.jpg"].download_error is None
    assert rows["gone.gif"].storage_key is None and "refused" in (rows["gone.gif"].download_error or "")
    assert len(await connected.messages()) == 2  # messages never wait for their files


async def test_story_replies_inline_replies_quick_replies_postbacks_and_referrals(
    connected: Connected,
) -> None:
    await connected.deliver(events.text(JANE, ACME, text="original", mid="orig"))
    await connected.process()  # the local id of a replied-to message is known once it is stored
    await connected.deliver(
        events.story_reply(JANE, ACME, text="Love it", story_id="18050000000000009", mid="s1"),
        events.inline_reply(JANE, ACME, text="yes that one", reply_to_mid="orig", mid="r1"),
        events.quick_reply(JANE, ACME, text="Track order", payload="TRACK", mid="q1"),
        events.postback(JANE, ACME, title="Talk to an agent", payload="CARE_HELP", mid="p1"),
        events.referral(JANE, ACME, ref="spring"),
    )
    await connected.process()
    by_source = {m.source_id: m for m in await connected.messages()}
    assert by_source["s1"].content_attributes["story_id"] == "18050000000000009"
    assert by_source["r1"].content_attributes["in_reply_to_external_id"] == "orig"
    assert by_source["r1"].content_attributes["in_reply_to"] == by_source["orig"].id
    assert by_source["q1"].content_attributes["quick_reply_payload"] == "TRACK"
    assert (by_source["p1"].content, by_source["p1"].content_attributes["postback_payload"]) == (
        "Talk to an agent",
        "CARE_HELP",
    )
    referral = next(m for m in by_source.values() if m.message_type == 2)
    assert referral.content_attributes["referral"]["ref"] == "spring"


async def test_echo_of_a_message_sent_from_the_instagram_app(connected: Connected) -> None:
    await connected.deliver(events.text(JANE, ACME, text="hello"))
    await connected.deliver(events.echo(ACME, JANE, text="Hi! Yes it is.", mid="e1"))
    await connected.process()
    echo = next(m for m in await connected.messages() if m.source_id == "e1")
    assert (echo.message_type, echo.status, echo.sender_type) == (1, "sent", None)
    assert echo.content_attributes["external_echo"] is True
    assert (await connected.conversations())[0].unread_count == 1


async def test_read_react_unreact_unsend_and_edit(connected: Connected) -> None:
    await connected.deliver(events.text(JANE, ACME, text="hello", mid="in1"))
    await connected.deliver(events.echo(ACME, JANE, text="answer", mid="out1"))
    await connected.process()
    await connected.deliver(events.read(JANE, ACME, mid="out1"))
    await connected.deliver(events.reaction(JANE, ACME, mid="out1", reaction="love", emoji="❤️"))
    await connected.deliver(events.edit(JANE, ACME, mid="in1", text="hello there", num_edit=1))
    await connected.process()
    by_source = {m.source_id: m for m in await connected.messages()}
    assert by_source["out1"].status == "read"
    assert by_source["out1"].content_attributes["reactions"] == [
        {"emoji": "❤️", "reaction": "love", "from": "contact"}
    ]
    reaction = next(m for m in by_source.values() if m.content_attributes.get("is_reaction"))
    assert (reaction.content, reaction.content_attributes["in_reply_to"]) == ("❤️", by_source["out1"].id)
    assert by_source["in1"].content == "hello there"
    assert by_source["in1"].content_attributes["previous_contents"][0]["content"] == "hello"

    await connected.deliver(events.unreaction(JANE, ACME, mid="out1"))
    await connected.deliver(events.unsend(JANE, ACME, mid="in1"))
    await connected.deliver(
        events.edit(JANE, ACME, mid="in1", text="stale edit", num_edit=1)
    )  # redelivered edit
    await connected.process()
    by_source = {m.source_id: m for m in await connected.messages()}
    assert by_source["out1"].content_attributes["reactions"] == []
    assert by_source["in1"].content is None and by_source["in1"].content_attributes["deleted"] is True
    reaction = next(m for m in by_source.values() if m.content_attributes.get("is_reaction"))
    assert reaction.content is None and reaction.content_attributes["deleted"] is True


async def test_changes_for_messages_we_never_saw_are_handled(connected: Connected, db: AsyncSession) -> None:
    await connected.deliver(
        events.read(JANE, ACME, mid="ghost"),
        events.unsend(JANE, ACME, mid="ghost"),
        events.edit(JANE, ACME, mid="ghost", text="x"),
        events.unreaction(JANE, ACME, mid="ghost"),
    )
    await connected.process()
    assert await db.scalar(select(func.count()).select_from(DeadLetter)) == 0
    assert await connected.messages() == []


async def test_unsupported_and_unknown_kinds_are_kept(connected: Connected) -> None:
    unknown = {
        "sender": {"id": JANE},
        "recipient": {"id": ACME},
        "timestamp": 1767225599876,
        "optin": {"ref": "x"},
    }
    await connected.deliver(events.unsupported(JANE, ACME, mid="u1"), unknown)
    await connected.process()
    kept = await connected.messages()
    assert len(kept) == 2 and all(m.content_attributes["is_unsupported"] for m in kept)


async def test_events_for_unknown_accounts_are_dropped(connected: Connected, db: AsyncSession) -> None:
    await connected.deliver(events.text(JANE, "17841499999999999", text="hi"), business="17841499999999999")
    await connected.process()
    assert await connected.messages() == []
    assert await db.scalar(select(func.count()).select_from(DeadLetter)) == 0


async def test_resolved_conversation_is_reopened_or_replaced(connected: Connected, db: AsyncSession) -> None:
    await connected.deliver(events.text(JANE, ACME, text="first"))
    await connected.process()
    [conversation] = await connected.conversations()
    conversation.status = "resolved"
    await db.commit()
    await connected.deliver(events.text(JANE, ACME, text="again"))
    await connected.process()
    assert [(c.display_id, c.status) for c in await connected.conversations()] == [(1, "open")]

    connected.inbox.lock_to_single_conversation = False
    (await connected.conversations())[0].status = "resolved"
    await db.merge(connected.inbox)
    await db.commit()
    await connected.deliver(events.text(JANE, ACME, text="new topic"))
    await connected.process()
    assert [(c.display_id, c.status) for c in await connected.conversations()] == [
        (1, "resolved"),
        (2, "open"),
    ]


async def test_profile_failure_keeps_the_message_and_enrichment_happens_later(
    connected: Connected, sandbox: SandboxAdmin, db: AsyncSession
) -> None:
    await connected.deliver(events.text(OMAR, ACME, text="from an ad, no consent yet"))
    await connected.process()
    contact = (await db.scalars(select(Contact))).one()
    assert (contact.name, contact.profile_fetched_at) == (OMAR, None)
    assert len(await connected.messages()) == 1

    await sandbox.last_message(OMAR)  # the customer has now messaged: the profile becomes readable
    await sandbox.fault(
        f"/{OMAR}$", times=1, error={"code": 4, "message": "Application request limit reached"}
    )
    await connected.deliver(events.text(OMAR, ACME, text="hello again"))
    await connected.process()
    await db.refresh(contact)
    assert contact.name == "Omar Haddad" and contact.additional_attributes["is_verified_user"] is True


async def test_an_inbox_needing_reauthorization_still_stores_events_without_asking_meta(
    connected: Connected, sandbox: SandboxAdmin, db: AsyncSession
) -> None:
    """Its token is refused, so no profile lookup is tried; the message is stored all the same,
    and the profile is read once the inbox is reconnected."""
    channel = await db.get(ChannelInstagram, connected.inbox.channel_id)
    assert channel is not None
    channel.reauthorization_required = True
    await db.commit()
    await sandbox.last_message(JANE)
    await connected.deliver(events.text(JANE, ACME, text="anyone there?", mid="while-refused"))
    await connected.process()
    assert [m.source_id for m in await connected.messages()] == ["while-refused"]
    contact = (await db.scalars(select(Contact))).one()
    assert (contact.name, contact.profile_fetched_at) == (JANE, None)
    assert await sandbox.requests(path_contains=JANE) == []  # Meta was not asked

    channel.reauthorization_required = False  # reconnected
    await db.commit()
    await connected.deliver(events.text(JANE, ACME, text="hello?", mid="after-reconnect"))
    await connected.process()
    await db.refresh(contact)
    assert contact.name == "Jane Doe" and await sandbox.requests(path_contains=JANE) != []


async def test_downloads_lost_with_redis_after_the_commit_are_queued_by_the_retry(
    connected: Connected, db: AsyncSession, sandbox_url: str, settings: Settings, redis: Any
) -> None:
    """The event is stored, then Redis fails before its download is queued: the job is retried,
    and the retry (which finds the message stored) queues the download."""
    await connected.deliver(events.attachment(JANE, ACME, type="image", url=f"{sandbox_url}/cdn/late.jpg"))
    [job] = await redis.queued_jobs(queue_name=Queue.INBOUND.value)
    unreachable = ArqRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    engine = create_engine(settings)
    ctx = {
        "sessionmaker": create_sessionmaker(engine),
        "redis": unreachable,
        "settings": settings,
        "job_try": 1,
    }
    with pytest.raises(Retry):
        await process_event(ctx, **job.kwargs)
    await unreachable.aclose()
    await engine.dispose()
    [attachment] = await db.scalars(select(Attachment))
    assert attachment.storage_key is None  # stored, not downloaded: its job never reached Redis

    await connected.process()  # arq runs the event's job again
    [attachment] = await db.scalars(select(Attachment))
    assert attachment.storage_key is not None and len(await connected.messages()) == 1
