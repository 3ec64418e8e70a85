"""Inbound jobs (queue `inbound`): webhook events, contact profiles, attachment downloads."""

import time
from typing import Any

from arq import Retry, func
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.inbound import enrichment, messages
from shared import worker
from shared.queue import DOWNLOAD_ATTACHMENT, ENRICH_CONTACT, PROCESS_EVENT, enqueue
from shared.schemas.events import InboundEvent
from shared.settings import get_settings
from shared.worker import JobContext

MAX_TRIES = 12
ECHO_PATIENCE_TRIES = 4  # an echo racing our own send waits this many tries for the send to finish


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
        await _enqueue_followups(ctx, followups, key)
    except (RedisError, OSError) as error:  # the event is stored; its retry queues what is missing
        raise worker.retry_later(ctx, error) from error


async def _enqueue_followups(ctx: JobContext, followups: messages.Followups, key: str) -> None:
    redis = ctx["redis"]
    if followups.enrich_contact_inbox is not None:
        # Tried again with the contact's messages until the profile is read, at most once a period.
        every = ctx["settings"].PROFILE_RETRY_SECONDS
        key = f"{followups.enrich_contact_inbox}:{int(time.time() // every) if every else key}"
        await enqueue(redis, ENRICH_CONTACT, key=key, contact_inbox_id=followups.enrich_contact_inbox)
    for attachment_id in followups.downloads:
        await enqueue(redis, DOWNLOAD_ATTACHMENT, key=str(attachment_id), attachment_id=attachment_id)


async def enrich_contact(ctx: JobContext, contact_inbox_id: int) -> None:
    async def work(session: AsyncSession) -> None:
        await enrichment.enrich_contact(
            session, ctx["graph"], ctx["settings"], contact_inbox_id=contact_inbox_id
        )

    kwargs = {"contact_inbox_id": contact_inbox_id}
    await worker.run_job(
        ctx, job=ENRICH_CONTACT, key=str(contact_inbox_id), kwargs=kwargs, max_tries=MAX_TRIES, work=work
    )


async def download_attachment(ctx: JobContext, attachment_id: int) -> None:
    async def work(session: AsyncSession) -> None:
        await enrichment.download_attachment(
            session, ctx["graph"], ctx["storage"], attachment_id=attachment_id
        )

    kwargs = {"attachment_id": attachment_id}
    await worker.run_job(
        ctx, job=DOWNLOAD_ATTACHMENT, key=str(attachment_id), kwargs=kwargs, max_tries=MAX_TRIES, work=work
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
