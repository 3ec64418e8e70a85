"""Inbound jobs (queue `inbound`): webhook events, contact profiles, attachment downloads."""

import asyncio
import contextlib
import time
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


MAX_BATCH = 200  # events handled in one transaction
# Profile lookups and downloads hold a database connection while Meta answers: this many at once
# per worker, so that batches of messages always find one in the pool (20 + 10 overflow).
META_CALLS_AT_ONCE = 16


class BatchFailed(Exception):
    """The batch this event was in could not be stored; the event is handled on its own."""


class Batcher:
    """Customers' messages from concurrent jobs are stored together: one transaction, a few
    statements and one enqueue of follow-up jobs for all the events waiting when the previous
    batch finished. Under load batches grow by themselves; an idle worker handles an event at
    once. Each job still waits for its own event, so arq's retries and results work as before."""

    def __init__(self, ctx: JobContext) -> None:
        self._ctx = ctx
        self._waiting: list[tuple[InboundEvent, asyncio.Future[None]]] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def submit(self, event: InboundEvent) -> None:
        """Returns once the event is stored and its follow-ups queued; BatchFailed when it is not."""
        if self._task.done():  # closed: shutting down
            raise BatchFailed("the batcher is closed")
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        self._arrived.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            await asyncio.sleep(0)  # jobs started by the same poll join this batch
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                outcome = await self._store([event for event, _ in batch])
                for _, future in batch:
                    if future.done():  # the job was cancelled; its event is stored anyway
                        continue
                    if outcome is None:
                        future.set_result(None)
                    else:
                        future.set_exception(outcome)

    async def _store(self, events: list[InboundEvent]) -> Exception | None:
        followups = messages.Followups()
        try:
            async with self._ctx["sessionmaker"]() as session:
                await messages.store_incoming(session, events, followups)
                await session.commit()
        except Exception as error:  # one bad event, a deadlock, Postgres away: each event on its own
            log.warning(
                "batch not stored; its events are handled one by one", size=len(events), error=repr(error)
            )
            return BatchFailed(repr(error))
        try:
            await _enqueue_followups(self._ctx, followups)
        except Exception as error:  # stored; each job's retry queues what is missing
            return error
        return None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def process_event(ctx: JobContext, event: dict[str, Any]) -> None:
    key = str(event.get("key"))
    batcher: Batcher | None = ctx.get("batcher")
    if batcher is not None and ctx["job_try"] == 1 and event.get("kind") in messages.BATCHED_KINDS:
        try:
            parsed = InboundEvent.model_validate(event)
        except ValueError:
            pass  # parked below
        else:
            try:
                await batcher.submit(parsed)
                return
            except BatchFailed:
                pass  # handled on its own below
            except (RedisError, OSError) as error:
                raise worker.retry_later(ctx, error) from error

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
    ctx["batcher"] = Batcher(ctx)
    ctx["meta_calls"] = asyncio.Semaphore(META_CALLS_AT_ONCE)


async def shutdown(ctx: JobContext) -> None:
    batcher: Batcher | None = ctx.pop("batcher", None)
    if batcher is not None:
        await batcher.close()
    await worker.shutdown(ctx)


async def enrich_contact(ctx: JobContext, contact_inbox_id: int) -> None:
    async def work(session: AsyncSession) -> None:
        await enrichment.enrich_contact(
            session, ctx["graph"], ctx["settings"], contact_inbox_id=contact_inbox_id
        )

    kwargs = {"contact_inbox_id": contact_inbox_id}
    async with ctx["meta_calls"]:
        await worker.run_job(
            ctx, job=ENRICH_CONTACT, key=str(contact_inbox_id), kwargs=kwargs, max_tries=MAX_TRIES, work=work
        )


async def download_attachment(ctx: JobContext, attachment_id: int) -> None:
    async def work(session: AsyncSession) -> None:
        await enrichment.download_attachment(
            session, ctx["graph"], ctx["storage"], attachment_id=attachment_id
        )

    kwargs = {"attachment_id": attachment_id}
    async with ctx["meta_calls"]:
        await worker.run_job(
            ctx,
            job=DOWNLOAD_ATTACHMENT,
            key=str(attachment_id),
            kwargs=kwargs,
            max_tries=MAX_TRIES,
            work=work,
        )


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
