"""Keeping long-lived tokens alive: the sweep, and what operators see of it.

Due: not flagged, not expired, at least 24 hours old (Meta refuses younger tokens) and
expiring within 10 days. A batch is claimed by stamping `refresh_attempted_at` under
`FOR UPDATE SKIP LOCKED`, so concurrent sweepers never take the same channel and a channel
whose refresh failed transiently waits RETRY_AFTER before the next try. The new token is
written only if the channel's token did not change meanwhile (a re-authorization wins); a
crash before that write leaves the old token in place, still valid.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared import channels, crypto
from shared.db import SessionMaker
from shared.events import Event, emit
from shared.graph import GraphClient, GraphError, GraphTokenError, LongLivedToken
from shared.logging import get_logger
from shared.models import ChannelInstagram, Inbox
from shared.settings import Settings

log = get_logger("token_refresh")
MIN_AGE = timedelta(hours=24)
DUE_WITHIN = timedelta(days=10)
RETRY_AFTER = timedelta(minutes=30)
WARN_WITHIN = timedelta(days=7)
LANES = 2  # batches in flight at once (each claims its own rows)


@dataclass
class SweepReport:
    refreshed: int = 0
    failed: int = 0  # transient: retried by a later sweep
    flagged: int = 0  # re-authorization required
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Claimed:
    id: int
    token: str
    token_updated_at: datetime


def _due(now: datetime) -> list[object]:
    return [
        ChannelInstagram.reauthorization_required.is_(False),
        ChannelInstagram.expires_at > now,
        ChannelInstagram.expires_at <= now + DUE_WITHIN,
        ChannelInstagram.token_updated_at <= now - MIN_AGE,
    ]


async def flag_expired(session: AsyncSession, *, now: datetime) -> int:
    """Tokens already expired cannot be refreshed: flag them without calling Meta."""
    rows = await session.execute(
        update(ChannelInstagram)
        .where(ChannelInstagram.reauthorization_required.is_(False), ChannelInstagram.expires_at <= now)
        .values(reauthorization_required=True, refresh_error="the token expired before it could be refreshed")
        .returning(ChannelInstagram.id, ChannelInstagram.account_id)
    )
    flagged = rows.all()
    for channel_id, account_id in flagged:
        inbox_id = await session.scalar(select(Inbox.id).where(Inbox.channel_id == channel_id))
        emit(session, event=Event.INBOX_REAUTHORIZATION_REQUIRED, account_id=account_id, inbox_id=inbox_id)
    return len(flagged)


async def claim(
    session: AsyncSession, *, now: datetime, limit: int, retry_now: bool = False
) -> list[Claimed]:
    retry_pause = timedelta(0) if retry_now else RETRY_AFTER
    due = (
        select(ChannelInstagram.id)
        .where(
            *_due(now),  # type: ignore[arg-type]
            (ChannelInstagram.refresh_attempted_at.is_(None))
            | (ChannelInstagram.refresh_attempted_at < now - retry_pause),
        )
        .order_by(ChannelInstagram.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(ChannelInstagram)
        .where(ChannelInstagram.id.in_(due.scalar_subquery()))
        .values(refresh_attempted_at=now)
        .returning(ChannelInstagram.id, ChannelInstagram.access_token, ChannelInstagram.token_updated_at)
        .execution_options(synchronize_session=False)  # no ORM objects to keep in step
    )
    return [Claimed(*row) for row in rows]


# One statement for a whole batch's new tokens; a channel re-authorized meanwhile (its
# token_updated_at moved) keeps the newer token.
SAVE_REFRESHED = text(
    """
    UPDATE channel_instagram AS c
    SET access_token = r.access_token, expires_at = r.expires_at, token_updated_at = :now,
        refresh_error = NULL, updated_at = :now
    FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS text[]), CAST(:expires AS timestamptz[]),
                CAST(:claimed AS timestamptz[])) AS r(id, access_token, expires_at, claimed_updated_at)
    WHERE c.id = r.id AND c.token_updated_at = r.claimed_updated_at
    """
)
SAVE_FAILED = text(
    """
    UPDATE channel_instagram AS c SET refresh_error = r.error, updated_at = :now
    FROM unnest(CAST(:ids AS bigint[]), CAST(:errors AS text[])) AS r(id, error)
    WHERE c.id = r.id
    """
)


async def _save(
    session: AsyncSession,
    settings: Settings,
    outcomes: list[tuple[Claimed, LongLivedToken | GraphError]],
    report: SweepReport,
) -> None:
    """Write a batch's outcomes: one UPDATE for the new tokens (encrypted), one for the failures."""
    now = datetime.now(UTC)
    refreshed = [(claimed, token) for claimed, token in outcomes if isinstance(token, LongLivedToken)]
    failed = [(claimed, error) for claimed, error in outcomes if isinstance(error, GraphError)]
    if refreshed:
        saved = await session.execute(
            SAVE_REFRESHED,
            {
                "now": now,
                "ids": [claimed.id for claimed, _ in refreshed],
                "tokens": [crypto.encrypt(token.access_token) for _, token in refreshed],
                "expires": [token.expires_at(now) for _, token in refreshed],
                "claimed": [claimed.token_updated_at for claimed, _ in refreshed],
            },
        )
        report.refreshed += saved.rowcount or 0  # type: ignore[attr-defined]
    if not failed:
        return
    await session.execute(
        SAVE_FAILED,
        {"now": now, "ids": [c.id for c, _ in failed], "errors": [str(e)[:500] for _, e in failed]},
    )
    for claimed, error in failed:
        report.errors.append(f"channel {claimed.id}: {error}")
        if isinstance(error, GraphTokenError):
            await channels.record_token_error(session, settings, channel_id=claimed.id, immediate=True)
            report.flagged += 1
        else:
            report.failed += 1


