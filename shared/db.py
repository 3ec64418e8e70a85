"""The async engine and sessions. Built by each process at start-up, never at import."""

import time
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import ARRAY, ColumnElement, Engine, Table, any_, bindparam, event, func, select, tuple_
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import QueryableAttribute

from shared.settings import Settings

SessionMaker = async_sessionmaker[AsyncSession]
# With asyncpg a liveness check costs three round trips (BEGIN, ";", ROLLBACK), as much as a
# small job's own work; workers check only a connection that sat idle this long.
IDLE_CHECK_SECONDS = 5.0


def create_engine(
    settings: Settings, *, pool_size: int = 10, pool_timeout: float = 5, check_idle_only: bool = False
) -> AsyncEngine:
    """`check_idle_only` (for workers, whose jobs are retried): a connection that broke while in
    steady use fails its statement instead of being replaced unseen; the pool then renews them all."""
    engine = create_async_engine(
        settings.DATABASE_URL,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_pre_ping=not check_idle_only,
        pool_timeout=pool_timeout,
        connect_args={"timeout": 5, "server_settings": {"application_name": "instagram-inbox"}},
    )
    if check_idle_only:
        _check_idle_connections(engine.sync_engine)
    return engine


def _check_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def mark_idle(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def check_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < IDLE_CHECK_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:  # the pool discards it and checks out another
            raise DisconnectionError("idle connection is gone") from error


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)


Column = ColumnElement[Any] | QueryableAttribute[Any]


def among(column: Column, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column = ANY($1)`: the values travel as one array parameter, so the statement is the same
    whatever their number (IN renders one parameter per value, each execution)."""
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))


def pairs_among(first: Column, second: Column, pairs: Iterable[tuple[Any, Any]]) -> ColumnElement[bool]:
    """`(first, second) IN (SELECT unnest($1), unnest($2))`: `among` for pairs of columns."""
    listed = list(pairs)
    arrays = [
        func.unnest(bindparam(None, [pair[n] for pair in listed], type_=ARRAY(column.type)))
        for n, column in enumerate((first, second))
    ]
    return tuple_(first, second).in_(select(*arrays))


def table(model: Any) -> Table:
    """A mapped class's table, for Core statements (bulk writes skip the ORM's per-row work; ORM
    attributes in a statement would bring it back)."""
    return cast(Table, model.__table__)
