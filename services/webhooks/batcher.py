"""Concurrent deliveries share Redis round trips: one `enqueue_many` call for all that are waiting.

A delivery adds its jobs and waits. One flush at a time sends the jobs of every waiting delivery
in a single `shared.queue.enqueue_many` call (one atomic Lua script, the same job ids and arq job
format as enqueueing each delivery alone) and hands each delivery the created flags of its own
jobs. Deliveries that arrive while a flush is in flight wait for the next one, so under load a
round trip carries many deliveries and at low load a delivery waits for nobody.

A flush that fails (Redis down, a timeout) fails every delivery of that flush with the same
error, so none of them is acknowledged; Meta redelivers, and the job ids make a redelivery of
jobs that did reach Redis enqueue nothing new.
"""

import asyncio
from typing import Any

from arq.connections import ArqRedis

from services.webhooks import metrics
from shared.queue import Job, enqueue_many

JobSpec = tuple[Job, str, dict[str, Any]]


class EnqueueBatcher:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self._waiting: list[tuple[list[JobSpec], asyncio.Future[list[bool]]]] = []
        self._flushes: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references

    async def enqueue_many(self, jobs: list[JobSpec]) -> list[bool]:
        """Like `shared.queue.enqueue_many`, sharing the round trip with concurrent callers."""
        if not jobs:
            return []
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._waiting.append((jobs, future))
        if len(self._waiting) == 1:  # the flush starts on the next loop tick: this tick's callers join
            flush = asyncio.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await future

    async def _flush(self) -> None:
        batch, self._waiting = self._waiting, []
        metrics.ENQUEUE_ROUND_TRIPS.inc()
        try:
            created = await enqueue_many(self.redis, [job for jobs, _ in batch for job in jobs])
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:  # cancelled (shutdown): so are the deliveries waiting on it
            for _, future in batch:
                future.cancel()
            raise
        start = 0
        for jobs, future in batch:
            if not future.done():  # a delivery cancelled while waiting gets no answer
                future.set_result(created[start : start + len(jobs)])
            start += len(jobs)
