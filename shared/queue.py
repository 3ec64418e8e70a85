"""Queues and jobs. Producers import job declarations from here, never worker code."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from shared.settings import Settings


class Queue(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    MAINTENANCE = "maintenance"
    EVENTS = "events"


@dataclass(frozen=True)
class Job:
    name: str
    queue: Queue


# inbound: one Meta webhook event each. kwargs: event (dict, see shared.schemas.events.InboundEvent)
PROCESS_EVENT = Job("process_event", Queue.INBOUND)
# inbound: fetch an Instagram profile for a contact. kwargs: contact_inbox_id
ENRICH_CONTACT = Job("enrich_contact", Queue.INBOUND)
# inbound: copy an attachment from Meta's CDN into our storage. kwargs: attachment_id
DOWNLOAD_ATTACHMENT = Job("download_attachment", Queue.INBOUND)
# outbound: send one stored outgoing message. kwargs: message_id
SEND_MESSAGE = Job("send_message", Queue.OUTBOUND)
# maintenance: subscribe a channel to Meta webhooks. kwargs: channel_id
SUBSCRIBE_WEBHOOKS = Job("subscribe_webhooks", Queue.MAINTENANCE)
# maintenance: refresh due tokens now. kwargs: none
REFRESH_TOKENS = Job("refresh_tokens", Queue.MAINTENANCE)
# events: deliver account webhook events. kwargs: event_id
DELIVER_EVENT = Job("deliver_event", Queue.EVENTS)


ALL_JOBS = (
    PROCESS_EVENT,
    ENRICH_CONTACT,
    DOWNLOAD_ATTACHMENT,
    SEND_MESSAGE,
    SUBSCRIBE_WEBHOOKS,
    REFRESH_TOKENS,
    DELIVER_EVENT,
)
JOBS = {job.name: job for job in ALL_JOBS}


def job_id(job: Job, key: str) -> str:
    return f"{job.name}:{key}"


async def enqueue(
    redis: ArqRedis, job: Job, *, key: str, defer_by: float | None = None, **kwargs: Any
) -> bool:
    """At most one job per key. False: the same job is queued, running, or just finished."""
    created = await redis.enqueue_job(
        job.name, _job_id=job_id(job, key), _queue_name=job.queue.value, _defer_by=defer_by, **kwargs
    )
    return created is not None


# Enqueue several jobs in one round trip, exactly as arq's enqueue_job would (same keys, same
# serialized job, same expiry): skip a job whose id is queued, running or has a kept result.
# With ARGV[3] == '1' a kept result does not block: it is dropped and the job enqueued again.
ENQUEUE_MANY = """
local replace_finished = ARGV[3] == '1'
local created = {}
for i = 4, #ARGV, 3 do
  local queue, id, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local blocked = redis.call('EXISTS', 'arq:job:' .. id) == 1
    or (not replace_finished and redis.call('EXISTS', 'arq:result:' .. id) == 1)
  if blocked then
    created[#created + 1] = 0
  else
    redis.call('DEL', 'arq:result:' .. id)
    redis.call('PSETEX', 'arq:job:' .. id, ARGV[2], payload)
    redis.call('ZADD', queue, ARGV[1], id)
    created[#created + 1] = 1
  end
end
return created
"""


def enqueue_many_command(
    redis: ArqRedis, jobs: list[tuple[Job, str, dict[str, Any]]], *, replace_finished: bool = False
) -> list[Any]:
    """The Redis command of `enqueue_many`, for a caller that sends it on its own connection."""
    now_ms = timestamp_ms()
    command: list[Any] = ["EVAL", ENQUEUE_MANY, 0, now_ms, redis.expires_extra_ms, int(replace_finished)]
    for job, key, kwargs in jobs:
        payload = serialize_job(job.name, (), kwargs, None, now_ms, serializer=redis.job_serializer)
        command += [job.queue.value, job_id(job, key), payload]
    return command


async def enqueue_many(
    redis: ArqRedis, jobs: list[tuple[Job, str, dict[str, Any]]], *, replace_finished: bool = False
) -> list[bool]:
    """Like `enqueue` for each (job, key, kwargs), atomically and in one round trip.
    `replace_finished`: a job that finished (its result is kept) is enqueued again."""
    if not jobs:
        return []
    created = await redis.execute_command(
        *enqueue_many_command(redis, jobs, replace_finished=replace_finished)
    )
    return [bool(flag) for flag in created]


class JobState(StrEnum):
    QUEUED = "queued"  # waiting, deferred, retrying or running
    FINISHED = "finished"  # done; its kept result blocks a new job under the same id
    ABSENT = "absent"  # no trace: never enqueued, or its result expired


async def job_states(redis: ArqRedis, job: Job, keys: list[str]) -> list[JobState]:
    """Where each job (by key) stands, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.exists(job_key_prefix + job_id(job, key))
            pipe.exists(result_key_prefix + job_id(job, key))
        flags = await pipe.execute()
    return [
        JobState.QUEUED if queued else JobState.FINISHED if finished else JobState.ABSENT
        for queued, finished in zip(flags[::2], flags[1::2], strict=True)
    ]


# Drop a waiting job as if it had never been enqueued (arq's keys); a running one is left alone.
DROP_WAITING = """
if redis.call('EXISTS', 'arq:in-progress:' .. ARGV[2]) == 1 then
  return 0
end
redis.call('ZREM', ARGV[1], ARGV[2])
return redis.call('DEL', 'arq:job:' .. ARGV[2], 'arq:retry:' .. ARGV[2])
"""


async def drop_waiting(redis: ArqRedis, job: Job, *, key: str) -> bool:
    """Remove a queued (or deferred) job whose work another job has done. False: none was
    waiting, or it is running (it then finds nothing to do)."""
    dropped = await redis.eval(DROP_WAITING, 0, job.queue.value, job_id(job, key))  # type: ignore[misc]
    return bool(dropped)


async def reschedule(redis: ArqRedis, job: Job, *, key: str, seconds: float, later: bool) -> None:
    """Have a job already in its queue picked up `seconds` from now, if that is later (`later`)
    or sooner than planned; a job no longer queued stays out. arq leaves a running job in its
    queue, where every poll of every worker checks it again: a job about to wait in process moves
    itself out of sight until its timeout, when its running mark expires too."""
    score = timestamp_ms() + int(seconds * 1000)
    await redis.zadd(job.queue.value, {job_id(job, key): score}, xx=True, gt=later, lt=not later)


def redis_settings_from(settings: Settings) -> RedisSettings:
    """Workers ride out a Redis restart: commands retry with backoff for about half a minute."""
    redis_settings = RedisSettings.from_dsn(settings.REDIS_URL)
    redis_settings.retry_on_timeout = True
    redis_settings.retry_on_error = [ConnectionError, TimeoutError]
    redis_settings.retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=25)
    redis_settings.conn_retries = 30
    return redis_settings


async def create_redis(settings: Settings) -> ArqRedis:
    redis_settings = RedisSettings.from_dsn(settings.REDIS_URL)
    redis_settings.conn_timeout = 2
    redis_settings.conn_retries = 0
    return await create_pool(redis_settings)
