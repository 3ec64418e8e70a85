import httpx

from shared.models import Role
from tests.conftest import Factory


async def test_administrator_manages_webhooks_and_sees_the_secret_once(
    messaging_client: httpx.AsyncClient, factory: Factory
) -> None:
    account = await factory.account()
    headers = await factory.headers(account)
    base = f"/api/v1/accounts/{account.id}/webhooks"

    created = await messaging_client.post(
        base,
        json={"url": "https://hooks.example.com/in", "subscriptions": ["message_created"]},
        headers=headers,
    )
    assert created.status_code == 200, created.text
    webhook = created.json()["payload"]["webhook"]
    assert len(webhook["secret"]) == 64
    assert webhook["subscriptions"] == ["message_created"] and webhook["enabled"] is True

    listed = (await messaging_client.get(base, headers=headers)).json()["payload"]["webhooks"]
    assert [w["id"] for w in listed] == [webhook["id"]]
    assert "secret" not in listed[0]

    updated = await messaging_client.patch(
        f"{base}/{webhook['id']}",
        json={"subscriptions": ["conversation_created", "message_created"]},
        headers=headers,
    )
    assert updated.json()["payload"]["webhook"]["subscriptions"] == [
        "conversation_created",
        "message_created",
    ]
    assert "secret" not in updated.json()["payload"]["webhook"]

    assert (await messaging_client.delete(f"{base}/{webhook['id']}", headers=headers)).json() == {
        "success": True
    }
    assert (await messaging_client.get(f"{base}/{webhook['id']}", headers=headers)).status_code == 404


async def test_invalid_urls_events_and_inboxes_are_refused(
    messaging_client: httpx.AsyncClient, factory: Factory
) -> None:
    account, other = await factory.account(), await factory.account("Other")
    foreign_inbox = await factory.inbox(other)
    headers = await factory.headers(account)
    base = f"/api/v1/accounts/{account.id}/webhooks"
    cases = [
        ({"url": "ftp://example.com/x", "subscriptions": ["message_created"]}, "http or https"),
        ({"url": "https://user:pw@example.com/x", "subscriptions": ["message_created"]}, "credentials"),
        ({"url": "https://example.com/x", "subscriptions": ["no_such_event"]}, "subscriptions"),
        ({"url": "https://example.com/x", "subscriptions": []}, "subscriptions"),
        (
            {
                "url": "https://example.com/x",
                "subscriptions": ["message_created"],
                "inbox_id": foreign_inbox.id,
            },
            "inbox",
        ),
    ]
    for body, words in cases:
        response = await messaging_client.post(base, json=body, headers=headers)
        assert response.status_code == 422, body
        assert words in response.json()["error"], response.json()


async def test_webhooks_are_for_administrators_of_the_account_only(
    messaging_client: httpx.AsyncClient, factory: Factory
) -> None:
    account, other = await factory.account(), await factory.account("Other")
    agent = await factory.headers(account, role=Role.AGENT)
    outsider = await factory.headers(other)
    base = f"/api/v1/accounts/{account.id}/webhooks"
    assert (await messaging_client.get(base, headers=agent)).status_code == 403
    assert (await messaging_client.get(base, headers=outsider)).status_code == 404
    assert (await messaging_client.get(base)).status_code == 401
