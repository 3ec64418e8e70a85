"""The Application API's shapes, filters and isolation (Chatwoot's paths and field names)."""

from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox.client import SandboxAdmin
from shared.models import Role
from tests.api.conftest import Threads
from tests.conftest import Factory

INBOX_FIELDS = {
    "id",
    "name",
    "channel_type",
    "channel_id",
    "instagram_id",
    "avatar_url",
    "reauthorization_required",
}
CONTACT_FIELDS = {"id", "name", "thumbnail", "additional_attributes", "contact_inboxes"}
CONVERSATION_FIELDS = {
    "id",
    "account_id",
    "inbox_id",
    "status",
    "can_reply",
    "unread_count",
    "last_activity_at",
    "timestamp",
    "meta",
    "messages",
}
MESSAGE_FIELDS = {
    "id",
    "content",
    "message_type",
    "content_type",
    "content_attributes",
    "status",
    "source_id",
    "private",
    "created_at",
    "conversation_id",
    "inbox_id",
    "sender",
    "attachments",
}


async def test_inbox_shapes_update_and_delete(
    messaging_client: httpx.AsyncClient, factory: Factory, sandbox: SandboxAdmin
) -> None:
    account = await factory.account()
    token = await sandbox.token()
    inbox = await factory.inbox(account, access_token=token)
    headers = await factory.headers(account)
    base = f"/api/v1/accounts/{account.id}/inboxes"

    listed = (await messaging_client.get(base, headers=headers)).json()["payload"]
    assert len(listed) == 1 and INBOX_FIELDS <= set(listed[0])
    assert (
        listed[0]["channel_type"] == "Channel::Instagram" and listed[0]["instagram_id"] == "17841400000000001"
    )
    assert (await messaging_client.get(f"{base}/{inbox.id}", headers=headers)).json()["id"] == inbox.id

    agent = await factory.headers(account, role=Role.AGENT)
    assert (
        await messaging_client.patch(
            f"{base}/{inbox.id}", json={"lock_to_single_conversation": False}, headers=agent
        )
    ).status_code == 403
    updated = await messaging_client.patch(
        f"{base}/{inbox.id}", json={"lock_to_single_conversation": False}, headers=headers
    )
    assert updated.json()["lock_to_single_conversation"] is False

    async with httpx.AsyncClient(base_url=sandbox.base_url) as meta:
        await meta.post(
            "/v25.0/me/subscribed_apps", params={"subscribed_fields": "messages", "access_token": token}
        )
    assert (await messaging_client.delete(f"{base}/{inbox.id}", headers=agent)).status_code == 403
    assert (await messaging_client.delete(f"{base}/{inbox.id}", headers=headers)).json() == {"success": True}
    assert (await messaging_client.get(base, headers=headers)).json()["payload"] == []
    assert (await sandbox.world())["businesses"][0]["subscribed_fields"] == []  # unsubscribed at Meta


async def test_inbox_delete_succeeds_even_when_meta_fails(
    messaging_client: httpx.AsyncClient, factory: Factory, sandbox: SandboxAdmin
) -> None:
    account = await factory.account()
    inbox = await factory.inbox(account, access_token=await sandbox.token())
    await sandbox.fault("subscribed_apps", status=500, body="<html>down</html>")
    answer = await messaging_client.delete(
        f"/api/v1/accounts/{account.id}/inboxes/{inbox.id}", headers=await factory.headers(account)
    )
    assert answer.json() == {"success": True}


