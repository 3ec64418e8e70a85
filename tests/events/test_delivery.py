import hashlib
import hmac
import json
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.webhooks import delivery
from services.messaging.webhooks.worker import EventsWorkerSettings
from shared import events
from shared.events import Event
from shared.models import Account, Webhook, WebhookDelivery, WebhookEvent
from shared.settings import Settings, get_settings
from tests.conftest import Factory
from tests.events.conftest import Receiver
from tests.support import run_worker


async def _webhook(
    client: httpx.AsyncClient, account: Account, headers: dict[str, str], url: str, subscriptions: list[str]
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/accounts/{account.id}/webhooks",
        json={"url": url, "subscriptions": subscriptions},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()["payload"]["webhook"]


async def _deliver_all(db: AsyncSession, redis: Any) -> None:
    async with AsyncSession(db.bind, expire_on_commit=False) as session:
        await delivery.dispatch_pending(session, redis, get_settings())
        await session.commit()
    await run_worker(EventsWorkerSettings)


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = hmac.new(
        secret.encode(), f"{headers['x-inbox-timestamp']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(headers["x-inbox-signature"], f"sha256={expected}")


async def test_each_event_kind_arrives_once_signed(
    messaging_client: httpx.AsyncClient, factory: Factory, db: AsyncSession, redis: Any, receiver: Receiver
) -> None:
    account = await factory.account()
    inbox = await factory.inbox(account)
    hook = await _webhook(
        messaging_client,
        account,
        await factory.headers(account),
        f"{receiver.url}/all",
        [e.value for e in Event],
    )
    for event in Event:
        events.emit(db, event=event, account_id=account.id, inbox_id=inbox.id)
    await db.commit()

    await _deliver_all(db, redis)

    arrived = receiver.at("/all")
    assert sorted(r.headers["x-inbox-event"] for r in arrived) == sorted(e.value for e in Event)
    for request in arrived:
        assert _verify(hook["secret"], request.headers, request.body)
        body = json.loads(request.body)
        assert body["event"] == request.headers["x-inbox-event"]
        assert body["account"] == {"id": account.id, "name": account.name}
        assert body["inbox"]["id"] == inbox.id
    assert len({r.headers["x-inbox-delivery"] for r in arrived}) == len(Event)


async def test_only_subscribed_events_of_the_chosen_inbox_are_sent(
    messaging_client: httpx.AsyncClient, factory: Factory, db: AsyncSession, redis: Any, receiver: Receiver
) -> None:
    account = await factory.account()
    inbox = await factory.inbox(account)
    other_inbox = await factory.inbox(account, instagram_id="17841400000000002", username="other")
    headers = await factory.headers(account)
    response = await messaging_client.post(
        f"/api/v1/accounts/{account.id}/webhooks",
        json={"url": f"{receiver.url}/one", "subscriptions": ["message_created"], "inbox_id": inbox.id},
        headers=headers,
    )
    assert response.status_code == 200
    events.emit(db, event=Event.MESSAGE_CREATED, account_id=account.id, inbox_id=inbox.id, message_id=1)
    events.emit(db, event=Event.MESSAGE_CREATED, account_id=account.id, inbox_id=other_inbox.id, message_id=2)
    events.emit(db, event=Event.CONTACT_CREATED, account_id=account.id, inbox_id=inbox.id, contact_id=3)
    await db.commit()

    await _deliver_all(db, redis)

    assert [json.loads(r.body)["inbox"]["id"] for r in receiver.at("/one")] == [inbox.id]


async def test_no_event_for_a_rolled_back_change(
    messaging_client: httpx.AsyncClient, factory: Factory, db: AsyncSession, redis: Any, receiver: Receiver
) -> None:
    account = await factory.account()
    await _webhook(
        messaging_client, account, await factory.headers(account), f"{receiver.url}/rb", ["contact_created"]
    )
    account_id = account.id
    events.emit(db, event=Event.CONTACT_CREATED, account_id=account_id, contact_id=9)
    await db.rollback()
    await db.commit()  # the session's next transaction does not bring it back
    async with AsyncSession(db.bind) as session:
        events.emit(session, event=Event.CONTACT_CREATED, account_id=account_id, contact_id=10)
    # closed without a commit

    await _deliver_all(db, redis)

    assert await db.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    assert receiver.at("/rb") == []


async def test_a_transactions_events_are_written_at_its_commit_in_the_order_emitted(
    factory: Factory, db: AsyncSession
) -> None:
    account = await factory.account()
    for contact_id in (3, 1, 2):
        events.emit(db, event=Event.CONTACT_CREATED, account_id=account.id, contact_id=contact_id)
    assert await db.scalar(select(func.count()).select_from(WebhookEvent)) == 0  # not before the commit
    await db.commit()
    written = await db.scalars(select(WebhookEvent).order_by(WebhookEvent.id))
    assert [(e.event, e.payload["subject"]["contact_id"]) for e in written] == [
        ("contact_created", 3),
        ("contact_created", 1),
        ("contact_created", 2),
    ]


async def test_retries_after_500s_and_timeouts_then_logs_every_attempt(
    messaging_client: httpx.AsyncClient, factory: Factory, db: AsyncSession, redis: Any, receiver: Receiver
) -> None:
    account = await factory.account()
    headers = await factory.headers(account)
    hook = await _webhook(messaging_client, account, headers, f"{receiver.url}/flaky", ["contact_created"])
    receiver.plan(
        "/flaky", (500, 0), (200, 2.0), (503, 0)
    )  # 500, then too slow (timeout 0.5 s), 503, then OK
    events.emit(db, event=Event.CONTACT_CREATED, account_id=account.id, contact_id=9)
    await db.commit()

    await _deliver_all(db, redis)

    log = (
        await messaging_client.get(
            f"/api/v1/accounts/{account.id}/webhooks/{hook['id']}/deliveries", headers=headers
        )
    ).json()["payload"]
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in reversed(log)] == [
        (1, 500, False),
        (2, None, False),
        (3, 503, False),
        (4, 200, True),
    ]
    assert log[2]["error"].startswith("timed out")
    assert (
        len({r.headers["x-inbox-delivery"] for r in receiver.at("/flaky")}) == 1
    )  # same delivery id on retries


async def test_a_webhook_failing_for_too_long_is_disabled(
    messaging_client: httpx.AsyncClient,
    factory: Factory,
    db: AsyncSession,
    redis: Any,
    receiver: Receiver,
    settings: Settings,
) -> None:
    account = await factory.account()
    headers = await factory.headers(account)
    hook = await _webhook(messaging_client, account, headers, f"{receiver.url}/down", ["contact_created"])
    receiver.plan("/down", *[(500, 0)] * 5)
    events.emit(db, event=Event.CONTACT_CREATED, account_id=account.id, contact_id=9)
    await db.commit()
    async with AsyncSession(db.bind, expire_on_commit=False) as session:
        await delivery.dispatch_pending(session, redis, get_settings())
        await session.commit()
    event_id = await db.scalar(select(WebhookEvent.id))
    quick_give_up = Settings(**{**settings.model_dump(), "WEBHOOK_DISABLE_AFTER_SECONDS": 0})

    async with httpx.AsyncClient() as http, AsyncSession(db.bind, expire_on_commit=False) as session:
        outcome = await delivery.deliver(
            session, http, quick_give_up, event_id=event_id, webhook_id=hook["id"], attempt=1
        )
        await session.commit()

    assert outcome.retry is False
    shown = (
        await messaging_client.get(f"/api/v1/accounts/{account.id}/webhooks/{hook['id']}", headers=headers)
    ).json()
    assert shown["payload"]["webhook"]["enabled"] is False
    assert "HTTP 500" in shown["payload"]["webhook"]["disabled_reason"]
    reenabled = await messaging_client.patch(
        f"/api/v1/accounts/{account.id}/webhooks/{hook['id']}", json={"enabled": True}, headers=headers
    )
    assert reenabled.json()["payload"]["webhook"]["enabled"] is True
    assert reenabled.json()["payload"]["webhook"]["disabled_reason"] is None


async def test_a_slow_endpoint_does_not_delay_another(
    messaging_client: httpx.AsyncClient, factory: Factory, db: AsyncSession, redis: Any, receiver: Receiver
) -> None:
    account = await factory.account()
    headers = await factory.headers(account)
    await _webhook(messaging_client, account, headers, f"{receiver.url}/slow", ["contact_created"])
    await _webhook(messaging_client, account, headers, f"{receiver.url}/fast", ["contact_created"])
    receiver.plan("/slow", *[(200, 0.4)] * 10)
    for contact_id in range(10):
        events.emit(db, event=Event.CONTACT_CREATED, account_id=account.id, contact_id=contact_id)
    await db.commit()

    await _deliver_all(db, redis)

    fast, slow = receiver.at("/fast"), receiver.at("/slow")
    assert len(fast) == len(slow) == 10
    # Ten slow answers in a row would take 4 s; the fast endpoint is served well before the slow
    # one is done, and the slow deliveries overlap instead of queueing behind each other.
    assert max(r.at for r in fast) < max(r.at for r in slow)
    assert max(r.at for r in slow) - min(r.at for r in slow) < 10 * 0.4 / 2


async def test_private_destinations_are_refused_unless_allowed(
    messaging_client: httpx.AsyncClient,
    factory: Factory,
    db: AsyncSession,
    redis: Any,
    receiver: Receiver,
    settings: Settings,
) -> None:
    strict = Settings(**{**settings.model_dump(), "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": False})
    from services.messaging.webhooks import service

    for url in (
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
    ):
        try:
            await service.check_destination(url, allow_private=False)
        except service.DestinationRefused as refused:
            assert "WEBHOOK_ALLOW_PRIVATE_ADDRESSES" in str(refused)
        else:
            raise AssertionError(f"{url} was not refused")

    account = await factory.account()
    hook = await _webhook(
        messaging_client,
        account,
        await factory.headers(account),
        f"{receiver.url}/private",
        ["contact_created"],
    )
    events.emit(db, event=Event.CONTACT_CREATED, account_id=account.id, contact_id=1)
    await db.commit()
    async with AsyncSession(db.bind, expire_on_commit=False) as session:
        await delivery.dispatch_pending(session, redis, get_settings())
        await session.commit()
    event_id = await db.scalar(select(WebhookEvent.id))
    async with httpx.AsyncClient() as http, AsyncSession(db.bind, expire_on_commit=False) as session:
        outcome = await delivery.deliver(
            session, http, strict, event_id=event_id, webhook_id=hook["id"], attempt=1
        )
        await session.commit()

    assert outcome.retry is False
    assert receiver.at("/private") == []
    logged = await db.scalar(select(WebhookDelivery.error).where(WebhookDelivery.webhook_id == hook["id"]))
    assert logged is not None and "private" in logged
    assert (await db.get(Webhook, hook["id"])) is not None


async def test_a_real_dm_and_reply_produce_chatwoot_shaped_events(
    messaging_client: httpx.AsyncClient,
    factory: Factory,
    db: AsyncSession,
    redis: Any,
    receiver: Receiver,
    sandbox: Any,
    webhooks_client: httpx.AsyncClient,
) -> None:
    from sandbox import events as meta
    from services.messaging.worker import OutboundWorkerSettings, WorkerSettings
    from tests.conftest import SANDBOX_APP_SECRET

    account = await factory.account()
    await factory.inbox(account, access_token=await sandbox.token())
    headers = await factory.headers(account)
    await _webhook(messaging_client, account, headers, f"{receiver.url}/all", [e.value for e in Event])
    await sandbox.last_message("1190000000000001")
    body = meta.encode(
        meta.envelope(
            meta.entry("17841400000000001", meta.text("1190000000000001", "17841400000000001", text="Hi!"))
        )
    )
    signed = {"X-Hub-Signature-256": meta.sign(body, SANDBOX_APP_SECRET), "Content-Type": "application/json"}
    assert (
        await webhooks_client.post("/webhooks/instagram", content=body, headers=signed)
    ).status_code == 200
    await run_worker(WorkerSettings)
    reply = await messaging_client.post(
        f"/api/v1/accounts/{account.id}/conversations/1/messages", json={"content": "Hello!"}, headers=headers
    )
    assert reply.status_code == 200
    await run_worker(OutboundWorkerSettings)
    await _deliver_all(db, redis)

    arrived = {}
    for request in receiver.at("/all"):
        arrived.setdefault(request.headers["x-inbox-event"], []).append(json.loads(request.body))
    assert set(arrived) >= {
        "contact_created",
        "contact_updated",
        "conversation_created",
        "message_created",
        "message_updated",
    }
    incoming = next(m for m in arrived["message_created"] if m["message_type"] == 0)
    assert incoming["content"] == "Hi!" and incoming["sender"]["type"] == "contact"
    assert (
        incoming["conversation"]["id"] == 1
        and incoming["conversation"]["meta"]["sender"]["name"] == "Jane Doe"
    )
    assert (
        arrived["conversation_created"][0]["id"] == 1
        and arrived["conversation_created"][0]["can_reply"] is True
    )
    sent = next(m for m in arrived["message_updated"] if m["id"] == reply.json()["id"])
    assert sent["status"] == "sent" and sent["changed_attributes"] == {"status": ["progress", "sent"]}
    assert len(arrived["message_created"]) == 2  # the customer's message and our reply, once each
