"""The worker claims queued jobs in one round trip, exactly as arq claims each: once, when due."""

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from shared.queue import redis_settings_from
from shared.settings import get_settings
from shared.worker import SHUTDOWN_WAIT_SECONDS, create_worker
from tests.support import eventually

QUEUE = "test-claims"
RUNS: Counter[str] = Counter()


async def record(ctx: dict[str, Any], label: str) -> None:
    RUNS[label] += 1
    await asyncio.sleep(0.001)  # hold the slot across polls, as real jobs do


class Settings:
    functions = [record]
    queue_name = QUEUE
    redis_settings = redis_settings_from(get_settings())
    max_jobs = 7  # fewer slots than jobs: many polls, each worker claiming past the other's jobs
    poll_delay = 0
    burst = True
    handle_signals = False


async def test_two_workers_run_every_job_exactly_once(redis: ArqRedis) -> None:
    RUNS.clear()
    for n in range(150):
        await redis.enqueue_job("record", f"job {n}", _job_id=f"claim-{n}", _queue_name=QUEUE)
    first, second = create_worker(Settings), create_worker(Settings)
    try:
        await asyncio.gather(first.main(), second.main())
    finally:
        await asyncio.gather(first.close(), second.close())
    assert RUNS == Counter({f"job {n}": 1 for n in range(150)})
    assert first.jobs_complete > 0 and second.jobs_complete > 0  # both took part
    assert await redis.zcard(QUEUE) == 0


async def test_a_job_in_progress_elsewhere_or_not_yet_due_is_not_claimed(redis: ArqRedis) -> None:
    RUNS.clear()
    await redis.enqueue_job("record", "running elsewhere", _job_id="busy", _queue_name=QUEUE)
    await redis.set(in_progress_key_prefix + "busy", b"1", px=60_000)
    await redis.enqueue_job("record", "later", _job_id="later", _queue_name=QUEUE, _defer_by=60)
    await redis.enqueue_job("record", "due", _job_id="due", _queue_name=QUEUE)
    worker = create_worker(Settings, burst=False)
    running = asyncio.create_task(worker.main())

    async def due_ran() -> bool:
        return RUNS["due"] == 1

    try:
        await eventually(due_ran)
        await asyncio.sleep(0.2)  # many more polls
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await worker.close()
    assert RUNS == Counter({"due": 1})
    assert set(await redis.zrange(QUEUE, 0, -1)) == {b"busy", b"later"}


async def finish_slowly(ctx: dict[str, Any], key: str) -> None:
    await ctx["redis"].set(f"{key}:started", b"1")
    await asyncio.sleep(1.0)
    await ctx["redis"].set(f"{key}:finished", b"1")


async def connect(ctx: dict[str, Any]) -> None:
    ctx["redis"] = ArqRedis.from_url(get_settings().REDIS_URL)


class SlowSettings:
    functions = [finish_slowly]
    queue_name = QUEUE
    redis_settings = redis_settings_from(get_settings())
    on_startup = connect
    job_completion_wait = SHUTDOWN_WAIT_SECONDS


async def test_a_worker_stopped_with_sigterm_finishes_its_running_job(redis: ArqRedis) -> None:
    await redis.enqueue_job("finish_slowly", "deploy", _job_id="slow", _queue_name=QUEUE)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.cli", "worker", f"{__name__}.SlowSettings", env=os.environ.copy()
    )

    async def started() -> bool:
        return bool(await redis.exists("deploy:started"))

    await eventually(started)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 15) == 0
    assert await redis.exists("deploy:finished") == 1  # the job ran to its end
    assert await redis.zcard(QUEUE) == 0  # and is not left to run again
