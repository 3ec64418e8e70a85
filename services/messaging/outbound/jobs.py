"""Outbound jobs (queue `outbound`): replies go out through the Instagram Send API."""

import asyncio
import time
from dataclasses import asdict

from arq import Retry, cron, func
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.outbound import recovery
from services.messaging.outbound import service as outbound
from shared import queue, worker
from shared.graph import GraphTransientError
from shared.logging import get_logger
from shared.models import Message
from shared.queue import SEND_MESSAGE
from shared.settings import get_settings
from shared.worker import JobContext

log = get_logger("outbound")
MAX_TRIES = 12
# Deferrals (ordering, rate limit) are retries too; allow many before giving up.
MAX_JOB_TRIES = 1000
CHAIN_LIMIT = 20  # replies of one conversation sent by one job after its own
# A chained reply whose send slot is this close is waited for in the job (holding no database
# connection meanwhile), so a busy account's conversations keep moving at its pace.
CHAIN_WAIT_SECONDS = 2.0


async def send_message(ctx: JobContext, message_id: int) -> None:
    """Send the reply; then, while things go smoothly, the conversation's next waiting replies
    (each would otherwise wait for its own job to check back)."""
    next_id = await _send(ctx, message_id)
    timeout = ctx["settings"].JOB_TIMEOUT_SECONDS
    stop_at = time.monotonic() + timeout / 2  # well within the job's timeout
    hidden = False
    for _ in range(2 * CHAIN_LIMIT):  # sends and waits
        if next_id is None:
            return
        if time.monotonic() > stop_at:
            break
        try:
            sent_id, next_id = next_id, await _send(ctx, next_id)
        except Retry as retry:  # not now
            wait = _deferred_seconds(retry)
            if wait is None or wait > CHAIN_WAIT_SECONDS:
                # That reply's own job takes it from here, in time: it may be deferred for longer.
                due = (retry.defer_score or 0) / 1000
                await queue.reschedule(ctx["redis"], SEND_MESSAGE, key=str(next_id), seconds=due, later=False)
                return
            if not hidden:
                await queue.reschedule(
                    ctx["redis"], SEND_MESSAGE, key=str(message_id), seconds=timeout, later=True
                )
                hidden = True
            await asyncio.sleep(wait)
            continue
        await queue.drop_waiting(ctx["redis"], SEND_MESSAGE, key=str(sent_id))  # its own job: nothing left
    if next_id is not None:  # the chain ends here: that reply's own job takes over now
        await queue.reschedule(ctx["redis"], SEND_MESSAGE, key=str(next_id), seconds=0, later=False)


def _deferred_seconds(retry: Retry) -> float | None:
    """How long a deferral (ordering, pacing) asks to wait; None for a retry after a failure."""
    deferred = retry.__cause__
    return deferred.seconds if isinstance(deferred, outbound.Deferred) else None


async def _send(ctx: JobContext, message_id: int) -> int | None:
    async def work(session: AsyncSession) -> int | None:
        app = await ctx["app_config"].get()  # inside run_job: a database outage here is retried
        try:
            return await outbound.send(
                session, ctx["graph"], ctx["redis"], ctx["settings"], app, message_id=message_id
            )
        except outbound.Deferred as deferred:
            await session.commit()  # keep the parts already sent
            raise Retry(defer=deferred.seconds) from deferred
        except GraphTransientError as error:
            message = await session.get(Message, message_id)
            assert message is not None
            failures = int(message.content_attributes.get("send_failures", 0)) + 1
            message.content_attributes = {**message.content_attributes, "send_failures": failures}
            if failures >= MAX_TRIES:
                outbound.fail(session, message, f"Instagram kept failing: {error.message}")
                return None
            await session.commit()  # keep the parts already sent, and the count
            raise Retry(defer=worker.backoff(failures, hint=error.retry_after)) from error

    return await worker.run_job(
        ctx,
        job=SEND_MESSAGE,
        key=str(message_id),
        kwargs={"message_id": message_id},
        max_tries=MAX_JOB_TRIES,
        work=work,
    )


async def recover_replies(ctx: JobContext) -> dict[str, int]:
    """The recovery sweep (see recovery.py): replies in progress without a live send job get one."""
    report = await recovery.sweep(
        ctx["sessionmaker"], ctx["redis"], grace_seconds=ctx["settings"].REPLY_RECOVERY_GRACE_SECONDS
    )
    if report.enqueued or report.given_up:
        log.info("reply recovery done", **asdict(report))
    return asdict(report)


FUNCTIONS = [
    func(
        send_message,
        name=SEND_MESSAGE.name,
        max_tries=MAX_JOB_TRIES,
        timeout=get_settings().JOB_TIMEOUT_SECONDS,
    )
]
# Several outbound workers each schedule the sweep; `unique` gives each run one job id, so one
# worker runs it (and overlapping runs would take different replies: rows are locked SKIP LOCKED).
CRON_JOBS = [
    cron(
        recover_replies,
        name="recover_replies",
        second=worker.cron_steps(get_settings().REPLY_RECOVERY_INTERVAL_SECONDS),
        unique=True,
        timeout=get_settings().JOB_TIMEOUT_SECONDS,
    )
]
