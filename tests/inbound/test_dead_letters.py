from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox import events
from shared.models import DeadLetter
from shared.queue import PROCESS_EVENT, enqueue
from shared.schemas.events import split_delivery
from tests.inbound.conftest import ACME, JANE, Connected
from tests.support import inboxctl


async def test_a_malformed_event_is_parked_not_lost_and_a_parked_event_can_be_replayed(
    connected: Connected, redis: ArqRedis, db: AsyncSession
) -> None:
    await enqueue(redis, PROCESS_EVENT, key="broken", event={"key": "broken", "kind": "message"})
    await connected.process()
    parked = (await db.scalars(select(DeadLetter))).one()
    assert (parked.job_name, parked.job_key) == ("process_event", "broken")
    assert "ValidationError" in parked.error

    [event] = split_delivery(
        events.envelope(events.entry(ACME, events.text(JANE, ACME, text="parked", mid="pk")))
    )
    good = DeadLetter(
        job_name="process_event",
        job_key=event.key,
        kwargs={"event": event.model_dump(mode="json")},
        error="x",
    )
    db.add(good)
    await db.commit()

    listed = inboxctl("dead-letters", "list")
    assert "process_event\tbroken" in listed.stdout
    replayed = inboxctl("dead-letters", "replay", str(good.id))
    assert replayed.returncode == 0, replayed.stderr
    await connected.process()
    assert [m.content for m in await connected.messages()] == ["parked"]
    await db.refresh(good)
    assert good.replayed_at is not None
    assert inboxctl("dead-letters", "replay", "999999").returncode == 2
