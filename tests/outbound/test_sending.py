"""Replies through the sandbox's Send API: exactly once, in order, within Meta's rules."""

import asyncio
import time
from functools import partial

import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select

from sandbox.client import JANE
from services.messaging.outbound import ratelimit
from services.messaging.outbound import service as outbound
from services.messaging.worker import WorkerSettings
from shared.app import open_state
from shared.models import ChannelInstagram, Message
from shared.settings import Settings, get_settings
from tests.outbound.conftest import Chat
from tests.support import run_worker


async def test_reply_is_stored_in_progress_then_sent_once_and_the_echo_does_not_duplicate(chat: Chat) -> None:
    reply = await chat.reply()
    assert (reply["status"], reply["source_id"], reply["message_type"]) == ("progress", None, 1)
    assert reply["sender"]["type"] == "user"

    await chat.send_all()
    sent = await chat.sandbox.sent()
    assert [s["body"]["message"]["text"] for s in sent] == ["Yes, it ships today."]
    assert sent[0]["body"]["recipient"] == {"id": JANE} and "tag" not in sent[0]["body"]
    message = await chat.message(reply["id"])
    assert (message.status, message.source_id) == ("sent", sent[0]["mid"])

    await run_worker(WorkerSettings)  # the sandbox's echo of our send arrives
    chat.db.expire_all()
    outgoing = list(await chat.db.scalars(select(Message).where(Message.message_type == 1)))
    assert [m.id for m in outgoing] == [reply["id"]]
    await chat.send_all()  # a repeated job sends nothing again
    assert len(await chat.sandbox.sent()) == 1


async def test_private_notes_are_never_sent(chat: Chat) -> None:
    note = await chat.reply("internal: VIP customer", private=True)
    await chat.send_all()
    assert note["private"] is True and note["status"] == "sent"
    assert await chat.sandbox.sent() == []


async def test_attachments_are_uploaded_and_sent(chat: Chat) -> None:
    image = b"\x89PNG fake image"
    files = {"attachments[]": ("photo.png", image, "image/png")}
    answer = await chat.api.post(
        chat.messages_url, data={"content": "See photo"}, files=files, headers=chat.headers
    )
    assert answer.status_code == 200, answer.text
    attachment = answer.json()["attachments"][0]
    assert (attachment["file_type"], attachment["extension"], attachment["file_size"]) == (
        "image",
        "png",
        len(image),
    )
    assert "/media/" in attachment["data_url"]
    await chat.send_all()
    bodies = [s["body"]["message"] for s in await chat.sandbox.sent()]
    assert bodies[0] == {"text": "See photo"}
    assert (
        bodies[1]["attachment"]["type"] == "image"
        and bodies[1]["attachment"]["payload"]["url"] == attachment["data_url"]
    )
    assert (await chat.message(answer.json()["id"])).status == "sent"


async def test_unsupported_attachments_and_long_text_are_refused_at_the_api(chat: Chat) -> None:
    files = {"attachments[]": ("run.exe", b"MZ", "application/x-msdownload")}
    refused = await chat.api.post(chat.messages_url, data={"content": "x"}, files=files, headers=chat.headers)
    assert refused.status_code == 422 and "does not accept" in refused.json()["error"]
    too_long = await chat.api.post(chat.messages_url, json={"content": "é" * 501}, headers=chat.headers)
    assert too_long.status_code == 422 and "1002 bytes" in too_long.json()["error"]
    empty = await chat.api.post(chat.messages_url, json={"content": ""}, headers=chat.headers)
    assert empty.status_code == 422
    assert (
        await chat.api.post(chat.messages_url, json={"content": "a" * 1000}, headers=chat.headers)
    ).status_code == 200


async def test_outside_the_window_fails_clearly_unless_human_agent_applies(chat: Chat) -> None:
    from shared import app_config

    await chat.sandbox.last_message(JANE, seconds_ago=3 * 86400)
    conversation_age = "UPDATE conversations SET last_incoming_at = now() - interval '3 days'"
    from sqlalchemy import text

    await chat.db.execute(text(conversation_age))
    await chat.db.commit()
    refused = await chat.reply("late answer")
    await chat.send_all()
    failed = await chat.message(refused["id"])
    assert failed.status == "failed" and "messaging window" in failed.content_attributes["external_error"]
    assert await chat.sandbox.sent() == []

    await app_config.save_value(chat.db, key="ENABLE_INSTAGRAM_CHANNEL_HUMAN_AGENT", raw=True)
    await chat.db.commit()
    tagged = await chat.reply("human agent answer")
    await chat.send_all()
    assert (await chat.message(tagged["id"])).status == "sent"
    body = (await chat.sandbox.sent())[0]["body"]
    assert (body["tag"], body["messaging_type"]) == ("HUMAN_AGENT", "MESSAGE_TAG")

    await chat.db.execute(text("UPDATE conversations SET last_incoming_at = now() - interval '8 days'"))
    await chat.db.commit()
    beyond = await chat.reply("too late even for an agent")
    await chat.send_all()
    assert (await chat.message(beyond["id"])).status == "failed"


