from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter

from shared.access import AccountAdministrator, AccountMember, SuperAdmin
from shared.app import create_app
from shared.models import Role
from tests.conftest import Factory, _asgi_client

router = APIRouter()


@router.get("/api/v1/accounts/{account_id}/secret")
async def member_only(member: AccountMember) -> dict[str, object]:
    return {"account_id": member.account_id, "role": member.role}


@router.delete("/api/v1/accounts/{account_id}/secret")
async def administrator_only(member: AccountAdministrator) -> dict[str, object]:
    return {"deleted": True}


@router.get("/api/v1/super_admin/ping")
async def super_admin_only(user: SuperAdmin) -> dict[str, object]:
    return {"user": user.id}


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for client in _asgi_client(create_app("access test", routers=[router])):
        yield client


async def test_missing_and_wrong_tokens_are_401(client: httpx.AsyncClient, factory: Factory) -> None:
    account = await factory.account()
    missing = await client.get(f"/api/v1/accounts/{account.id}/secret")
    wrong = await client.get(f"/api/v1/accounts/{account.id}/secret", headers={"api_access_token": "forged"})
    assert (missing.status_code, missing.json()) == (401, {"error": "missing api_access_token header"})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid access token"})


async def test_other_accounts_are_invisible(client: httpx.AsyncClient, factory: Factory) -> None:
    mine, theirs = await factory.account("Mine"), await factory.account("Theirs")
    headers = await factory.headers(mine)
    assert (await client.get(f"/api/v1/accounts/{mine.id}/secret", headers=headers)).status_code == 200
    foreign = await client.get(f"/api/v1/accounts/{theirs.id}/secret", headers=headers)
    assert (foreign.status_code, foreign.json()) == (404, {"error": "account not found"})


async def test_agents_cannot_do_what_administrators_do(client: httpx.AsyncClient, factory: Factory) -> None:
    account = await factory.account()
    agent = await factory.headers(account, role=Role.AGENT)
    admin = await factory.headers(account, role=Role.ADMINISTRATOR)
    assert (await client.get(f"/api/v1/accounts/{account.id}/secret", headers=agent)).json()[
        "role"
    ] == "agent"
    refused = await client.delete(f"/api/v1/accounts/{account.id}/secret", headers=agent)
    assert refused.status_code == 403
    assert (await client.delete(f"/api/v1/accounts/{account.id}/secret", headers=admin)).status_code == 200


async def test_super_admin_routes_need_a_super_admin(client: httpx.AsyncClient, factory: Factory, db) -> None:  # type: ignore[no-untyped-def]
    account = await factory.account()
    user, token = await factory.user(account)
    assert (
        await client.get("/api/v1/super_admin/ping", headers={"api_access_token": token})
    ).status_code == 401
    user.super_admin = True
    await db.commit()
    assert (
        await client.get("/api/v1/super_admin/ping", headers={"api_access_token": token})
    ).status_code == 200
