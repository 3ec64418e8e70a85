"""Graph and Send API behaviour of the sandbox, and its signed webhooks."""

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import events
from sandbox.client import ACME, JANE, SandboxAdmin
from tests.support import eventually, free_port, serve_in_thread

SECRET = "sandbox-app-secret"


@pytest.fixture
async def graph(sandbox: SandboxAdmin, sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    token = await sandbox.token()
    async with httpx.AsyncClient(
        base_url=f"{sandbox_url}/v25.0", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


async def test_me_returns_requested_fields_with_distinct_id_and_user_id(graph: httpx.AsyncClient) -> None:
    me = (await graph.get("/me", params={"fields": "user_id,username,name,profile_picture_url"})).json()
    assert me["user_id"] == ACME and me["id"] == "26001234567890123" and me["username"] == "acme_shop"
    assert set(me) == {"id", "user_id", "username", "name", "profile_picture_url"}
    bad = await graph.get("/me", params={"fields": "nope"})
    assert bad.json()["error"]["code"] == 100


async def test_token_in_query_works_and_bad_version_is_refused(
    sandbox: SandboxAdmin, sandbox_url: str
) -> None:
    token = await sandbox.token()
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        assert (await client.get("/v25.0/me", params={"access_token": token})).status_code == 200
        assert (await client.get("/v25.0/me")).json()["error"]["code"] == 190
        assert (await client.get("/latest/me", params={"access_token": token})).status_code == 400


async def test_profile_needs_consent_and_a_known_customer(
    graph: httpx.AsyncClient, sandbox: SandboxAdmin
) -> None:
    no_consent = (await graph.get(f"/{JANE}", params={"fields": "name,username"})).json()
    assert no_consent["error"]["code"] == 230
    unknown = (await graph.get("/1199999999999999")).json()
    assert (unknown["error"]["code"], unknown["error"]["type"]) == (9010, "IGApiException")
    await sandbox.last_message(JANE)
    profile = (
        await graph.get(f"/{JANE}", params={"fields": "name,username,follower_count,is_verified_user"})
    ).json()
    assert profile == {
        "id": JANE,
        "name": "Jane Doe",
        "username": "jane.doe",
        "follower_count": 312,
        "is_verified_user": False,
    }


async def test_subscribed_apps(graph: httpx.AsyncClient) -> None:
    ok = await graph.post(
        "/me/subscribed_apps", params={"subscribed_fields": "messages,message_reactions,messaging_seen"}
    )
    assert ok.json() == {"success": True}
    listed = (await graph.get(f"/{ACME}/subscribed_apps")).json()
    assert listed["data"][0]["subscribed_fields"] == ["messages", "message_reactions", "messaging_seen"]
    assert (
        await graph.post("/me/subscribed_apps", params={"subscribed_fields": "messaging_reactions"})
    ).json()["error"]["code"] == 100
    assert (await graph.delete("/me/subscribed_apps")).json() == {"success": True}
    assert (await graph.get("/me/subscribed_apps")).json()["data"][0]["subscribed_fields"] == []


def _text(body: str, **extra: object) -> dict[str, object]:
    return {"recipient": {"id": JANE}, "message": {"text": body}, **extra}


async def test_messaging_window_24_hours_then_human_agent_for_7_days(
    graph: httpx.AsyncClient, sandbox: SandboxAdmin
) -> None:
    assert (await graph.post("/me/messages", json=_text("hi"))).json()["error"][
        "error_subcode"
    ] == 2534022  # never wrote
    await sandbox.last_message(JANE, seconds_ago=23 * 3600)
    sent = (await graph.post("/me/messages", json=_text("inside"))).json()
    assert sent["recipient_id"] == JANE and sent["message_id"]

    await sandbox.last_message(JANE, seconds_ago=3 * 86400)
    outside = (await graph.post("/me/messages", json=_text("late"))).json()["error"]
    assert (outside["code"], outside["error_subcode"]) == (10, 2534022)
    tagged = await graph.post(
        f"/{ACME}/messages", json=_text("agent", tag="HUMAN_AGENT", messaging_type="MESSAGE_TAG")
    )
    assert tagged.status_code == 200
    await sandbox.configure(human_agent_enabled=False)
    assert (await graph.post("/me/messages", json=_text("agent", tag="HUMAN_AGENT"))).json()["error"][
        "code"
    ] == 10

    await sandbox.configure(human_agent_enabled=True)
    await sandbox.last_message(JANE, seconds_ago=8 * 86400)
    assert (await graph.post("/me/messages", json=_text("too late", tag="HUMAN_AGENT"))).json()["error"][
        "code"
    ] == 10
    assert [s["body"]["message"]["text"] for s in await sandbox.sent()] == ["inside", "agent"]


async def test_text_limit_is_1000_bytes_not_characters(
    graph: httpx.AsyncClient, sandbox: SandboxAdmin
) -> None:
    await sandbox.last_message(JANE)
    assert (await graph.post("/me/messages", json=_text("a" * 1000))).status_code == 200
    too_long = await graph.post("/me/messages", json=_text("é" * 501))  # 1002 bytes, 501 characters
    assert too_long.json()["error"]["code"] == 100


async def test_payload_validation(graph: httpx.AsyncClient, sandbox: SandboxAdmin) -> None:
    await sandbox.last_message(JANE)
    cases = [
        {"recipient": {"id": "1199999999999999"}, "message": {"text": "x"}},
        {"recipient": {"id": JANE}, "message": {}},
        {
            "recipient": {"id": JANE},
            "message": {"attachment": {"type": "hologram", "payload": {"url": "https://x/y"}}},
        },
        {"recipient": {"id": JANE}, "message": {"attachment": {"type": "image", "payload": {}}}},
    ]
    for body in cases:
        assert (await graph.post("/me/messages", json=body)).json()["error"]["code"] == 100
    image = {
        "recipient": {"id": JANE},
        "message": {"attachment": {"type": "image", "payload": {"url": "https://x/a.png"}}},
    }
    assert (await graph.post("/me/messages", json=image)).status_code == 200


async def test_send_rate_limit_per_account(graph: httpx.AsyncClient, sandbox: SandboxAdmin) -> None:
    await sandbox.configure(send_rate_limit_per_second=3)
    await sandbox.last_message(JANE)
    answers = [await graph.post("/me/messages", json=_text(str(i))) for i in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    error = answers[3].json()["error"]
    assert (error["code"], error["error_subcode"]) == (613, 2534040)


async def test_fault_injection(graph: httpx.AsyncClient, sandbox: SandboxAdmin) -> None:
    await sandbox.fault("/me$", times=1, status=500, body="<html>oops</html>")
    await sandbox.fault("/me$", times=1, error={"code": 2, "message": "Temporary"})
    await sandbox.fault("/me$", times=1, hang_seconds=0.3)
    first, second, third, fourth = [await graph.get("/me") for _ in range(4)]
    assert (first.status_code, first.text) == (500, "<html>oops</html>")
    assert second.json()["error"]["code"] == 2
    assert third.status_code == fourth.status_code == 200
    log = await sandbox.requests("/me")
    assert [r["status"] for r in log] == [500, 400, 200, 200]
    assert all("IGAA" not in r["query"] for r in log)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return Response("EVENT_RECEIVED")

    with serve_in_thread(Starlette(routes=[Route("/hook", handle, methods=["POST"])]), free_port()) as url:
        yield f"{url}/hook", received


def _valid(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-hub-signature-256"], expected)


async def test_reply_is_echoed_as_a_signed_webhook_with_the_same_mid(
    graph: httpx.AsyncClient, sandbox: SandboxAdmin, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    await sandbox.configure(webhook_url=url)
    await sandbox.last_message(JANE)
    mid = (await graph.post("/me/messages", json=_text("Ships today ✓"))).json()["message_id"]

    async def arrived() -> bool:
        return bool(received)

    await eventually(arrived)
    headers, body = received[0]
    assert _valid(headers, body)
    assert b"\\u2713" in body  # escaped like Meta
    item = json.loads(body)["entry"][0]["messaging"][0]
    assert item["message"] == {"mid": mid, "text": "Ships today ✓", "is_echo": True}
    assert item["sender"]["id"] == ACME and item["recipient"]["id"] == JANE


async def test_webhook_sender_batches_redelivers_and_opens_the_window(
    sandbox: SandboxAdmin, receiver: tuple[str, list[tuple[dict[str, str], bytes]]], graph: httpx.AsyncClient
) -> None:
    url, received = receiver
    await sandbox.configure(webhook_url=url)
    result = await sandbox.batch(
        [
            {"kind": "text", "fields": {"text": "one"}},
            {"kind": "attachment", "fields": {"type": "video"}},
            {"kind": "reaction", "fields": {"mid": "m1"}},
        ],
        separate_entries=True,
        redeliver=2,
    )
    assert result["statuses"] == [200, 200, 200]
    assert len(received) == 3 and received[0][1] == received[1][1] == received[2][1]
    assert all(_valid(h, b) for h, b in received)
    assert len(json.loads(received[0][1])["entry"]) == 3
    assert (await graph.post("/me/messages", json=_text("now allowed"))).status_code == 200


def test_builders_produce_the_documented_shapes() -> None:
    story = events.attachment(JANE, ACME, type="story_mention", url="https://cdn/x")
    assert story["message"]["attachments"] == [{"type": "story_mention", "payload": {"url": "https://cdn/x"}}]
    assert events.edit(JANE, ACME, mid="m", text="t")["message_edit"] == {
        "mid": "m",
        "text": "t",
        "num_edit": 1,
    }
    assert events.unreaction(JANE, ACME, mid="m")["reaction"] == {"mid": "m", "action": "unreact"}
    assert events.story_reply(JANE, ACME, text="wow")["message"]["reply_to"]["story"]["id"]
    assert events.dashboard_test()["id"] == "0"
    change = events.postback_change(JANE, ACME)
    assert (
        change["changes"][0]["field"] == "messaging_postbacks"
        and "timestamp" not in change["changes"][0]["value"]
    )
    item = events.text(JANE, ACME, text="hi")
    assert item["timestamp"] > 10**12 and isinstance(item["sender"]["id"], str)
