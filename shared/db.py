"""The async engine and sessions. Built by each process at start-up, never at import."""

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from shared.settings import Settings

SessionMaker = async_sessionmaker[AsyncSession]


def create_engine(settings: Settings, *, pool_size: int = 10, pool_timeout: float = 5) -> AsyncEngine:
    return create_async_engine(
        settings.DATABASE_URL,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_pre_ping=True,
        pool_timeout=pool_timeout,
        connect_args={"timeout": 5, "server_settings": {"application_name": "instagram-inbox"}},
    )


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, expire_on_commit=False)
