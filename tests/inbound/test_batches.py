"""Customers' messages from concurrent jobs are stored together, and a batch that fails loses nothing."""

from typing import Any

import pytest
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox import events
from services.messaging.inbound.jobs import store_events
from shared.db import create_engine, create_sessionmaker
from shared.models import Attachment, Contact, Conversation, DeadLetter, WebhookEvent
from shared.queue import Queue
from shared.settings import Settings
from tests.inbound.conftest import ACME, Connected
from tests.support import free_port

CUSTOMERS = [f"11900000000{n:05d}" for n in range(20)]


async def test_a_burst_from_many_new_customers_is_stored_in_few_transactions(
    connected: Connected, db: AsyncSession
) -> None:
    for round_ in range(3):
        await connected.deliver(*(events.text(c, ACME, text=f"{c} #{round_}") for c in CUSTOMERS))
    await connected.process()

    messages = await connected.messages()
    assert len(messages) == 60
    transactions = await db.scalar(text("SELECT count(DISTINCT xmin::text) FROM messages"))
    assert transactions is not None and transactions <= 30  # batched: far fewer commits than events
    conversations = await connected.conversations()
    assert [c.display_id for c in conversations] == list(range(1, 21))  # no gaps, no repeats
    assert {c.unread_count for c in conversations} == {3}
    assert await db.scalar(select(func.count()).select_from(Contact)) == 20
    by_conversation = {c.id: c for c in conversations}
    assert all(by_conversation[m.conversation_id].contact_id == m.sender_id for m in messages)

    emitted = list(await db.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
    first: dict[tuple[str, int], int] = {}
    for position, event in enumerate(emitted):
        (subject_id,) = (v for k, v in event.payload["subject"].items() if k != "inbox_id")
        first.setdefault((event.event, subject_id), position)
    assert [e.event for e in emitted].count("message_created") == 60
    for conversation in conversations:  # announced in order: the contact, its conversation, messages
        assert (
            first["contact_created", conversation.contact_id] < first["conversation_created", conversation.id]
        )
    for message in messages:
        assert first["conversation_created", message.conversation_id] < first["message_created", message.id]


async def test_an_event_that_breaks_its_batch_is_parked_and_the_others_are_stored(
    connected: Connected, db: AsyncSession
) -> None:
    good = [events.text(c, ACME, text="fine") for c in CUSTOMERS[:8]]
    broken = events.text(CUSTOMERS[8], ACME, text="from the year 3 million", timestamp=10**17)
    await connected.deliver(*good[:4], broken, *good[4:])
    await connected.process()

    assert [m.content for m in await connected.messages()] == ["fine"] * 8
    [parked] = await db.scalars(select(DeadLetter))
    assert parked.job_name == "process_event" and "year" in parked.error
    assert parked.kwargs["event"]["item"]["message"]["text"] == "from the year 3 million"


async def test_a_resolved_conversation_gets_the_customers_next_message_by_reopening(
    connected: Connected, db: AsyncSession
) -> None:
    await connected.deliver(events.text(CUSTOMERS[0], ACME, text="first"))
    await connected.process()
    [conversation] = await connected.conversations()
    conversation.status = "resolved"
    await db.commit()

    await connected.deliver(*(events.text(CUSTOMERS[0], ACME, text=f"again {i}") for i in range(3)))
    await connected.process()
    [conversation] = await connected.conversations()
    assert (conversation.status, conversation.unread_count) == ("open", 4)
    changed = await db.scalars(
        select(WebhookEvent).where(WebhookEvent.event == "conversation_status_changed")
    )
    assert [e.payload["changed_attributes"] for e in changed] == [{"status": ["resolved", "open"]}]


async def test_a_batchs_downloads_lost_with_redis_are_queued_by_the_jobs_retries(
    connected: Connected, db: AsyncSession, sandbox_url: str, settings: Settings, redis: Any
) -> None:
    """The batch is stored, then Redis fails before its downloads are queued: the jobs run again,
    find their messages stored and queue the downloads."""
    await connected.deliver(
        *(events.attachment(c, ACME, type="image", url=f"{sandbox_url}/cdn/{c}.jpg") for c in CUSTOMERS[:3])
    )
    jobs = await redis.queued_jobs(queue_name=Queue.INBOUND.value)
    unreachable = ArqRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    engine = create_engine(settings)
    ctx: dict[str, Any] = {
        "sessionmaker": create_sessionmaker(engine),
        "redis": unreachable,
        "settings": settings,
        "job_try": 1,
    }
    try:
        with pytest.raises(RedisError):
            await store_events(ctx, [job.kwargs for job in jobs])
    finally:
        await unreachable.aclose()
        await engine.dispose()
    attachments = list(await db.scalars(select(Attachment)))
    assert len(attachments) == 3 and all(a.storage_key is None for a in attachments)

    await connected.process()  # arq runs the events' jobs again
    db.expire_all()
    attachments = list(await db.scalars(select(Attachment)))
    assert all(a.storage_key is not None for a in attachments) and len(await connected.messages()) == 3
    assert await db.scalar(select(func.count()).select_from(Conversation)) == 3
