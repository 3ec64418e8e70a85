"""Super admin: the Instagram app settings, saved in the database where they win over the environment."""

from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from shared import app_config
from shared.access import SuperAdmin
from shared.app import SessionDep, SettingsDep, StateDep
from shared.errors import Unprocessable
from shared.models import InstallationConfig

router = APIRouter(prefix="/api/v1/super_admin", tags=["super admin"])


def _group(config: str) -> tuple[str, ...]:
    keys = app_config.CONFIG_GROUPS.get(config)
    if keys is None:
        raise Unprocessable(f"unknown config {config!r}; known: {', '.join(app_config.CONFIG_GROUPS)}")
    return keys


async def _view(
    session: SessionDep, settings: SettingsDep, keys: tuple[str, ...], config: str
) -> dict[str, Any]:
    values = await app_config.effective_values(session, settings)
    stored = set(
        await session.scalars(select(InstallationConfig.name).where(InstallationConfig.name.in_(keys)))
    )
    return {
        "config": config,
        "values": {key: app_config.mask(key, values[key]) for key in keys},
        "sources": {key: "database" if key in stored else "environment" for key in keys},
        "cache_seconds": settings.APP_CONFIG_CACHE_SECONDS,
    }


@router.get("/app_config")
async def read_app_config(
    _: SuperAdmin, session: SessionDep, settings: SettingsDep, config: str = Query("instagram")
) -> dict[str, Any]:
    """Every setting of the group, secrets masked, and where each value comes from."""
    return await _view(session, settings, _group(config), config)


@router.post("/app_config")
async def save_app_config(
    body: dict[str, Any],
    _: SuperAdmin,
    session: SessionDep,
    settings: SettingsDep,
    state: StateDep,
    config: str = Query("instagram"),
) -> dict[str, Any]:
    """Save some or all settings; every service uses them within `cache_seconds`."""
    keys = _group(config)
    unknown = sorted(set(body) - set(keys))
    if unknown or not body:
        raise Unprocessable(f"unknown or missing settings {unknown}; known: {', '.join(keys)}")
    for key, value in body.items():
        await app_config.save_value(session, key=key, raw=value)
    await session.commit()
    state["app_config"].invalidate()
    return await _view(session, settings, keys, config)