async def test_transient_errors_and_rate_limits_are_retried_until_sent(chat: Chat) -> None:
    await chat.sandbox.fault("/messages$", times=1, status=500, body="<html>oops</html>")
    await chat.sandbox.fault("/messages$", times=1, error={"code": 2, "message": "Temporary"})
    await chat.sandbox.fault(
        "/messages$", times=1, error={"code": 613, "subcode": 2534040, "message": "rate limit"}
    )
    reply = await chat.reply()
    await chat.send_all()
    message = await chat.message(reply["id"])
    assert message.status == "sent" and message.content_attributes["send_failures"] == 3
    assert len(await chat.sandbox.sent()) == 1


async def test_permanent_errors_fail_with_metas_message(chat: Chat) -> None:
    await chat.sandbox.fault(
        "/messages$", error={"code": 100, "subcode": 2534015, "message": "Invalid message data"}
    )
    reply = await chat.reply()
    await chat.send_all()
    message = await chat.message(reply["id"])
    assert (message.status, message.content_attributes["external_error"]) == (
        "failed",
        "Invalid message data",
    )


async def test_token_errors_fail_the_message_and_count_toward_reauthorization(chat: Chat) -> None:
    await chat.sandbox.fault(
        "/messages$", times=3, error={"code": 190, "subcode": 460, "message": "Password changed"}
    )
    replies = [await chat.reply(f"try {i}") for i in range(3)]
    await chat.send_all()
    for reply in replies:
        message = await chat.message(reply["id"])
        assert message.status == "failed" and "token" in message.content_attributes["external_error"]
    channel = (await chat.db.scalars(select(ChannelInstagram))).one()
    await chat.db.refresh(channel)
    assert channel.reauthorization_required is True
    after = await chat.reply("while flagged")
    await chat.send_all()
    assert "re-authorized" in (await chat.message(after["id"])).content_attributes["external_error"]
    assert len(await chat.sandbox.requests("/messages")) == 3  # nothing more was sent with the dead token


async def test_a_timeout_after_sending_is_never_resent_and_the_echo_confirms_it(chat: Chat) -> None:
    await chat.sandbox.fault("/messages$", times=1, hang_seconds=4)  # longer than GRAPH_TIMEOUT_SECONDS (3 s)
    reply = await chat.reply("did it go?")
    await chat.send_all()
    message = await chat.message(reply["id"])
    assert message.status == "progress" and message.content_attributes["outcome_unknown"] is True
    await asyncio.sleep(1.5)  # the sandbox finishes the hung request and sends its echo
    await run_worker(WorkerSettings)
    chat.db.expire_all()
    message = await chat.message(reply["id"])
    assert message.status == "sent" and message.source_id == (await chat.sandbox.sent())[0]["mid"]
    assert len(await chat.sandbox.sent()) == 1
    assert (
        await chat.db.scalar(select(func.count()).select_from(Message).where(Message.message_type == 1)) == 1
    )


async def test_messages_of_a_conversation_go_out_in_order_with_concurrent_workers(chat: Chat) -> None:
    replies = [await chat.reply(f"part {i}") for i in range(12)]
    from services.messaging.worker import OutboundWorkerSettings
    from tests.support import run_worker as burst

    await asyncio.gather(*(burst(OutboundWorkerSettings) for _ in range(3)))
    sent = [s["body"]["message"]["text"] for s in await chat.sandbox.sent()]
    assert sent == [f"part {i}" for i in range(12)]
    chat.db.expire_all()
    assert {(await chat.message(r["id"])).status for r in replies} == {"sent"}


async def test_a_reply_queued_behind_others_checks_back_later_the_more_there_are(
    chat: Chat, settings: Settings
) -> None:
    """The chain of earlier replies sends it; its own job only checks back, later the further
    back it is queued, so a busy conversation's waiting replies are not read again and again."""
    replies = [await chat.reply(f"queued {i}") for i in range(3)]
    async with open_state(settings) as state:
        app = await state["app_config"].get()
        waits = []
        for reply in replies[1:]:
            async with state["sessionmaker"]() as session:
                with pytest.raises(outbound.Deferred) as deferred:
                    await outbound.send(
                        session, state["graph"], state["redis"], settings, app, message_id=reply["id"]
                    )
                waits.append(deferred.value.seconds)
    assert waits == [outbound.ORDER_RECHECK_SECONDS, 2 * outbound.ORDER_RECHECK_SECONDS]
    assert await chat.sandbox.sent() == []


