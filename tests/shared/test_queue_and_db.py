"""Queue helpers on arq's own keys, and the workers' connection check, on real Redis and Postgres."""

import asyncpg
import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from sqlalchemy import text

from shared import db as shared_db
from shared.queue import SEND_MESSAGE, drop_waiting, enqueue, job_id, reschedule
from shared.settings import Settings


async def test_a_waiting_job_is_dropped_and_a_running_one_left_alone(redis: ArqRedis) -> None:
    queue = SEND_MESSAGE.queue.value
    await enqueue(redis, SEND_MESSAGE, key="1", defer_by=60, message_id=1)
    assert await drop_waiting(redis, SEND_MESSAGE, key="1")
    assert await redis.zcard(queue) == 0 and not await redis.exists(f"arq:job:{job_id(SEND_MESSAGE, '1')}")
    assert await enqueue(redis, SEND_MESSAGE, key="1", message_id=1)  # as if it had never been queued

    await enqueue(redis, SEND_MESSAGE, key="2", message_id=2)
    await redis.set(in_progress_key_prefix + job_id(SEND_MESSAGE, "2"), b"1")
    assert not await drop_waiting(redis, SEND_MESSAGE, key="2")
    assert await redis.zscore(queue, job_id(SEND_MESSAGE, "2")) is not None


async def test_a_queued_job_is_rescheduled_only_in_the_direction_asked(redis: ArqRedis) -> None:
    queue, job = SEND_MESSAGE.queue.value, job_id(SEND_MESSAGE, "3")
    await enqueue(redis, SEND_MESSAGE, key="3", defer_by=10, message_id=3)
    planned = await redis.zscore(queue, job)
    await reschedule(redis, SEND_MESSAGE, key="3", seconds=60, later=False)  # not sooner: kept
    assert await redis.zscore(queue, job) == planned
    await reschedule(redis, SEND_MESSAGE, key="3", seconds=1, later=False)  # sooner
    sooner = await redis.zscore(queue, job)
    assert sooner is not None and planned is not None and sooner <= planned - 8_000
    await reschedule(redis, SEND_MESSAGE, key="3", seconds=60, later=True)  # out of the polls' view
    hidden = await redis.zscore(queue, job)
    assert hidden is not None and hidden >= sooner + 58_000
    await reschedule(redis, SEND_MESSAGE, key="4", seconds=60, later=True)  # a finished job stays out
    assert await redis.zscore(queue, job_id(SEND_MESSAGE, "4")) is None


async def test_worker_engines_replace_a_connection_that_died_while_idle(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = shared_db.create_engine(settings, pool_size=1, check_idle_only=True)
    try:
        async with engine.connect() as connection:
            pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        admin = await asyncpg.connect(settings.DATABASE_URL.replace("postgresql+asyncpg", "postgresql"))
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await admin.close()
        monkeypatch.setattr(shared_db, "IDLE_CHECK_SECONDS", 0.0)  # it has sat idle long enough
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await engine.dispose()
