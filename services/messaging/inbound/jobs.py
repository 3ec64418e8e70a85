"""Inbound jobs (queue `inbound`): webhook events, contact profiles, attachment downloads."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry, func
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.inbound import enrichment, messages
from shared import worker
from shared.logging import get_logger
from shared.queue import DOWNLOAD_ATTACHMENT, ENRICH_CONTACT, PROCESS_EVENT, Job, enqueue_many
from shared.schemas.events import InboundEvent
from shared.settings import get_settings
from shared.worker import JobContext

log = get_logger("inbound")
MAX_TRIES = 12
ECHO_PATIENCE_TRIES = 4  # an echo racing our own send waits this many tries for the send to finish


# Profile lookups and downloads hold a database connection while Meta answers: this many at once
# per worker, so that batches of messages always find one in the pool (20 + 10 overflow).
META_CALLS_AT_ONCE = 16


async def store_events(ctx: JobContext, jobs: list[dict[str, Any]]) -> list[bool]:
    """`process_event` jobs many at a time (see worker.Batch): customers' messages and postbacks
    are stored in one transaction, a few statements and one enqueue of follow-up jobs for all.
    Other kinds, and every event of a batch that fails, are handled one by one by `process_event`."""
    parsed = [_batchable(job.get("event")) for job in jobs]
    events = [event for event in parsed if event is not None]
    if events:
        followups = messages.Followups()
        async with ctx["sessionmaker"]() as session:
            await messages.store_incoming(session, events, followups)
            await session.commit()
        await _enqueue_followups(ctx, followups)  # when this fails, the jobs' own runs queue them
    return [event is not None for event in parsed]


def _batchable(event: Any) -> InboundEvent | None:
    if not isinstance(event, dict) or event.get("kind") not in messages.BATCHED_KINDS:
        return None
    try:
        return InboundEvent.model_validate(event)
    except ValueError:  # parked by its own run
        return None


async def process_event(ctx: JobContext, event: dict[str, Any]) -> None:
    key = str(event.get("key"))

    async def work(session: AsyncSession) -> messages.Followups:
        parsed = InboundEvent.model_validate(event)  # inside run_job: a malformed event is parked
        patient = ctx["job_try"] <= ECHO_PATIENCE_TRIES
        try:
            return await messages.Handler(session, parsed, echo_patience=patient).run()
        except messages.EchoMayBeOurs as racing:  # give our own send time to record Meta's id
            raise Retry(defer=0.5 * ctx["job_try"]) from racing

    followups = await worker.run_job(
        ctx, job=PROCESS_EVENT, key=key, kwargs={"event": event}, max_tries=MAX_TRIES, work=work
    )
    if followups is None:
        return
    try:
        await _enqueue_followups(ctx, followups)
    except (RedisError, OSError) as error:  # the event is stored; its retry queues what is missing
        raise worker.retry_later(ctx, error) from error


async def _enqueue_followups(ctx: JobContext, followups: messages.Followups) -> None:
    # A profile is tried again with the contact's messages until it is read, at most once a period.
    every = ctx["settings"].PROFILE_RETRY_SECONDS
    period = int(time.time() // every) if every else time.time_ns()
    jobs: list[tuple[Job, str, dict[str, Any]]] = [
        (ENRICH_CONTACT, f"{ci}:{period}", {"contact_inbox_id": ci}) for ci in sorted(followups.enrich)
    ]
    jobs += [(DOWNLOAD_ATTACHMENT, str(a), {"attachment_id": a}) for a in followups.downloads]
    await enqueue_many(ctx["redis"], jobs)


async def startup(ctx: JobContext) -> None:
    await worker.startup(ctx)
    ctx["meta_calls"] = asyncio.Semaphore(META_CALLS_AT_ONCE)


async def enrich_contact(ctx: JobContext, contact_inbox_id: int) -> None:
    async def work(session: AsyncSession) -> None:
        await enrichment.enrich_contact(
            session, ctx["graph"], ctx["settings"], contact_inbox_id=contact_inbox_id
        )

    await _asking_meta(ctx, ENRICH_CONTACT, {"contact_inbox_id": contact_inbox_id}, work)


async def download_attachment(ctx: JobContext, attachment_id: int) -> None:
    async def work(session: AsyncSession) -> None:
        await enrichment.download_attachment(
            session, ctx["graph"], ctx["storage"], attachment_id=attachment_id
        )

    await _asking_meta(ctx, DOWNLOAD_ATTACHMENT, {"attachment_id": attachment_id}, work)


async def _asking_meta(
    ctx: JobContext, job: Job, kwargs: dict[str, int], work: Callable[[AsyncSession], Awaitable[None]]
) -> None:
    """A follow-up job about one row (its id is the job's key), at most META_CALLS_AT_ONCE at once."""
    (key,) = kwargs.values()
    async with ctx["meta_calls"]:
        await worker.run_job(ctx, job=job, key=str(key), kwargs=kwargs, max_tries=MAX_TRIES, work=work)


FUNCTIONS = [
    func(
        process_event,
        name=PROCESS_EVENT.name,
        max_tries=MAX_TRIES + ECHO_PATIENCE_TRIES,
        timeout=get_settings().JOB_TIMEOUT_SECONDS,
    ),
    func(
        enrich_contact,
        name=ENRICH_CONTACT.name,
        max_tries=MAX_TRIES,
        timeout=get_settings().JOB_TIMEOUT_SECONDS,
    ),
    func(
        download_attachment,
        name=DOWNLOAD_ATTACHMENT.name,
        max_tries=MAX_TRIES,
        timeout=2 * get_settings().JOB_TIMEOUT_SECONDS,
    ),
]
BATCHES = [worker.Batch(PROCESS_EVENT.name, store_events, size=200)]
