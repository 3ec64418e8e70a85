"""The token sweep against the sandbox's refresh endpoint."""

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandbox.client import SandboxAdmin
from services.token_refresh import service
from services.token_refresh.worker import WorkerSettings
from shared import channels
from shared.app import open_state
from shared.models import Account, ChannelInstagram, WebhookEvent
from shared.settings import Settings
from tests.conftest import Factory
from tests.support import run_worker

DAY = 86_400


async def channel_with(
    factory: Factory,
    sandbox: SandboxAdmin,
    account: Account,
    *,
    age_days: float,
    expires_in_days: float,
    ig_id: str,
) -> ChannelInstagram:
    token = await sandbox.token(age_seconds=age_days * DAY, expires_in=expires_in_days * DAY)
    inbox = await factory.inbox(
        account,
        instagram_id=ig_id,
        access_token=token,
        expires_in=timedelta(days=expires_in_days),
        token_age=timedelta(days=age_days),
        username=ig_id,
    )
    channel = await factory.db.get(ChannelInstagram, inbox.channel_id)
    assert channel is not None
    return channel


async def sweep(settings: Settings, **kwargs: Any) -> service.SweepReport:
    async with open_state(settings) as state:
        return await service.sweep(state["sessionmaker"], state["graph"], settings, **kwargs)


async def reload(db: AsyncSession, channel: ChannelInstagram) -> ChannelInstagram:
    await db.refresh(channel)
    return channel


async def test_due_tokens_are_refreshed_and_others_left_alone(
    factory: Factory, sandbox: SandboxAdmin, settings: Settings, db: AsyncSession
) -> None:
    account = await factory.account()
    due = await channel_with(
        factory, sandbox, account, age_days=50, expires_in_days=9, ig_id="17841400000000001"
    )
    young = await channel_with(
        factory, sandbox, account, age_days=0.5, expires_in_days=5, ig_id="17841400000000002"
    )
    far = await channel_with(
        factory, sandbox, account, age_days=20, expires_in_days=40, ig_id="17841400000000003"
    )
    before = {c.id: c.access_token for c in (due, young, far)}

    report = await sweep(settings)

    assert (report.refreshed, report.failed, report.flagged) == (1, 0, 0)
    due = await reload(db, due)
    assert due.access_token != before[due.id] and due.refresh_error is None
    assert (due.expires_at - datetime.now(UTC)).days in (59, 60)
    assert datetime.now(UTC) - due.token_updated_at < timedelta(minutes=1)
    assert (await reload(db, young)).access_token == before[young.id]
    assert (await reload(db, far)).access_token == before[far.id]
    refreshes = await sandbox.requests("/refresh_access_token")
    assert [r["status"] for r in refreshes] == [200]


async def test_expired_tokens_are_flagged_without_calling_meta(
    factory: Factory, sandbox: SandboxAdmin, settings: Settings, db: AsyncSession
) -> None:
    account = await factory.account()
    channel = await channel_with(
        factory, sandbox, account, age_days=61, expires_in_days=-1, ig_id="17841400000000001"
    )
    report = await sweep(settings)
    assert report.flagged == 1
    assert (await reload(db, channel)).reauthorization_required is True
    assert await sandbox.requests("/refresh_access_token") == []
    assert (await db.scalars(select(WebhookEvent.event))).all() == ["inbox.reauthorization_required"]


async def test_revoked_token_flags_the_channel_at_once(
    factory: Factory, sandbox: SandboxAdmin, settings: Settings, db: AsyncSession
) -> None:
    account = await factory.account()
    channel = await channel_with(
        factory, sandbox, account, age_days=55, expires_in_days=5, ig_id="17841400000000001"
    )
    await sandbox.revoke_token(channel.access_token)
    report = await sweep(settings)
    assert report.flagged == 1
    channel = await reload(db, channel)
    assert channel.reauthorization_required and "Invalid OAuth access token" in (channel.refresh_error or "")
    again = await sweep(settings)  # flagged channels are left alone: no hammering Meta with a dead token
    assert again.flagged == 0 and len(await sandbox.requests("/refresh_access_token")) == 1


async def test_transient_failure_then_success(
    factory: Factory, sandbox: SandboxAdmin, settings: Settings, db: AsyncSession
) -> None:
    account = await factory.account()
    channel = await channel_with(
        factory, sandbox, account, age_days=55, expires_in_days=5, ig_id="17841400000000001"
    )
    await sandbox.fault("/refresh_access_token", times=1, status=503, body="<html>busy</html>")
    first = await sweep(settings)
    assert (first.refreshed, first.failed) == (0, 1)
    assert (await reload(db, channel)).refresh_error
    assert (await sweep(settings)).refreshed == 0  # the next cron sweep waits out the retry pause
    assert (await sweep(settings, retry_now=True)).refreshed == 1
    assert (await reload(db, channel)).refresh_error is None


