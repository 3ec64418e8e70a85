"""What every arq worker shares: the worker itself, start-up state, job logging, backoff and the
dead-letter list.

Each worker module declares its own `WorkerSettings` class and assigns every field there:
arq ignores attributes inherited from a base class. `inboxctl worker <settings>` runs one.
"""

import asyncio
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import arq.worker
import structlog
from arq import Retry
from arq.cron import CronJob
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import import_string, timestamp_ms
from arq.worker import Function
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession

from shared.app import open_state
from shared.graph import GraphTransientError
from shared.logging import configure_logging, get_logger
from shared.models import DeadLetter
from shared.queue import Job
from shared.settings import get_settings
from shared.storage import StorageUnavailable

JobContext = dict[str, Any]
T = TypeVar("T")
log = get_logger("worker")

# arq's defaults (poll_delay 0.5 s, max_jobs 10) cap a worker near 200 jobs/s; these reach thousands.
POLL_DELAY_SECONDS = 0.02
MAX_JOBS = 100
# On SIGTERM a worker takes no new job and gives running ones this long to finish (compose waits 30 s).
SHUTDOWN_WAIT_SECONDS = 20
MAX_BACKOFF_SECONDS = 3600.0
# serialization failure, deadlock; connection exceptions (08...), shutdowns (57P0x), out of resources (53...)
RETRYABLE_SQLSTATE_PREFIXES = ("40001", "40P01", "08", "57P0", "53")


# Claim up to ARGV[3] due jobs in one round trip, each exactly as arq claims one: still queued,
# due, and not in progress in any worker, it is marked in progress for the job timeout. The first
# ARGV[5] due jobs are scanned, past those that other workers hold. Returns id, score pairs; with
# ARGV[4] == '1', id, score, job, try count quadruples.
CLAIM = """
local claimed, wanted = {}, tonumber(ARGV[3])
local width = ARGV[4] == '1' and 4 or 2
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[5])
for i = 1, #due, 2 do
  if #claimed >= width * wanted then break end
  local id = due[i]
  if redis.call('EXISTS', 'arq:in-progress:' .. id) == 0 then
    redis.call('PSETEX', 'arq:in-progress:' .. id, ARGV[2], '1')
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = due[i + 1]
    if width == 4 then
      claimed[#claimed + 1] = redis.call('GET', 'arq:job:' .. id)
      claimed[#claimed + 1] = redis.call('GET', 'arq:retry:' .. id)
    end
  end
end
return claimed
"""

# A batch starts: its jobs' first try is counted (a worker that dies in the batch leaves them to
# run on their own). ARGV: the ids.
START_BATCH = """
for i = 1, #ARGV do
  redis.call('SET', 'arq:retry:' .. ARGV[i], '1', 'EX', 88400)
end
"""

# A batch ends. The jobs it finished leave the queue with their results, exactly as arq finishes a
# job; the others get their try back and stay in progress while they run on their own.
# ARGV: result expiry ms (0: none kept, -1: kept for ever), in-progress ms, count of finished,
# then id, result pairs for the finished, then the others' ids.
FINISH_BATCH = """
local expiry, finished = tonumber(ARGV[1]), tonumber(ARGV[3])
for i = 4, 3 + 2 * finished, 2 do
  local id = ARGV[i]
  if expiry > 0 then
    redis.call('PSETEX', 'arq:result:' .. id, expiry, ARGV[i + 1])
  elseif expiry < 0 then
    redis.call('SET', 'arq:result:' .. id, ARGV[i + 1])
  end
  redis.call('DEL', 'arq:retry:' .. id, 'arq:in-progress:' .. id, 'arq:job:' .. id)
  redis.call('ZREM', 'arq:abort', id)
  redis.call('ZREM', KEYS[1], id)
end
for i = 4 + 2 * finished, #ARGV do
  redis.call('DEL', 'arq:retry:' .. ARGV[i])
  redis.call('PEXPIRE', 'arq:in-progress:' .. ARGV[i], ARGV[2])
end
"""


@dataclass(frozen=True)
class Batch:
    """A job function whose queued jobs a worker can also take many at a time (a settings class's
    `batches`): `handle` gets their kwargs and answers, for each, whether it is done. Only jobs on
    their first try are batched. A job the batch did not finish (or all of them, when `handle`
    raises or runs past the function's timeout) runs on its own at once, as arq runs any job, with
    its retries, timeout and result; a worker that dies in a batch leaves its jobs to run alone."""

    function: str
    handle: Callable[[JobContext, list[dict[str, Any]]], Awaitable[list[bool]]]
    size: int = 200


