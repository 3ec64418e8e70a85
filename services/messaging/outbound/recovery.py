"""Replies left in `progress` without a send job get one again.

The API commits a reply, then enqueues its send; if Redis fails in between, the reply has no job.
The outbound worker's sweep (every REPLY_RECOVERY_INTERVAL_SECONDS) reads outgoing replies still
in `progress` with no Instagram id, older than REPLY_RECOVERY_GRACE_SECONDS (a younger one may
still have its enqueue in flight), and looks up each one's send job under its deterministic id:

- queued, deferred, retrying or running: left alone, that job sends it;
- absent (never enqueued, or its kept result expired): enqueued, under the same id;
- finished while the reply is still in `progress` (the job failed for good: parked in the dead
  letters, timed out, or out of tries): its kept result is dropped and the job enqueued again.

Each of these starts is counted in the reply's `send_recoveries`; a reply already started
RECOVERY_LIMIT times is given up instead (failed with the reason, or left to Meta's echo when a
part may have gone out). A reply whose outcome is unknown (`outcome_unknown`) is never touched:
only Meta's echo settles it. The sending itself stays in `service.send`, which never sends a part
twice and keeps the conversation's order and the account's pacing.
"""

from dataclasses import dataclass
from datetime import timedelta

from arq.connections import ArqRedis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.outbound import service as outbound
from shared.db import SessionMaker
from shared.logging import get_logger
from shared.models import Message
from shared.models.message import WAITING_TO_SEND
from shared.queue import SEND_MESSAGE, JobState, enqueue_many, job_states

log = get_logger("outbound.recovery")
RECOVERY_LIMIT = 3
BATCH_SIZE = 500


@dataclass
class RecoveryReport:
    waiting: int = 0  # its send job is queued or running: left to it
    enqueued: int = 0  # given a send job (again)
    given_up: int = 0  # started RECOVERY_LIMIT times already: failed (or left to the echo)

    def add(self, other: "RecoveryReport") -> None:
        self.waiting += other.waiting
        self.enqueued += other.enqueued
        self.given_up += other.given_up


async def recover_batch(
    session: AsyncSession,
    redis: ArqRedis,
    *,
    grace_seconds: float,
    after_id: int = 0,
    limit: int = BATCH_SIZE,
) -> tuple[RecoveryReport, int | None]:
    """One batch of the sweep, replies after `after_id` in id order; also the last id read (None
    when the batch was the last). Replies are locked (SKIP LOCKED), so concurrent sweeps take
    different ones. The jobs are enqueued before the caller commits: a job enqueued whose count
    was lost is harmless, a count kept without its job would give a reply up too soon."""
    stranded = list(
        await session.scalars(
            select(Message)
            .where(
                WAITING_TO_SEND,
                Message.id > after_id,
                Message.content_attributes["outcome_unknown"].as_boolean().is_not(True),
                Message.created_at < func.now() - timedelta(seconds=grace_seconds),
            )
            .order_by(Message.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    report = RecoveryReport()
    starts: dict[JobState, list[Message]] = {JobState.ABSENT: [], JobState.FINISHED: []}
    states = await job_states(redis, SEND_MESSAGE, [str(message.id) for message in stranded])
    for message, state in zip(stranded, states, strict=True):
        if state is JobState.QUEUED:
            report.waiting += 1
            continue
        recoveries = int(message.content_attributes.get("send_recoveries", 0))
        if recoveries >= RECOVERY_LIMIT:
            outbound.give_up(
                session,
                message,
                f"The reply was not sent: its send job stopped {recoveries + 1} times without "
                "sending it (see inboxctl dead-letters list).",
            )
            log.error("reply given up after its send job kept stopping", message_id=message.id)
            report.given_up += 1
            continue
        message.content_attributes = {**message.content_attributes, "send_recoveries": recoveries + 1}
        starts[state].append(message)
        log.warning("reply in progress had no live send job; enqueued it", message_id=message.id, job=state)
    for state, messages in starts.items():
        jobs = [(SEND_MESSAGE, str(m.id), {"message_id": m.id}) for m in messages]
        created = await enqueue_many(redis, jobs, replace_finished=state is JobState.FINISHED)
        report.enqueued += sum(created)
    return report, stranded[-1].id if len(stranded) == limit else None


async def sweep(
    sessionmaker: SessionMaker, redis: ArqRedis, *, grace_seconds: float, limit: int = BATCH_SIZE
) -> RecoveryReport:
    """Every reply waiting to send, batch by batch, each batch in its own transaction."""
    report = RecoveryReport()
    after_id: int | None = 0
    while after_id is not None:
        async with sessionmaker() as session:
            batch, after_id = await recover_batch(
                session, redis, grace_seconds=grace_seconds, after_id=after_id, limit=limit
            )
            await session.commit()
        report.add(batch)
    return report