async def test_contacts_pagination_search_and_conversations(
    messaging_client: httpx.AsyncClient, factory: Factory, threads: Threads
) -> None:
    account = await factory.account()
    inbox = await factory.inbox(account)
    headers = await factory.headers(account)
    for i in range(17):
        await threads.create(
            account,
            inbox,
            igsid=f"11900000000001{i:02d}",
            name=f"Person {i}",
            username=f"user_{i}",
            messages=1,
        )
    await threads.create(
        account, inbox, igsid="1190000000009999", name="Zoë 100%", username="zoe_special", messages=1
    )
    base = f"/api/v1/accounts/{account.id}/contacts"

    first = (await messaging_client.get(base, headers=headers)).json()
    second = (await messaging_client.get(base, params={"page": 2}, headers=headers)).json()
    assert (
        first["meta"] == {"count": 18, "current_page": 1}
        and len(first["payload"]) == 15
        and len(second["payload"]) == 3
    )
    contact = first["payload"][0]
    assert CONTACT_FIELDS <= set(contact)
    assert (
        contact["contact_inboxes"][0]["source_id"]
        and contact["contact_inboxes"][0]["inbox"]["id"] == inbox.id
    )

    assert [
        c["name"]
        for c in (await messaging_client.get(base, params={"q": "zoe_spec"}, headers=headers)).json()[
            "payload"
        ]
    ] == ["Zoë 100%"]
    assert [
        c["name"]
        for c in (await messaging_client.get(base, params={"q": "100%"}, headers=headers)).json()["payload"]
    ] == ["Zoë 100%"]
    assert (await messaging_client.get(base, params={"q": "user_1"}, headers=headers)).json()["meta"][
        "count"
    ] == 8

    shown = (await messaging_client.get(f"{base}/{contact['id']}", headers=headers)).json()["payload"]
    assert shown["id"] == contact["id"]
    conversations = (
        await messaging_client.get(f"{base}/{contact['id']}/conversations", headers=headers)
    ).json()["payload"]
    assert len(conversations) == 1 and conversations[0]["meta"]["sender"]["id"] == contact["id"]


async def test_conversation_list_filters_counts_and_shapes(
    messaging_client: httpx.AsyncClient, factory: Factory, threads: Threads, db: AsyncSession
) -> None:
    account = await factory.account()
    inbox = await factory.inbox(account)
    other_inbox = await factory.inbox(account, instagram_id="17841400000000002", username="other")
    user, token = await factory.user(account)
    headers = {"api_access_token": token}
    recent = await threads.create(account, inbox, igsid="1", last_incoming_ago=timedelta(minutes=5))
    old = await threads.create(account, inbox, igsid="2", last_incoming_ago=timedelta(days=2))
    await threads.create(account, other_inbox, igsid="3", status="resolved")
    recent.conversation.assignee_id = user.id
    await db.commit()
    base = f"/api/v1/accounts/{account.id}/conversations"

    data = (await messaging_client.get(base, headers=headers)).json()["data"]
    assert data["meta"] == {"mine_count": 1, "unassigned_count": 1, "assigned_count": 1, "all_count": 2}
    assert [c["id"] for c in data["payload"]] == [recent.conversation.display_id, old.conversation.display_id]
    first = data["payload"][0]
    assert CONVERSATION_FIELDS <= set(first)
    assert first["can_reply"] is True and data["payload"][1]["can_reply"] is False
    assert first["meta"]["sender"]["name"] == "Jane Doe" and first["meta"]["channel"] == "Channel::Instagram"
    assert first["messages"][0]["content"] == "message 2" and MESSAGE_FIELDS <= set(first["messages"][0])

    mine = (await messaging_client.get(base, params={"assignee_type": "me"}, headers=headers)).json()["data"][
        "payload"
    ]
    assert [c["id"] for c in mine] == [recent.conversation.display_id]
    resolved = (await messaging_client.get(base, params={"status": "resolved"}, headers=headers)).json()[
        "data"
    ]["payload"]
    assert [c["inbox_id"] for c in resolved] == [other_inbox.id]
    everything = (
        await messaging_client.get(base, params={"status": "all", "inbox_id": inbox.id}, headers=headers)
    ).json()
    assert everything["data"]["meta"]["all_count"] == 2
    counts = (await messaging_client.get(f"{base}/meta", params={"status": "all"}, headers=headers)).json()
    assert counts["meta"]["all_count"] == 3
    assert (await messaging_client.get(base, params={"status": "bogus"}, headers=headers)).status_code == 422


async def test_show_toggle_status_and_mark_read(
    messaging_client: httpx.AsyncClient, factory: Factory, threads: Threads
) -> None:
    account = await factory.account()
    inbox = await factory.inbox(account)
    headers = await factory.headers(account)
    thread = await threads.create(account, inbox)
    base = f"/api/v1/accounts/{account.id}/conversations/{thread.conversation.display_id}"

    assert (await messaging_client.get(base, headers=headers)).json()["unread_count"] == 3
    toggled = (await messaging_client.post(f"{base}/toggle_status", headers=headers)).json()
    assert toggled["payload"] == {
        "success": True,
        "current_status": "resolved",
        "conversation_id": thread.conversation.display_id,
    }
    pending = (
        await messaging_client.post(f"{base}/toggle_status", json={"status": "pending"}, headers=headers)
    ).json()
    assert pending["payload"]["current_status"] == "pending"
    assert (
        await messaging_client.post(f"{base}/toggle_status", json={"status": "gone"}, headers=headers)
    ).status_code == 422

    read = (await messaging_client.post(f"{base}/update_last_seen", headers=headers)).json()
    assert read["success"] is True
    assert (await messaging_client.get(base, headers=headers)).json()["unread_count"] == 0


