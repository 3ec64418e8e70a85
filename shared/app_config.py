"""Instagram app settings: a value saved in `installation_configs` wins over the environment.

Every process reads them through `AppConfigCache`, which re-reads the table at most every
APP_CONFIG_CACHE_SECONDS (10 s by default), so a change made by a super admin or
`inboxctl config set` is picked up by every service within that time, without a restart.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared import crypto
from shared.db import SessionMaker
from shared.errors import Unprocessable
from shared.models import InstallationConfig
from shared.settings import Settings

SECRET_KEYS = frozenset({"INSTAGRAM_APP_SECRET", "INSTAGRAM_VERIFY_TOKEN"})
BOOLEAN_KEYS = frozenset({"ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT"})
INSTAGRAM_KEYS = (
    "INSTAGRAM_APP_ID",
    "INSTAGRAM_APP_SECRET",
    "INSTAGRAM_VERIFY_TOKEN",
    "INSTAGRAM_API_VERSION",
    "ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT",
)
CONFIG_GROUPS = {"instagram": INSTAGRAM_KEYS}


@dataclass(frozen=True)
class InstagramApp:
    app_id: str
    app_secret: str
    verify_token: str
    api_version: str
    human_agent_enabled: bool

    @property
    def configured(self) -> bool:
        return bool(self.app_id and self.app_secret)


def _env_value(settings: Settings, key: str) -> Any:
    value = getattr(settings, key)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


def parse_value(key: str, raw: Any) -> Any:
    if key not in INSTAGRAM_KEYS:
        raise Unprocessable(f"unknown configuration key {key!r}; known keys: {', '.join(INSTAGRAM_KEYS)}")
    if key in BOOLEAN_KEYS:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).lower() in ("0", "false", "no", "off"):
            return False
        raise Unprocessable(f"{key} must be true or false")
    return str(raw)


async def effective_values(session: AsyncSession, settings: Settings) -> dict[str, Any]:
    """Each Instagram key's value: the saved one when present, else the environment's."""
    values = {key: _env_value(settings, key) for key in INSTAGRAM_KEYS}
    rows = await session.scalars(
        select(InstallationConfig).where(InstallationConfig.name.in_(INSTAGRAM_KEYS))
    )
    for row in rows:
        stored = row.value.get("value")
        values[row.name] = crypto.decrypt(str(stored)) if row.value.get("encrypted") else stored
    return values


async def load_instagram_app(session: AsyncSession, settings: Settings) -> InstagramApp:
    values = await effective_values(session, settings)
    return InstagramApp(
        app_id=values["INSTAGRAM_APP_ID"],
        app_secret=values["INSTAGRAM_APP_SECRET"],
        verify_token=values["INSTAGRAM_VERIFY_TOKEN"],
        api_version=values["INSTAGRAM_API_VERSION"],
        human_agent_enabled=bool(values["ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT"]),
    )


async def save_value(session: AsyncSession, *, key: str, raw: Any) -> None:
    value = parse_value(key, raw)
    stored = {"value": crypto.encrypt(value), "encrypted": True} if key in SECRET_KEYS else {"value": value}
    statement = insert(InstallationConfig).values(name=key, value=stored)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[InstallationConfig.name], set_={"value": stored})
    )


def mask(key: str, value: Any) -> Any:
    if key in SECRET_KEYS and value:
        return "*" * 8 + str(value)[-4:] if len(str(value)) > 8 else "*" * 8
    return value


class AppConfigCache:
    """The current InstagramApp, re-read from the database at most every `ttl` seconds (by one
    caller: those arriving meanwhile wait for its answer)."""

    def __init__(self, sessionmaker: SessionMaker, settings: Settings) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._ttl = settings.APP_CONFIG_CACHE_SECONDS
        self._value: InstagramApp | None = None
        self._loaded_at = 0.0
        self._reading: asyncio.Future[InstagramApp] | None = None

    async def get(self) -> InstagramApp:
        if self._value is not None and time.monotonic() - self._loaded_at <= self._ttl:
            return self._value
        if self._reading is None:
            self._reading = asyncio.ensure_future(self.refresh())
            self._reading.add_done_callback(lambda _: setattr(self, "_reading", None))
        return await asyncio.shield(self._reading)

    async def refresh(self) -> InstagramApp:
        async with self._sessionmaker() as session:
            self._value = await load_instagram_app(session, self._settings)
        self._loaded_at = time.monotonic()
        return self._value

    def invalidate(self) -> None:
        self._value, self._loaded_at = None, 0.0