async def sweep(
    sessionmaker: SessionMaker, graph: GraphClient, settings: Settings, *, retry_now: bool = False
) -> SweepReport:
    """Refresh every due token, in batches with bounded concurrency. `retry_now` also retries
    tokens whose refresh failed within the last RETRY_AFTER (normally left for a later sweep)."""
    report = SweepReport()
    now = datetime.now(UTC)
    async with sessionmaker() as session:
        report.flagged += await flag_expired(session, now=now)
        await session.commit()
    gate = asyncio.Semaphore(settings.TOKEN_REFRESH_CONCURRENCY)

    async def refresh(claimed: Claimed) -> LongLivedToken | GraphError:
        async with gate:
            try:
                return await graph.refresh_token(claimed.token)
            except GraphError as error:
                return error

    async def lane() -> None:
        while True:
            async with sessionmaker() as session:
                batch = await claim(
                    session, now=now, limit=settings.TOKEN_REFRESH_BATCH_SIZE, retry_now=retry_now
                )
                await session.commit()
            if not batch:
                return
            outcomes = await asyncio.gather(*(refresh(claimed) for claimed in batch))
            async with sessionmaker() as session:
                await _save(session, settings, list(zip(batch, outcomes, strict=True)), report)
                await session.commit()
            log.info("token refresh batch", size=len(batch), refreshed=report.refreshed, failed=report.failed)

    # While one lane saves a batch, the other's refreshes keep Meta busy.
    await asyncio.gather(*(lane() for _ in range(LANES)))
    return report


@dataclass(frozen=True)
class TokenStatus:
    inbox_id: int | None
    username: str | None
    expires_at: datetime
    reauthorization_required: bool
    refresh_error: str | None


async def expiring_soon(session: AsyncSession, *, now: datetime | None = None) -> list[TokenStatus]:
    """Tokens expiring within 7 days (or already flagged): the ones people must hear about."""
    now = now or datetime.now(UTC)
    rows = await session.execute(
        select(
            Inbox.id,
            ChannelInstagram.username,
            ChannelInstagram.expires_at,
            ChannelInstagram.reauthorization_required,
            ChannelInstagram.refresh_error,
        )
        .join(Inbox, Inbox.channel_id == ChannelInstagram.id, isouter=True)
        .where((ChannelInstagram.expires_at <= now + WARN_WITHIN) | ChannelInstagram.reauthorization_required)
        .order_by(ChannelInstagram.expires_at)
    )
    return [TokenStatus(*row) for row in rows]


async def soonest_expiry_days(session: AsyncSession, *, now: datetime | None = None) -> float | None:
    soonest = await session.scalar(
        select(ChannelInstagram.expires_at)
        .where(ChannelInstagram.reauthorization_required.is_(False))
        .order_by(ChannelInstagram.expires_at)
        .limit(1)
    )
    return None if soonest is None else (soonest - (now or datetime.now(UTC))).total_seconds() / 86_400
