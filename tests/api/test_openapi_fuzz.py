"""Schemathesis throws schema-derived requests at every messaging API operation: never a 5xx."""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from services.messaging.main import app
from tests.support import free_port, serve_in_thread

PORT = free_port()


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with serve_in_thread(app, PORT) as url:
        yield url


schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
async def world(factory: Any, sandbox: Any) -> dict[str, Any]:
    from tests.api.conftest import Threads

    account = await factory.account()
    inbox = await factory.inbox(account, access_token=await sandbox.token())
    thread = await Threads(factory.db, factory).create(account, inbox)
    headers = await factory.headers(account)
    return {
        "account_id": account.id,
        "conversation_id": thread.conversation.display_id,
        "inbox_id": inbox.id,
        "contact_id": thread.contact.id,
        "headers": headers,
    }


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error(case: Any, api_url: str, world: dict[str, Any]) -> None:
    for name in ("account_id", "conversation_id", "inbox_id", "contact_id"):
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = world[name]
    response = case.call(base_url=api_url, headers=world["headers"])
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
