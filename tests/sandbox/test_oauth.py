"""The sandbox behaves like Meta's Business Login endpoints."""

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.client import SandboxAdmin

APP_ID, SECRET = "990000000000001", "sandbox-app-secret"
REDIRECT = "http://frontend.test/instagram/callback"
SCOPE = "instagram_business_basic,instagram_business_manage_messages"


@pytest.fixture
async def meta(sandbox: SandboxAdmin, sandbox_url: str) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        yield client  # type: ignore[misc]


def _consent(**overrides: str) -> dict[str, str]:
    return {
        "client_id": APP_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": SCOPE,
        "state": "st",
        **overrides,
    }


async def _allow(meta: httpx.AsyncClient, **form: object) -> httpx.Response:
    body = {
        "client_id": APP_ID,
        "redirect_uri": REDIRECT,
        "state": "st",
        "decision": "allow",
        "account": "17841400000000001",
        "granted": SCOPE.split(","),
        **form,
    }
    return await meta.post("/oauth/authorize", data=body)


async def test_consent_page_names_app_account_and_scopes(meta: httpx.AsyncClient) -> None:
    page = await meta.get("/oauth/authorize", params=_consent())
    assert page.status_code == 200
    for text in (APP_ID, "@acme_shop", "instagram_business_manage_messages", "Allow", "Cancel"):
        assert text in page.text


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"client_id": "1"}, "client_id"),
        ({"redirect_uri": "not-a-url"}, "redirect_uri"),
        ({"response_type": "token"}, "response_type"),
        ({"scope": "business_basic"}, "legacy"),
        ({"scope": "instagram_business_manage_messages"}, "instagram_business_basic is required"),
    ],
)
async def test_consent_page_refuses_bad_parameters(
    meta: httpx.AsyncClient, override: dict[str, str], words: str
) -> None:
    page = await meta.get("/oauth/authorize", params=_consent(**override))
    assert page.status_code == 400
    assert words in page.text


async def test_allow_redirects_with_code_state_and_fragment_and_cancel_with_error(
    meta: httpx.AsyncClient,
) -> None:
    allowed = await _allow(meta)
    assert allowed.status_code == 302
    location = allowed.headers["location"]
    assert location.startswith(REDIRECT + "?") and location.endswith("#_")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st"] and query["code"][0].startswith("AQ")

    cancelled = await meta.post(
        "/oauth/authorize",
        data={"client_id": APP_ID, "redirect_uri": REDIRECT, "state": "st", "decision": "cancel"},
    )
    query = parse_qs(urlsplit(cancelled.headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["error_reason"] == ["user_denied"]
    assert query["error_description"] and query["state"] == ["st"]


async def _exchange(meta: httpx.AsyncClient, code: str, redirect_uri: str = REDIRECT) -> httpx.Response:
    form = {
        "client_id": APP_ID,
        "client_secret": SECRET,
        "grant_type": "authorization_code",
        "redirect_uri": redirect_uri,
        "code": code,
    }
    return await meta.post("/oauth/access_token", data=form)


async def test_codes_are_single_use_bound_to_the_redirect_and_never_carry_the_fragment(
    meta: httpx.AsyncClient, sandbox: SandboxAdmin
) -> None:
    code = await sandbox.code(REDIRECT)
    with_fragment = await _exchange(meta, code + "#_")
    assert with_fragment.status_code == 400
    assert with_fragment.json() == {
        "error_type": "OAuthException",
        "code": 400,
        "error_message": "Matching code was not found or was already used",
    }
    assert (await _exchange(meta, code, "http://elsewhere.test/cb")).status_code == 400
    first = await _exchange(meta, code)
    assert first.status_code == 200
    raw = first.text
    assert '"user_id":26001234567890123' in raw.replace(" ", "")  # a JSON number above 2**53
    assert json.loads(raw)["permissions"] == SCOPE.split(",")
    again = await _exchange(meta, code)
    assert again.json()["error_message"] == "Matching code was not found or was already used"


async def test_documented_wrapped_shape_on_request(meta: httpx.AsyncClient, sandbox: SandboxAdmin) -> None:
    await sandbox.configure(token_response_shape="wrapped")
    answer = (await _exchange(meta, await sandbox.code(REDIRECT))).json()
    assert answer["data"][0]["user_id"] == "26001234567890123"
    assert answer["data"][0]["permissions"] == SCOPE


async def test_exchange_refresh_and_the_24_hour_rule(meta: httpx.AsyncClient, sandbox: SandboxAdmin) -> None:
    short = (await _exchange(meta, await sandbox.code(REDIRECT))).json()["access_token"]
    refused = await meta.get(
        "/refresh_access_token", params={"grant_type": "ig_refresh_token", "access_token": short}
    )
    assert refused.json()["error"]["code"] == 100
    long = await meta.get(
        "/access_token",
        params={"grant_type": "ig_exchange_token", "client_secret": SECRET, "access_token": short},
    )
    assert long.json()["token_type"] == "bearer" and 5_000_000 < long.json()["expires_in"] <= 5_184_000
    token = long.json()["access_token"]

    young = await meta.get(
        "/refresh_access_token", params={"grant_type": "ig_refresh_token", "access_token": token}
    )
    assert young.status_code == 400 and "24 hours" in young.json()["error"]["message"]
    await sandbox.age_token(token, 25 * 3600)
    refreshed = await meta.get(
        "/refresh_access_token", params={"grant_type": "ig_refresh_token", "access_token": token}
    )
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != token


@pytest.mark.parametrize(("action", "subcode"), [("expire", 463), ("revoke", 467)])
async def test_expired_and_revoked_tokens_get_190(
    meta: httpx.AsyncClient, sandbox: SandboxAdmin, action: str, subcode: int
) -> None:
    token = await sandbox.token(age_seconds=3 * 86400)
    await (sandbox.expire_token(token) if action == "expire" else sandbox.revoke_token(token))
    for response in (
        await meta.get(
            "/refresh_access_token", params={"grant_type": "ig_refresh_token", "access_token": token}
        ),
        await meta.get("/v25.0/me", headers={"Authorization": f"Bearer {token}"}),
    ):
        assert response.json()["error"]["code"] == 190
        assert response.json()["error"]["error_subcode"] == subcode
