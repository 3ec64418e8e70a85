import asyncio
import os
import subprocess
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.app_config import AppConfigCache
from shared.models import Account
from shared.settings import Settings
from tests.conftest import Factory


async def _super_admin(factory: Factory, db: AsyncSession) -> dict[str, str]:
    user, token = await factory.user()
    user.super_admin = True
    await db.commit()
    return {"api_access_token": token}


async def test_super_admin_reads_masked_values_and_their_sources(
    auth_client: httpx.AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    headers = await _super_admin(factory, db)
    view = (
        await auth_client.get(
            "/api/v1/super_admin/app_config", params={"config": "instagram"}, headers=headers
        )
    ).json()
    assert view["values"]["INSTAGRAM_APP_ID"] == "990000000000001"
    assert view["values"]["INSTAGRAM_APP_SECRET"] == "********cret"  # never in clear
    assert view["sources"]["INSTAGRAM_APP_SECRET"] == "environment"


async def test_saved_values_win_over_the_environment_and_secrets_are_encrypted(
    auth_client: httpx.AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    headers = await _super_admin(factory, db)
    saved = await auth_client.post(
        "/api/v1/super_admin/app_config",
        params={"config": "instagram"},
        json={
            "INSTAGRAM_APP_ID": "123456789",
            "INSTAGRAM_APP_SECRET": "brand-new-app-secret",
            "ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT": "true",
        },
        headers=headers,
    )
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["values"]["INSTAGRAM_APP_SECRET"] == "********cret"
    assert body["values"]["ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT"] is True
    assert body["sources"]["INSTAGRAM_APP_ID"] == "database"
    stored = await db.scalar(
        text("SELECT value::text FROM installation_configs WHERE name = 'INSTAGRAM_APP_SECRET'")
    )
    assert stored is not None and "brand-new-app-secret" not in stored

    account = await factory.account()
    url = (
        await auth_client.post(
            f"/api/v1/accounts/{account.id}/instagram/authorization", headers=await factory.headers(account)
        )
    ).json()["url"]
    assert parse_qs(urlsplit(url).query)["client_id"] == ["123456789"]


async def test_app_config_refuses_unknown_keys_bad_values_and_non_super_admins(
    auth_client: httpx.AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    headers = await _super_admin(factory, db)
    unknown = await auth_client.post("/api/v1/super_admin/app_config", json={"FOO": "1"}, headers=headers)
    assert unknown.status_code == 422 and "FOO" in unknown.json()["error"]
    bad = await auth_client.post(
        "/api/v1/super_admin/app_config",
        json={"ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT": "maybe"},
        headers=headers,
    )
    assert bad.status_code == 422 and "true or false" in bad.json()["error"]
    account: Account = await factory.account()
    administrator = await factory.headers(account)
    assert (await auth_client.get("/api/v1/super_admin/app_config", headers=administrator)).status_code == 401


def test_inboxctl_config_set_and_get_mask_secrets() -> None:
    def inboxctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shared.cli", *args], capture_output=True, text=True, env=os.environ.copy()
        )

    assert inboxctl("config", "set", "INSTAGRAM_VERIFY_TOKEN", "my-verify-token").returncode == 0
    shown = inboxctl("config", "get", "INSTAGRAM_VERIFY_TOKEN")
    assert shown.stdout.strip() == "********oken"
    assert inboxctl("config", "set", "NOPE", "1").returncode == 2


async def test_callers_arriving_while_the_cache_is_stale_share_one_read(
    engine: Any, settings: Settings
) -> None:
    reads = 0
    sessionmaker = async_sessionmaker(engine)

    def counted() -> AsyncSession:
        nonlocal reads
        reads += 1
        return sessionmaker()

    cache = AppConfigCache(counted, settings)  # type: ignore[arg-type]
    apps = await asyncio.gather(*(cache.get() for _ in range(20)))
    assert reads == 1 and {app.app_id for app in apps} == {"990000000000001"}
    cache.invalidate()
    await asyncio.gather(*(cache.get() for _ in range(5)))
    assert reads == 2
