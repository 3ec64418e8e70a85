import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import AccountUser
from tests.conftest import Factory


async def test_platform_app_creates_account_user_and_membership(
    auth_client: httpx.AsyncClient, messaging_client: httpx.AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    headers = {"api_access_token": await factory.platform_token()}

    account = await auth_client.post("/platform/api/v1/accounts", json={"name": "Acme"}, headers=headers)
    user = await auth_client.post(
        "/platform/api/v1/users",
        json={"name": "Ana", "email": "Ana@Example.com", "password": "s3cret-pass"},
        headers=headers,
    )
    assert account.status_code == 200, account.text
    assert user.status_code == 200, user.text
    account_id, user_id = account.json()["id"], user.json()["id"]
    assert account.json()["name"] == "Acme"
    assert user.json()["email"] == "ana@example.com" and user.json()["access_token"]

    membership = await auth_client.post(
        f"/platform/api/v1/accounts/{account_id}/account_users",
        json={"user_id": user_id, "role": "administrator"},
        headers=headers,
    )
    assert membership.json() == {"account_id": account_id, "user_id": user_id, "role": "administrator"}
    assert (
        await db.scalar(select(AccountUser.role).where(AccountUser.user_id == user_id))
    ) == "administrator"

    profile = await messaging_client.get(
        "/api/v1/profile", headers={"api_access_token": user.json()["access_token"]}
    )
    assert profile.status_code == 200
    assert profile.json()["accounts"] == [{"id": account_id, "name": "Acme", "role": "administrator"}]


async def test_role_change_keeps_one_membership(
    auth_client: httpx.AsyncClient, factory: Factory, db: AsyncSession
) -> None:
    headers = {"api_access_token": await factory.platform_token()}
    account = await factory.account()
    user, _ = await factory.user()
    for role in ("agent", "administrator"):
        response = await auth_client.post(
            f"/platform/api/v1/accounts/{account.id}/account_users",
            json={"user_id": user.id, "role": role},
            headers=headers,
        )
        assert response.status_code == 200
    roles = list(await db.scalars(select(AccountUser.role).where(AccountUser.user_id == user.id)))
    assert roles == ["administrator"]


async def test_platform_api_refuses_missing_wrong_and_user_tokens(
    auth_client: httpx.AsyncClient, factory: Factory
) -> None:
    account = await factory.account()
    _, user_token = await factory.user(account)
    for headers in ({}, {"api_access_token": "nope"}, {"api_access_token": user_token}):
        response = await auth_client.post("/platform/api/v1/accounts", json={"name": "X"}, headers=headers)
        assert response.status_code == 401
        assert "error" in response.json()


async def test_duplicate_email_and_bad_input_are_clear_errors(
    auth_client: httpx.AsyncClient, factory: Factory
) -> None:
    headers = {"api_access_token": await factory.platform_token()}
    body = {"name": "Ana", "email": "ana@example.com", "password": "s3cret-pass"}
    assert (await auth_client.post("/platform/api/v1/users", json=body, headers=headers)).status_code == 200
    duplicate = await auth_client.post("/platform/api/v1/users", json=body, headers=headers)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"] == "a user with email ana@example.com already exists"
    invalid = await auth_client.post(
        "/platform/api/v1/users", json={**body, "email": "not-an-email"}, headers=headers
    )
    assert invalid.status_code == 422
    assert invalid.json()["error"].startswith("email:")
    missing = await auth_client.post(
        "/platform/api/v1/accounts/999999/account_users",
        json={"user_id": 1, "role": "agent"},
        headers=headers,
    )
    assert missing.status_code == 404