async def test_two_sweepers_at_once_refresh_each_channel_once(
    factory: Factory, sandbox: SandboxAdmin, settings: Settings
) -> None:
    account = await factory.account()
    for i in range(30):
        await channel_with(
            factory, sandbox, account, age_days=55, expires_in_days=5, ig_id=f"178414000000001{i:02d}"
        )
    small = Settings(**{**settings.model_dump(), "TOKEN_REFRESH_BATCH_SIZE": 4})
    first, second = await asyncio.gather(sweep(small), sweep(small))
    assert first.refreshed + second.refreshed == 30
    assert len(await sandbox.requests("/refresh_access_token")) == 30


async def test_reauthorization_threshold_and_window(
    factory: Factory, settings: Settings, engine: Any, db: AsyncSession
) -> None:
    account = await factory.account()
    inbox = await factory.inbox(account)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

    async def error() -> bool:
        async with sessionmaker() as session:
            flagged = await channels.record_token_error(session, settings, channel_id=inbox.channel_id)
            await session.commit()
            return flagged

    assert [await error(), await error()] == [False, False]
    async with sessionmaker() as session:  # the window passes: the count starts again
        channel = await session.get(ChannelInstagram, inbox.channel_id)
        assert channel is not None
        channel.authorization_error_window_start = datetime.now(UTC) - timedelta(
            seconds=settings.REAUTH_ERROR_WINDOW_SECONDS + 1
        )
        await session.commit()
    assert [await error(), await error(), await error()] == [False, False, True]
    assert await error() is True
    events = (await db.scalars(select(WebhookEvent.event))).all()
    assert events == ["inbox.reauthorization_required"]  # once, when the flag turned on

    async with sessionmaker() as session:
        await channels.clear_token_errors(session, channel_id=inbox.channel_id)
        await session.commit()
    channel = await db.get(ChannelInstagram, inbox.channel_id, populate_existing=True)
    assert channel is not None and (channel.reauthorization_required, channel.authorization_error_count) == (
        False,
        0,
    )


async def test_cron_worker_and_cli(factory: Factory, sandbox: SandboxAdmin, db: AsyncSession) -> None:
    account = await factory.account()
    due = await channel_with(
        factory, sandbox, account, age_days=55, expires_in_days=5, ig_id="17841400000000001"
    )
    soon = await channel_with(
        factory, sandbox, account, age_days=0.2, expires_in_days=3, ig_id="17841400000000002"
    )
    old_token = due.access_token
    await run_worker(WorkerSettings)  # the cron runs at start-up
    assert (await reload(db, due)).access_token != old_token

    def inboxctl(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "shared.cli", *args], capture_output=True, text=True, env=os.environ.copy()
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "refreshed 0" in inboxctl("tokens", "refresh")
    failing = await channel_with(
        factory, sandbox, account, age_days=55, expires_in_days=4, ig_id="17841400000000003"
    )
    await sandbox.fault("/refresh_access_token", times=1, status=503, body="busy")
    assert "refreshed 0, failed 1" in inboxctl("tokens", "refresh")
    assert "refreshed 0, failed 0" in inboxctl("tokens", "refresh")  # a recent failure waits its pause
    assert "refreshed 1, failed 0" in inboxctl("tokens", "refresh", "--all-due")  # ... unless asked
    assert (await reload(db, failing)).refresh_error is None
    status = inboxctl("tokens", "status")
    assert f"@{soon.username}: expires in 3.0 days" in status and "soonest expiry: 3.0 days" in status


async def test_failed_subscription_is_retried_by_the_maintenance_worker(
    factory: Factory, sandbox: SandboxAdmin, db: AsyncSession, redis: Any
) -> None:
    from shared.queue import SUBSCRIBE_WEBHOOKS, enqueue

    account = await factory.account()
    inbox = await factory.inbox(account, access_token=await sandbox.token())
    channel = await db.get(ChannelInstagram, inbox.channel_id)
    assert channel is not None
    channel.webhooks_subscribed_at, channel.subscription_error = None, "Service temporarily unavailable"
    await db.commit()
    await sandbox.fault("subscribed_apps", times=2, error={"code": 2, "message": "Temporary"})
    await enqueue(redis, SUBSCRIBE_WEBHOOKS, key=str(channel.id), channel_id=channel.id)
    await run_worker(WorkerSettings)
    channel = await reload(db, channel)
    assert channel.webhooks_subscribed_at is not None and channel.subscription_error is None
    assert len(await sandbox.requests("subscribed_apps")) == 3
    assert await db.scalar(select(func.count()).select_from(WebhookEvent)) == 0
