"""Concurrent deliveries share Redis round trips: one enqueue command for all that are waiting.

A delivery adds its jobs and waits. On the next loop tick one flush sends the jobs of every
waiting delivery as a single `shared.queue.enqueue_many_command` (one atomic Lua script: the same
job ids and arq job format as `enqueue_many` for each delivery alone) and hands each delivery the
created flags of its own jobs. Under load a round trip carries many deliveries; at low load a
delivery waits for nobody. Flushes in flight each hold a connection of their own.

A flush that fails (Redis down, a timeout) fails every delivery of that flush with the same
error, so none of them is acknowledged; Meta redelivers, and the job ids make a redelivery of
jobs that did reach Redis enqueue nothing new.
"""

import asyncio
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio.connection import AbstractConnection

from services.webhooks import metrics
from shared.queue import Job, enqueue_many_command

JobSpec = tuple[Job, str, dict[str, Any]]


class EnqueueBatcher:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self.timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
        self._waiting: list[tuple[list[JobSpec], asyncio.Future[list[bool]]]] = []
        self._flushes: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references
        # One connection per flush in flight, kept for the next flushes. Sent on directly, they
        # skip the client's per-command pool and retry machinery.
        self._connections: list[AbstractConnection] = []
        self._idle: list[AbstractConnection] = []

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
        connection = self._idle.pop() if self._idle else self._connect()
        try:
            command = enqueue_many_command(self.redis, [job for jobs, _ in batch for job in jobs])
            async with asyncio.timeout(self.timeout):
                await connection.send_command(*command)
                created = [bool(flag) for flag in await connection.read_response()]
        except Exception as error:
            await connection.disconnect(nowait=True)  # it connects again when used next
            self._idle.append(connection)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:  # cancelled (shutdown): so are the deliveries waiting on it
            for _, future in batch:
                future.cancel()
            raise
        self._idle.append(connection)
        start = 0
        for jobs, future in batch:
            if not future.done():  # a delivery cancelled while waiting gets no answer
                future.set_result(created[start : start + len(jobs)])
            start += len(jobs)

    def _connect(self) -> AbstractConnection:
        """A connection like the client's, that connects when first used. The round trip as a
        whole has the client's socket timeout, so redis-py adds no timeout task per command."""
        pool = self.redis.connection_pool
        connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        self._connections.append(connection)
        return connection

    async def aclose(self) -> None:
        for connection in self._connections:
            await connection.disconnect()
