import pytest

from shared.schemas.events import InboundEvent, InvalidPayload, delivery_events, split_delivery

IG = "17841400000000001"
CUSTOMER = "1190000000000001"


def messaging(*items: dict) -> dict:
    return {"object": "instagram", "entry": [{"id": IG, "time": 1767225600123, "messaging": list(items)}]}


def item(**body: object) -> dict:
    return {"sender": {"id": CUSTOMER}, "recipient": {"id": IG}, "timestamp": 1767225599876, **body}


def test_kinds_and_keys_of_messaging_events() -> None:
    events = split_delivery(
        messaging(
            item(message={"mid": "m1", "text": "hi"}),
            item(message={"mid": "m2", "text": "sent", "is_echo": True}),
            item(message={"mid": "m1", "is_deleted": True}),
            item(message_edit={"mid": "m1", "text": "hello", "num_edit": 1}),
            item(reaction={"mid": "m2", "action": "react", "reaction": "love"}),
            item(read={"mid": "m2"}),
            item(postback={"mid": "m3", "title": "Go", "payload": "GO"}),
            item(referral={"ref": "promo"}),
            item(mystery={"x": 1}),
        )
    )
    assert [e.kind for e in events] == [
        "message",
        "echo",
        "unsend",
        "message_edit",
        "reaction",
        "read",
        "postback",
        "referral",
        "unknown",
    ]
    assert events[0].key == f"{IG}:message:m1"
    assert events[3].key == f"{IG}:message_edit:m1:1"
    assert events[4].key == f"{IG}:reaction:m2:react:1767225599876"
    assert len({e.key for e in events}) == len(events)


def test_redelivery_gives_identical_keys() -> None:
    body = messaging(item(referral={"ref": "promo"}), item(message={"mid": "m1", "text": "hi"}))
    assert [e.key for e in split_delivery(body)] == [e.key for e in split_delivery(body)]


def test_batches_standby_and_changes_fan_out() -> None:
    body = {
        "object": "instagram",
        "entry": [
            {"id": IG, "time": 1, "messaging": [item(message={"mid": "a"}), item(message={"mid": "b"})]},
            {"id": "17841400000000002", "time": 2, "standby": [item(message={"mid": "c"})]},
            {
                "id": "0",
                "time": 1767225600,
                "changes": [{"field": "messages", "value": item(message={"mid": "d"})}],
            },
            {
                "id": IG,
                "time": 1767225600,
                "changes": [{"field": "comments", "value": {"id": "17900", "text": "hey"}}],
            },
        ],
    }
    events = split_delivery(body)
    assert [(e.source, e.kind) for e in events] == [
        ("messaging", "message"),
        ("messaging", "message"),
        ("standby", "message"),
        ("changes", "message"),
        ("changes", "comments"),
    ]
    assert events[3].is_messaging and not events[4].is_messaging


def test_job_events_are_exactly_what_the_model_dumps() -> None:
    """The webhooks service enqueues `delivery_events` dicts; the worker reads them as InboundEvent."""
    body = messaging(
        item(
            message={"mid": "m1", "text": "hi", "attachments": [{"type": "image", "payload": {"url": "u"}}]}
        ),
        item(reaction={"mid": "m2", "action": "react", "reaction": "love"}),
        item(referral={"ref": "promo"}),
    )
    body["entry"].append({"id": IG, "time": 1, "changes": [{"field": "comments", "value": {"id": "1"}}]})
    dicts = delivery_events(body)
    assert [InboundEvent.model_validate(d).model_dump(mode="json") for d in dicts] == dicts
    assert [e.model_dump(mode="json") for e in split_delivery(body)] == dicts


def test_changes_without_timestamp_fall_back_to_entry_time_in_ms() -> None:
    body = {
        "object": "instagram",
        "entry": [
            {
                "id": IG,
                "time": 1767225600,
                "changes": [
                    {
                        "field": "messaging_postbacks",
                        "value": {
                            "sender": {"id": CUSTOMER},
                            "recipient": {"id": IG},
                            "postback": {"mid": "p", "payload": "X"},
                        },
                    }
                ],
            }
        ],
    }
    assert split_delivery(body)[0].timestamp_ms == 1767225600000


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"object": "page", "entry": []},
        {"object": "instagram"},
        {"object": "instagram", "entry": [1]},
        {"object": "instagram", "entry": [{"id": IG, "messaging": {"a": 1}}]},
        {"object": "instagram", "entry": [{"id": IG, "changes": [{"field": "x", "value": 3}]}]},
        {"object": "instagram", "entry": [{"id": IG, "changes": None, "field": "x", "value": {}}]},
    ],
)
def test_invalid_deliveries_are_refused(payload: object) -> None:
    with pytest.raises(InvalidPayload):
        split_delivery(payload)
