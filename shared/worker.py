"""What every arq worker shares: the worker itself, start-up state, job logging, backoff and the
dead-letter list.

Each worker module declares its own `WorkerSettings` class and assigns every field there:
arq ignores attributes inherited from a base class. `inboxctl worker <settings>` runs one.
"""

import random
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import arq.worker
import structlog
from arq import Retry
from arq.utils import import_string, timestamp_ms
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


# Claim up to ARGV[3] of the listed jobs in one round trip, each exactly as arq claims one: still
# queued, due, and not in progress in any worker, it is marked in progress for the job timeout.
# Returns id, score pairs.
CLAIM = """
local claimed, wanted = {}, tonumber(ARGV[3])
for i = 4, #ARGV do
  if #claimed >= 2 * wanted then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  local due = score and tonumber(score) <= tonumber(ARGV[1])
  if due and redis.call('EXISTS', 'arq:in-progress:' .. id) == 0 then
    redis.call('PSETEX', 'arq:in-progress:' .. id, ARGV[2], '1')
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = score
  end
end
return claimed
"""


class Worker(arq.worker.Worker):
    """arq's worker, but the due jobs of a poll are claimed in one round trip, not four per job one
    after the other. Jobs stay queued while they run, so the ids of a poll (arq reads five times
    its slots) are scanned past those that other workers hold until the free slots are filled."""

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        timeout_ms = int(self.in_progress_timeout_s * 1000)
        argv = [str(timestamp_ms()), str(timeout_ms), str(free), *(job_id.decode() for job_id in job_ids)]
        claimed = await self.pool.eval(CLAIM, 1, self.queue_name, *argv)  # type: ignore[misc]
        for raw_id, score in zip(claimed[::2], claimed[1::2], strict=True):
            await self.sem.acquire()
            self.job_counter += 1
            job_id = raw_id.decode()
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task


def cron_steps(every: int) -> set[int]:
    """The seconds (or minutes) within 60 at which a cron job runs about `every` apart (1-60)."""
    return set(range(0, 60, min(max(every, 1), 60)))


def create_worker(settings: type | str, **overrides: Any) -> Worker:
    """The worker for a settings class (or its dotted path), as arq's command line would build it."""
    cls = import_string(settings) if isinstance(settings, str) else settings
    return Worker(**{**arq.worker.get_kwargs(cls), **overrides})


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