@dataclass(frozen=True)
class Claimed:
    """A claimed job of a batched function."""

    id: str
    score: int
    function: str
    kwargs: dict[str, Any]
    enqueued_ms: int


class Worker(arq.worker.Worker):
    """arq's worker, but the due jobs of a poll are claimed in one round trip, not four per job one
    after the other, and jobs of a `Batch` function are handled many at a time, in three round
    trips for the batch instead of five per job. Jobs stay queued while they run, so the claim
    scans as many due jobs as arq would read (five times the slots) past those other workers
    hold; arq's own read only asks whether any job is due."""

    def __init__(self, *args: Any, batches: Sequence[Batch] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches = {batch.function: batch for batch in batches}
        self.claim_scan, self.queue_read_limit = self.queue_read_limit, 1

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        timeout_ms = int(self.in_progress_timeout_s * 1000)
        with_jobs = bool(self.batches)
        argv = [str(n) for n in (timestamp_ms(), timeout_ms, free, int(with_jobs), self.claim_scan)]
        claimed = await self.pool.eval(CLAIM, 1, self.queue_name, *argv)  # type: ignore[misc]
        width = 4 if with_jobs else 2
        batched: dict[str, list[Claimed]] = defaultdict(list)
        for n in range(0, len(claimed), width):
            await self.sem.acquire()
            self.job_counter += 1
            job_id, score = claimed[n].decode(), int(float(claimed[n + 1]))
            job = self._batchable(job_id, score, *claimed[n + 2 : n + 4]) if with_jobs else None
            if job is None:
                self._spawn([job_id], self.run_job(job_id, score))
            else:
                batched[job.function].append(job)
        for name, jobs in batched.items():
            batch = self.batches[name]
            for start in range(0, len(jobs), batch.size):
                chunk = jobs[start : start + batch.size]
                self._spawn([job.id for job in chunk], self._run_batch(batch, chunk))

    def _batchable(
        self, job_id: str, score: int, payload: bytes | None, tries: bytes | None
    ) -> Claimed | None:
        if payload is None or tries is not None:  # expired, or tried before: arq's own path
            return None
        try:
            name, args, kwargs, enqueue_try, enqueued_ms = deserialize_job_raw(
                payload, deserializer=self.job_deserializer
            )
        except SerializationError:
            return None
        if name not in self.batches or args or (enqueue_try or 1) > 1:
            return None
        return Claimed(job_id, score, name, kwargs, enqueued_ms)

    def _spawn(self, job_ids: list[str], work: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(work)
        for job_id in job_ids:
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def _run_batch(self, batch: Batch, jobs: list[Claimed]) -> None:
        function = self.functions[batch.function]
        timeout = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        ids = [job.id for job in jobs]
        await self.pool.eval(START_BATCH, 0, *ids)  # type: ignore[misc]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(job_id=ids[0], batch=len(ids), job_try=1)
        start_ms = timestamp_ms()
        try:
            done = await asyncio.wait_for(batch.handle(self.ctx, [job.kwargs for job in jobs]), timeout)
        except Exception as error:
            log.warning("batch failed; its jobs run one by one", function=batch.function, error=repr(error))
            done = [False] * len(jobs)
        finished = [job for job, ok in zip(jobs, done, strict=True) if ok]
        others = [job for job, ok in zip(jobs, done, strict=True) if not ok]
        await asyncio.shield(self._finish_batch(function, finished, others, start_ms))
        self.jobs_complete += len(finished)
        await asyncio.gather(*(self.run_job(job.id, job.score) for job in others))

    async def _finish_batch(
        self, function: Function | CronJob, finished: list[Claimed], others: list[Claimed], start_ms: int
    ) -> None:
        forever, keep_s = function.keep_result_forever, function.keep_result_s
        forever = self.keep_result_forever if forever is None else forever
        expiry = -1 if forever else int((self.keep_result_s if keep_s is None else keep_s) * 1000)
        finished_ms = timestamp_ms()
        argv: list[Any] = [expiry, int(self.in_progress_timeout_s * 1000), len(finished)]
        for job in finished:
            result = serialize_result(
                function.name,
                (),
                job.kwargs,
                1,
                job.enqueued_ms,
                True,
                None,
                start_ms,
                finished_ms,
                f"{job.id}:{function.name}",
                self.queue_name,
                job_id=job.id,
                serializer=self.job_serializer,
            )
            argv += [job.id, result or b""]
        argv += [job.id for job in others]
        await self.pool.eval(FINISH_BATCH, 1, self.queue_name, *argv)  # type: ignore[misc]


def cron_steps(every: int) -> set[int]:
    """The seconds (or minutes) within 60 at which a cron job runs about `every` apart (1-60)."""
    return set(range(0, 60, min(max(every, 1), 60)))


def create_worker(settings: type | str, **overrides: Any) -> Worker:
    """The worker for a settings class (or its dotted path), as arq's command line would build it."""
    cls = import_string(settings) if isinstance(settings, str) else settings
    batches = cls.__dict__.get("batches", ())
    return Worker(**{**arq.worker.get_kwargs(cls), "batches": batches, **overrides})


async def startup(ctx: JobContext) -> None:
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL)
    stack = AsyncExitStack()
    # Up to MAX_JOBS jobs run at once: a larger pool, and patience when it is exhausted. Jobs are
    # retried, so connections are checked only after sitting idle (see shared.db).
    state = await stack.enter_async_context(
        open_state(settings, pool_size=20, pool_timeout=30, check_idle_only=True)
    )
    ctx.update(state)
    ctx["exit_stack"] = stack
    log.info("worker started")


async def shutdown(ctx: JobContext) -> None:
    stack: AsyncExitStack | None = ctx.pop("exit_stack", None)
    if stack is not None:
        await stack.aclose()
    log.info("worker stopped")


async def bind_job_logging(ctx: JobContext) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        job_id=ctx.get("job_id"), job_try=ctx.get("job_try"), request_id=ctx.get("request_id")
    )


