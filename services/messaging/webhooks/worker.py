"""Events worker: dispatches the outbox and delivers account webhook events (queue `events`)."""

import asyncio
import contextlib

import httpx
from arq import Retry, func

from services.messaging.webhooks import delivery
from shared import worker
from shared.logging import get_logger
from shared.queue import DELIVER_EVENT, Queue, redis_settings_from
from shared.settings import get_settings
from shared.worker import JobContext

log = get_logger("webhooks.worker")


async def deliver_event(ctx: JobContext, event_id: int, webhook_id: int) -> None:
    try:
        async with ctx["sessionmaker"]() as session:
            outcome = await delivery.deliver(
                session,
                ctx["http"],
                ctx["settings"],
                event_id=event_id,
                webhook_id=webhook_id,
                attempt=ctx["job_try"],
            )
            await session.commit()
    except Exception as error:  # Postgres or Redis restarting: try again, the delivery is not lost
        if worker.is_transient(error):
            raise worker.retry_later(ctx, error) from error
        raise
    if outcome.retry:
        raise Retry(defer=worker.backoff(ctx["job_try"]))


async def dispatch_forever(ctx: JobContext) -> None:
    """Poll the outbox; a committed event is handed to delivery jobs within the dispatch interval."""
    interval = ctx["settings"].EVENT_DISPATCH_INTERVAL_SECONDS
    while True:
        try:
            async with ctx["sessionmaker"]() as session:
                dispatched = await delivery.dispatch_pending(session, ctx["redis"], ctx["settings"])
                await session.commit()
        except Exception:  # keep dispatching after Postgres or Redis come back
            log.exception("dispatching webhook events failed")
            dispatched = 0
        if not dispatched:
            await asyncio.sleep(interval)


async def startup(ctx: JobContext) -> None:
    await worker.startup(ctx)
    ctx["http"] = httpx.AsyncClient(
        follow_redirects=False, limits=httpx.Limits(max_connections=500, max_keepalive_connections=100)
    )
    ctx["dispatcher"] = asyncio.create_task(dispatch_forever(ctx))


async def shutdown(ctx: JobContext) -> None:
    dispatcher: asyncio.Task[None] | None = ctx.pop("dispatcher", None)
    if dispatcher is not None:
        dispatcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher
    await ctx["http"].aclose()
    await worker.shutdown(ctx)


class EventsWorkerSettings:
    functions = [
        func(deliver_event, name=DELIVER_EVENT.name, max_tries=get_settings().EVENT_DELIVERY_MAX_TRIES)
    ]
    queue_name = Queue.EVENTS.value
    redis_settings = redis_settings_from(get_settings())
    on_startup = startup
    on_shutdown = shutdown
    on_job_start = worker.bind_job_logging
    max_jobs = 200
    poll_delay = worker.POLL_DELAY_SECONDS
    job_completion_wait = worker.SHUTDOWN_WAIT_SECONDS
    job_timeout = 60
    keep_result = 86_400
