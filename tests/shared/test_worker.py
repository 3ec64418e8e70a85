"""The worker claims queued jobs in one round trip, exactly as arq claims each: once, when due;
batched jobs are handled many at a time, and any the batch does not finish run on their own."""

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from typing import Any

import pytest
from arq import func
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, retry_key_prefix
from arq.jobs import Job, JobStatus

from shared.queue import redis_settings_from
from shared.settings import get_settings
from shared.worker import SHUTDOWN_WAIT_SECONDS, Batch, create_worker
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


BATCHES: list[list[str]] = []
ALONE: list[tuple[str, int]] = []


async def note(ctx: dict[str, Any], label: str) -> str:
    """The job on its own."""
    ALONE.append((label, ctx["job_try"]))
    return label


async def note_many(ctx: dict[str, Any], jobs: list[dict[str, Any]]) -> list[bool]:
    """Many at once: `alone-*` left to their own runs, `poison` breaks the batch, `slow` outlasts it."""
    labels = [job["label"] for job in jobs]
    BATCHES.append(labels)
    await asyncio.sleep(5 if "slow" in labels else 0.001)
    if "poison" in labels:
        raise RuntimeError("this batch breaks")
    return [not label.startswith("alone") for label in labels]


class BatchSettings:
    functions = [func(note, name="note", timeout=1)]
    batches = [Batch("note", note_many, size=20)]
    queue_name = QUEUE
    redis_settings = redis_settings_from(get_settings())
    max_jobs = 50
    poll_delay = 0
    burst = True
    handle_signals = False


async def run_batches(redis: ArqRedis, *labels: str, workers: int = 1) -> None:
    BATCHES.clear()
    ALONE.clear()
    for label in labels:
        await redis.enqueue_job("note", label=label, _job_id=f"note-{label}", _queue_name=QUEUE)
    running = [create_worker(BatchSettings) for _ in range(workers)]
    try:
        await asyncio.gather(*(worker.main() for worker in running))
    finally:
        await asyncio.gather(*(worker.close() for worker in running))
    assert await redis.zcard(QUEUE) == 0
    assert await redis.keys("arq:job:*") == [] and await redis.keys("arq:in-progress:*") == []
    assert await redis.keys("arq:retry:*") == []


def batched() -> list[list[str]]:
    """Each batch's labels, sorted: jobs queued in the same millisecond come out in id order."""
    return [sorted(batch) for batch in BATCHES]


async def test_two_workers_handle_batched_jobs_once_each_and_keep_their_results(redis: ArqRedis) -> None:
    labels = [f"job {n}" for n in range(150)]
    await run_batches(redis, *labels, workers=2)
    handled = [label for batch in BATCHES for label in batch]
    assert sorted(handled) == sorted(labels) and ALONE == []
    assert len(BATCHES) < 150 and max(len(batch) for batch in BATCHES) <= 20
    result = await Job("note-job 7", redis, _queue_name=QUEUE).result_info()
    assert result is not None and result.success and result.kwargs == {"label": "job 7"}
    assert await Job("note-job 7", redis, _queue_name=QUEUE).status() == JobStatus.complete
    # a finished job's id is taken until its result expires, as with any arq job
    assert await redis.enqueue_job("note", label="job 7", _job_id="note-job 7", _queue_name=QUEUE) is None


async def test_jobs_a_batch_leaves_run_on_their_own_first_try(redis: ArqRedis) -> None:
    await run_batches(redis, "a", "alone-b", "c")
    assert batched() == [["a", "alone-b", "c"]]
    assert ALONE == [("alone-b", 1)]
    result = await Job("note-alone-b", redis, _queue_name=QUEUE).result_info()
    assert result is not None and result.result == "alone-b"


@pytest.mark.parametrize("breaker", ["poison", "slow"])
async def test_a_batch_that_fails_or_times_out_hands_each_job_to_its_own_run(
    redis: ArqRedis, breaker: str
) -> None:
    await run_batches(redis, "x", breaker, "y")
    assert batched() == [sorted(["x", breaker, "y"])]
    assert sorted(ALONE) == sorted([("x", 1), (breaker, 1), ("y", 1)])


async def test_a_job_tried_before_runs_on_its_own(redis: ArqRedis) -> None:
    """As a worker that died in the middle of a batch leaves its jobs: tried once."""
    await redis.set(retry_key_prefix + "note-again", b"1")
    await run_batches(redis, "again", "fresh")
    assert batched() == [["fresh"]]
    assert ALONE == [("again", 2)]