async def test_an_accounts_sends_are_paced_under_metas_limit(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst larger than a second's allowance goes out completely, never faster than the limit."""
    limit = 4  # below what one conversation can send unpaced, so the pacing is what is measured
    monkeypatch.setattr(get_settings(), "SEND_RATE_LIMIT_PER_SECOND", limit)
    for i in range(2 * limit + 5):
        await chat.reply(f"burst {i}")
    from services.messaging.worker import OutboundWorkerSettings
    from tests.support import run_worker as burst

    await asyncio.gather(*(burst(OutboundWorkerSettings) for _ in range(2)))
    sent = await chat.sandbox.sent()
    assert [s["body"]["message"]["text"] for s in sent] == [f"burst {i}" for i in range(2 * limit + 5)]
    times = sorted(s["at"] for s in sent)
    # The sandbox notes each arrival on a thread of this (busy) test process, up to ~50 ms late:
    # a window 0.1 s short of a second still holds every send of a second's slots, no more.
    busiest = max(sum(1 for t in times if start <= t < start + 0.9) for start in times)
    assert limit - 1 <= busiest <= limit  # paced at the limit: neither above it nor far below


async def test_a_reply_another_job_is_sending_waits_and_a_cut_off_send_awaits_the_echo(
    chat: Chat, settings: Settings
) -> None:
    """A send marker younger than a request can take is another job waiting for Meta's answer:
    defer. Older, the send was cut off (a crash): never resend, wait for Meta's echo."""
    reply = await chat.reply("in flight")
    message = await chat.message(reply["id"])
    message.content_attributes = {"sending_part": "text", "sending_at": time.time()}
    await chat.db.commit()
    async with open_state(settings) as state, state["sessionmaker"]() as session:
        app = await state["app_config"].get()
        send = partial(
            outbound.send, session, state["graph"], state["redis"], settings, app, message_id=reply["id"]
        )
        with pytest.raises(outbound.Deferred):
            await send()
        await session.rollback()
        message = await chat.message(reply["id"])
        message.content_attributes = {"sending_part": "text", "sending_at": time.time() - 60}
        await chat.db.commit()
        assert await send() is None
        await session.commit()
    message = await chat.message(reply["id"])
    assert message.status == "progress" and message.content_attributes["outcome_unknown"] is True
    assert await chat.sandbox.sent() == []


async def test_a_missed_send_slot_is_given_up_for_a_new_one(redis: ArqRedis) -> None:
    first = await ratelimit.reserve(redis, channel_id=1, kind="text", limit=1, part="1:text")
    later = await ratelimit.reserve(redis, channel_id=1, kind="text", limit=1, part="2:text")
    assert first.now and not later.now  # one a second: the second part's slot is kept for it
    await redis.set("instagram-inbox:send-pace:1:text", "0")  # the account's sends moved on...
    missed = int((time.time() - 1) * 1_000_000)  # ...and the kept slot passed a second ago
    await redis.set("instagram-inbox:send-slot:2:text", str(missed))
    again = await ratelimit.reserve(redis, channel_id=1, kind="text", limit=1, part="2:text")
    assert again.now and again.seconds == 0  # a fresh slot (now), not the missed one sent late
    assert int(await redis.get("instagram-inbox:send-pace:1:text")) > missed + 1_000_000


async def test_a_late_send_goes_out_while_the_accounts_last_second_has_room(redis: ArqRedis) -> None:
    """However late a part wakes for its slot, the send log decides: counted and sent while
    fewer than the limit went out in the window, told how long to wait once it is full."""
    turn = await ratelimit.take(redis, channel_id=1, kind="text", limit=100, part="1:text")
    await asyncio.sleep(0.05)  # it wakes far past its slot (a busy machine)
    assert await turn.arrive(redis) is None  # sent, not given up

    def sending(part: str) -> ratelimit.Turn:  # a part whose slot has come, on a pace of 2 a second
        return ratelimit.Turn(defer=None, due=0.0, log="instagram-inbox:send-log:2:text", limit=2, part=part)

    assert [await sending("1:text").arrive(redis), await sending("2:text").arrive(redis)] == [None, None]
    wait = await sending("3:text").arrive(redis)
    assert wait is not None and 0.9 < wait <= ratelimit.WINDOW_SECONDS  # until the first leaves the window
    assert await sending("1:text").arrive(redis) is not None  # the same part sent again counts again
