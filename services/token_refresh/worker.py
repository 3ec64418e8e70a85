"""Maintenance worker (queue `maintenance`): the token sweep on a cron, on-demand refreshes, and
retries of webhook subscriptions that failed at connection time."""

from arq import cron, func
from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncSession

from services.token_refresh import metrics, service
from shared import channels, worker
from shared.graph import GraphTokenError, GraphTransientError
from shared.logging import get_logger
from shared.models import ChannelInstagram
from shared.queue import REFRESH_TOKENS, SUBSCRIBE_WEBHOOKS, Queue, redis_settings_from
from shared.settings import get_settings
from shared.worker import JobContext

log = get_logger("token_refresh")
SUBSCRIBE_MAX_TRIES = 12


async def refresh_tokens(ctx: JobContext) -> dict[str, int]:
    """One sweep now (the cron's job; also enqueued on demand)."""
    report = await service.sweep(ctx["sessionmaker"], ctx["graph"], ctx["settings"])
    metrics.REFRESHED.inc(report.refreshed)
    metrics.FAILED.inc(report.failed)
    metrics.FLAGGED.inc(report.flagged)
    async with ctx["sessionmaker"]() as session:
        days = await service.soonest_expiry_days(session)
    if days is not None:
        metrics.SOONEST_EXPIRY_DAYS.set(days)
    log.info("token sweep done", refreshed=report.refreshed, failed=report.failed, flagged=report.flagged)
    return {"refreshed": report.refreshed, "failed": report.failed, "flagged": report.flagged}


async def subscribe_webhooks(ctx: JobContext, channel_id: int) -> None:
    async def work(session: AsyncSession) -> None:
        channel = await session.get(ChannelInstagram, channel_id)
        if channel is None or channel.reauthorization_required or channel.webhooks_subscribed_at is not None:
            return
        try:
            await channels.subscribe_webhooks(session, ctx["graph"], channel=channel)
        except GraphTokenError:
            await channels.record_token_error(session, ctx["settings"], channel_id=channel_id)
        except GraphTransientError:
            await session.commit()  # keep the visible error while retrying
            raise
        except Exception:  # a permanent refusal stays visible on the inbox
            return

    kwargs = {"channel_id": channel_id}
    await worker.run_job(
        ctx,
        job=SUBSCRIBE_WEBHOOKS,
        key=str(channel_id),
        kwargs=kwargs,
        max_tries=SUBSCRIBE_MAX_TRIES,
        work=work,
    )


async def startup(ctx: JobContext) -> None:
    await worker.startup(ctx)
    port = ctx["settings"].TOKEN_REFRESH_METRICS_PORT
    if port:
        start_http_server(port)


class WorkerSettings:
    functions = [
        func(refresh_tokens, name=REFRESH_TOKENS.name, timeout=3600),
        func(subscribe_webhooks, name=SUBSCRIBE_WEBHOOKS.name, max_tries=SUBSCRIBE_MAX_TRIES, timeout=60),
    ]
    cron_jobs = [
        cron(
            refresh_tokens,
            name="refresh_tokens_cron",
            minute=worker.cron_steps(get_settings().TOKEN_REFRESH_INTERVAL_MINUTES),
            run_at_startup=True,
            unique=True,
            timeout=3600,
        )
    ]
    queue_name = Queue.MAINTENANCE.value
    redis_settings = redis_settings_from(get_settings())
    on_startup = startup
    on_shutdown = worker.shutdown
    on_job_start = worker.bind_job_logging
    max_jobs = 20
    poll_delay = worker.POLL_DELAY_SECONDS
    job_completion_wait = worker.SHUTDOWN_WAIT_SECONDS
    keep_result = 3600