async def test_messages_oldest_first_with_before_cursor(
    messaging_client: httpx.AsyncClient, factory: Factory, threads: Threads
) -> None:
    account = await factory.account()
    inbox = await factory.inbox(account)
    headers = await factory.headers(account)
    thread = await threads.create(account, inbox, messages=30)
    base = f"/api/v1/accounts/{account.id}/conversations/{thread.conversation.display_id}/messages"

    latest = (await messaging_client.get(base, headers=headers)).json()
    contents = [m["content"] for m in latest["payload"]]
    assert contents == [f"message {i}" for i in range(10, 30)]
    assert latest["meta"]["contact"]["name"] == "Jane Doe"
    message = latest["payload"][0]
    assert MESSAGE_FIELDS <= set(message)
    assert message["conversation_id"] == thread.conversation.display_id
    assert message["sender"] == {
        "id": thread.contact.id,
        "name": "Jane Doe",
        "thumbnail": "",
        "type": "contact",
    }
    older = (await messaging_client.get(base, params={"before": message["id"]}, headers=headers)).json()[
        "payload"
    ]
    assert [m["content"] for m in older] == [f"message {i}" for i in range(10)]
    fifty = (await messaging_client.get(base, params={"limit": 50}, headers=headers)).json()["payload"]
    assert len(fifty) == 30


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/inboxes"),
        ("GET", "/inboxes/{inbox}"),
        ("PATCH", "/inboxes/{inbox}"),
        ("DELETE", "/inboxes/{inbox}"),
        ("GET", "/contacts"),
        ("GET", "/contacts/{contact}"),
        ("GET", "/contacts/{contact}/conversations"),
        ("GET", "/conversations"),
        ("GET", "/conversations/meta"),
        ("GET", "/conversations/{conversation}"),
        ("POST", "/conversations/{conversation}/toggle_status"),
        ("POST", "/conversations/{conversation}/update_last_seen"),
        ("GET", "/conversations/{conversation}/messages"),
        ("POST", "/conversations/{conversation}/messages"),
        ("GET", "/webhooks"),
    ],
)
async def test_other_accounts_data_is_never_visible(
    messaging_client: httpx.AsyncClient, factory: Factory, threads: Threads, method: str, path: str
) -> None:
    theirs = await factory.account("Theirs")
    inbox = await factory.inbox(theirs)
    thread = await threads.create(theirs, inbox)
    mine = await factory.account("Mine")
    headers = await factory.headers(mine)
    filled = path.format(
        inbox=inbox.id, contact=thread.contact.id, conversation=thread.conversation.display_id
    )
    json = {"content": "hi"} if method in ("POST", "PATCH") else None
    # Their ids in my account: not found.
    answer = await messaging_client.request(
        method, f"/api/v1/accounts/{mine.id}{filled}", headers=headers, json=json
    )
    if answer.status_code == 200:
        body = answer.json()
        assert thread.contact.name not in answer.text and "message 0" not in answer.text, body
    else:
        assert answer.status_code == 404
    # Their account itself: not found for me.
    assert (
        await messaging_client.request(
            method, f"/api/v1/accounts/{theirs.id}{filled}", headers=headers, json=json
        )
    ).status_code == 404
    assert (
        await messaging_client.request(method, f"/api/v1/accounts/{theirs.id}{filled}", json=json)
    ).status_code == 401


async def test_ids_beyond_64_bits_are_a_client_error(
    messaging_client: httpx.AsyncClient, factory: Factory
) -> None:
    account = await factory.account()
    headers = await factory.headers(account)
    answer = await messaging_client.get(
        f"/api/v1/accounts/{account.id}/conversations/{2**63}", headers=headers
    )
    assert answer.status_code == 422 and "out of range" in answer.json()["error"]