def backoff(job_try: int, *, hint: float | None = None, base: float | None = None) -> float:
    """Exponential delay with full jitter, never shorter than Meta's hint."""
    base = get_settings().RETRY_BASE_SECONDS if base is None else base
    delay = min(MAX_BACKOFF_SECONDS, base * 2 ** max(0, job_try - 1))
    delay = delay / 2 + random.uniform(0, delay / 2)
    return max(delay, hint or 0.0)


def retry_later(ctx: JobContext, error: BaseException) -> Retry:
    """Run the job again after a backoff (never sooner than the error's hint, when it has one)."""
    return Retry(defer=backoff(ctx["job_try"], hint=getattr(error, "retry_after", None)))


async def park(
    session: AsyncSession, *, job_name: str, job_key: str, kwargs: dict[str, Any], error: str
) -> None:
    """Keep a job that failed for good where operators can see and replay it (`inboxctl dead-letters`)."""
    session.add(DeadLetter(job_name=job_name, job_key=job_key, kwargs=kwargs, error=error[:2000]))
    log.error("job parked in dead letters", job_name=job_name, job_key=job_key, error=error[:500])


def is_transient(error: BaseException) -> bool:
    """Worth retrying: Meta or the attachment store busy or unreachable, Postgres or Redis
    restarting, network trouble."""
    transient = GraphTransientError | StorageUnavailable | RedisError | OSError | TimeoutError | PoolTimeout
    if isinstance(error, transient):
        return True
    if isinstance(error, DBAPIError):
        cause = error.orig.__cause__ if error.orig is not None else None
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(cause, "sqlstate", None) or ""
        return (
            sqlstate.startswith(RETRYABLE_SQLSTATE_PREFIXES)
            or isinstance(cause, OSError)
            or error.connection_invalidated
            or isinstance(error, OperationalError | InterfaceError)
        )
    return False


async def run_job(
    ctx: JobContext,
    *,
    job: Job,
    key: str,
    kwargs: dict[str, Any],
    max_tries: int,
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T | None:
    """Run `work` in one session and commit. Transient failures retry with backoff; a job that
    keeps failing, or fails for a reason retrying cannot fix, is parked in the dead letters."""
    try:
        async with ctx["sessionmaker"]() as session:
            result = await work(session)
            await session.commit()
            return result
    except Retry:
        raise
    except Exception as error:
        transient = is_transient(error)
        if transient and ctx["job_try"] < max_tries:
            raise retry_later(ctx, error) from error
        log.error("job failed", job_name=job.name, job_key=key, transient=transient, exc_info=not transient)
        async with ctx["sessionmaker"]() as session:
            await park(
                session,
                job_name=job.name,
                job_key=key,
                kwargs=kwargs,
                error=f"{type(error).__name__}: {error}",
            )
            await session.commit()
        return None
