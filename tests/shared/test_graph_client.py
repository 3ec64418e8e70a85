"""The Graph client against a real HTTP server that answers like Meta does when things go wrong."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.app_config import InstagramApp
from shared.graph import (
    GraphClient,
    GraphOutcomeUnknown,
    GraphPermissionError,
    GraphRateLimitError,
    GraphRequestError,
    GraphTokenError,
    GraphTransientError,
)
from shared.settings import Settings, get_settings
from tests.support import free_port, serve_in_thread

ANSWERS: dict[str, tuple[int, bytes, dict[str, str]]] = {}


def graph_error(code: int, subcode: int | None = None, message: str = "boom", **extra: object) -> bytes:
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_subcode": subcode,
                **extra,
            }
        }
    ).encode()


async def canned(request: Request) -> Response:
    name = request.path_params.get("name", request.url.path.rsplit("/", 1)[-1])
    if name == "slow":
        await asyncio.sleep(2)
    status, body, headers = ANSWERS.get(name, (200, b'{"ok": true}', {}))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/v25.0/{name}", canned, methods=["GET", "POST"]),
            Route("/oauth/access_token", canned, methods=["POST"]),
        ]
    )
    with serve_in_thread(app, free_port()) as url:
        yield url


@pytest.fixture
async def graph(server: str) -> AsyncIterator[GraphClient]:
    settings = Settings(
        **{
            **get_settings().model_dump(),
            "INSTAGRAM_GRAPH_BASE_URL": server,
            "INSTAGRAM_API_BASE_URL": server,
            "GRAPH_TIMEOUT_SECONDS": 0.5,
        }
    )

    async def app() -> InstagramApp:
        return InstagramApp("1", "secret", "verify", "v25.0", False)

    client = GraphClient.create(settings, app)
    yield client
    await client.aclose()


CASES = [
    ("token", 400, graph_error(190, 463, "Error validating access token"), GraphTokenError, 190),
    ("app_rate", 400, graph_error(4, None, "Application request limit reached"), GraphRateLimitError, 4),
    ("ig_rate", 400, graph_error(613, 2534040), GraphRateLimitError, 613),
    ("bad_param", 400, graph_error(100, 2534014, "No matching user"), GraphRequestError, 100),
    ("temporary", 400, graph_error(2, None, "Temporary issue"), GraphTransientError, 2),
    ("window", 400, graph_error(10, 2534022, "outside of allowed window"), GraphPermissionError, 10),
    ("sent_anyway", 400, graph_error(1, 1357046), GraphOutcomeUnknown, 1),
    ("flagged_transient", 400, graph_error(100, None, is_transient=True), GraphTransientError, 100),
    ("html_500", 500, b"<html><body>Internal Server Error</body></html>", GraphTransientError, None),
]


@pytest.mark.parametrize(("name", "status", "body", "kind", "code"), CASES, ids=[c[0] for c in CASES])
async def test_meta_error_envelopes_map_to_typed_errors(
    graph: GraphClient, name: str, status: int, body: bytes, kind: type[Exception], code: int | None
) -> None:
    ANSWERS[name] = (status, body, {})
    with pytest.raises(kind) as raised:
        await graph.graph("GET", name, token="t")
    assert type(raised.value) is kind
    assert raised.value.code == code  # type: ignore[attr-defined]
    assert raised.value.http_status == status  # type: ignore[attr-defined]


async def test_error_carries_subcode_message_and_rate_limit_hint(graph: GraphClient) -> None:
    usage = json.dumps(
        {
            "17841400000000001": [
                {"type": "instagram", "call_count": 100, "estimated_time_to_regain_access": 3}
            ]
        }
    )
    ANSWERS["hinted"] = (
        400,
        graph_error(613, 2534040, "Calls to this api have exceeded the rate limit."),
        {"X-Business-Use-Case-Usage": usage},
    )
    with pytest.raises(GraphRateLimitError) as raised:
        await graph.graph("POST", "hinted", token="t")
    assert raised.value.subcode == 2534040
    assert raised.value.message == "Calls to this api have exceeded the rate limit."
    assert raised.value.retry_after == 180


async def test_oauth_host_flat_envelope(graph: GraphClient) -> None:
    ANSWERS["access_token"] = (
        400,
        b'{"error_type":"OAuthException","code":400,"error_message":"Matching code was not found or was already used"}',
        {},
    )
    with pytest.raises(GraphRequestError) as raised:
        await graph.exchange_code(code="used", redirect_uri="http://x/cb")
    assert raised.value.message == "Matching code was not found or was already used"


async def test_timeout_of_a_send_is_outcome_unknown_and_of_a_read_is_transient(graph: GraphClient) -> None:
    with pytest.raises(GraphOutcomeUnknown):
        await graph.graph("POST", "slow", token="t", outcome_matters=True)
    with pytest.raises(GraphTransientError) as raised:
        await graph.graph("GET", "slow", token="t")
    assert type(raised.value) is GraphTransientError


async def test_unreachable_host_is_transient() -> None:
    settings = Settings(
        **{**get_settings().model_dump(), "INSTAGRAM_GRAPH_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    )

    async def app() -> InstagramApp:
        return InstagramApp("1", "secret", "verify", "v25.0", False)

    client = GraphClient.create(settings, app)
    with pytest.raises(GraphTransientError, match="unreachable"):
        await client.me("t")
    await client.aclose()


async def test_code_exchange_accepts_flat_and_wrapped_shapes_and_big_ids(graph: GraphClient) -> None:
    ANSWERS["access_token"] = (
        200,
        b'{"access_token":"IGAAshort","user_id":26001234567890123,"permissions":["instagram_business_basic"]}',
        {},
    )
    flat = await graph.exchange_code(code="c", redirect_uri="http://x/cb")
    assert flat.user_id == "26001234567890123"
    assert flat.permissions == ("instagram_business_basic",)
    ANSWERS["access_token"] = (
        200,
        b'{"data":[{"access_token":"IGAAshort","user_id":"26001234567890123","permissions":"a,b"}]}',
        {},
    )
    wrapped = await graph.exchange_code(code="c", redirect_uri="http://x/cb")
    assert (wrapped.user_id, wrapped.permissions) == ("26001234567890123", ("a", "b"))
