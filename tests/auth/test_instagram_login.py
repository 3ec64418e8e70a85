"""Business Login through the sandbox, over HTTP: every outcome lands on the right page."""

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox.client import SandboxAdmin
from services.auth.instagram.service import STATE_SALT
from shared.models import Account, ChannelInstagram, Inbox, Role
from tests.auth.conftest import REDIRECT_URI, Login
from tests.conftest import Factory

ACME = "17841400000000001"
FRONTEND = "http://frontend.test"


def failure(response: httpx.Response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 302, response.text
    parts = urlsplit(response.headers["location"])
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


async def counts(db: AsyncSession) -> tuple[int, int]:
    return (
        await db.scalar(select(func.count()).select_from(ChannelInstagram)) or 0,
        await db.scalar(select(func.count()).select_from(Inbox)) or 0,
    )


async def test_authorization_url_has_exactly_the_expected_parameters(
    login: Login, admin: tuple[Account, dict[str, str]]
) -> None:
    account, headers = admin
    answer = await login.auth.post(f"/api/v1/accounts/{account.id}/instagram/authorization", headers=headers)
    url = answer.json()["url"]
    assert answer.json()["success"] is True
    assert url.startswith(f"{login.sandbox_url}/oauth/authorize?")
    query = parse_qs(urlsplit(url).query)
    assert set(query) == {
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "enable_fb_login",
        "force_authentication",
    }
    assert query["client_id"] == ["990000000000001"]
    assert query["redirect_uri"] == [REDIRECT_URI]
    assert query["response_type"] == ["code"]
    assert query["scope"] == ["instagram_business_basic,instagram_business_manage_messages"]
    assert len(query["state"][0]) > 40


async def test_agents_and_outsiders_cannot_start_a_connection(login: Login, factory: Factory) -> None:
    account, other = await factory.account(), await factory.account("Other")
    agent = await factory.headers(account, role=Role.AGENT)
    outsider = await factory.headers(other)
    assert (
        await login.auth.post(f"/api/v1/accounts/{account.id}/instagram/authorization", headers=agent)
    ).status_code == 403
    assert (
        await login.auth.post(f"/api/v1/accounts/{account.id}/instagram/authorization", headers=outsider)
    ).status_code == 404


async def test_new_account_creates_channel_and_inbox_and_subscribes(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession, sandbox: SandboxAdmin
) -> None:
    account, headers = admin
    answer = await login.connect(account, headers)

    inbox = (await db.scalars(select(Inbox))).one()
    assert (
        answer.headers["location"]
        == f"{FRONTEND}/app/accounts/{account.id}/settings/inboxes/new/{inbox.id}/agents"
    )
    channel = await db.get(ChannelInstagram, inbox.channel_id)
    assert channel is not None
    assert channel.instagram_id == ACME  # `/me.user_id`, not the app-scoped id 26001234567890123
    assert (inbox.name, inbox.account_id) == ("acme_shop", account.id)
    assert inbox.avatar_url and inbox.avatar_url.endswith("acme_shop.jpg")
    assert 59 * 86400 < (channel.expires_at - channel.token_updated_at).total_seconds() <= 60 * 86400
    assert channel.webhooks_subscribed_at is not None and channel.subscription_error is None
    subscribed = (await sandbox.world())["businesses"][0]["subscribed_fields"]
    assert {"messages", "message_reactions", "messaging_seen", "messaging_postbacks", "message_edit"} <= set(
        subscribed
    )
    stored = await db.scalar(text("SELECT access_token FROM channel_instagram"))
    assert (
        stored is not None and not stored.startswith("IGAA") and channel.access_token.startswith("IGAAlong")
    )


async def test_the_trailing_fragment_is_stripped_from_the_code(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession
) -> None:
    account, headers = admin
    state = (await login.start(account, headers))["state"][0]
    code = await login.sandbox.code(REDIRECT_URI)
    answer = await login.callback(code=code + "#_", state=state)
    assert "/settings/inboxes/new/" in answer.headers["location"] and "/agents" in answer.headers["location"]
    assert await counts(db) == (1, 1)


async def test_reauthorization_replaces_the_token_and_clears_the_flag(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession
) -> None:
    account, headers = admin
    await login.connect(account, headers)
    channel = (await db.scalars(select(ChannelInstagram))).one()
    first_token = channel.access_token
    channel.reauthorization_required, channel.authorization_error_count = True, 3
    await db.commit()

    again = await login.connect(account, headers)

    inbox = (await db.scalars(select(Inbox))).one()
    assert again.headers["location"] == f"{FRONTEND}/app/accounts/{account.id}/settings/inboxes/{inbox.id}"
    await db.refresh(channel)
    assert channel.access_token != first_token
    assert (channel.reauthorization_required, channel.authorization_error_count) == (False, 0)
    assert await counts(db) == (1, 1)


async def test_an_account_connected_elsewhere_is_refused_and_nothing_changes(
    login: Login, admin: tuple[Account, dict[str, str]], factory: Factory, db: AsyncSession
) -> None:
    account, headers = admin
    await login.connect(account, headers)
    token_before = (await db.scalars(select(ChannelInstagram))).one().access_token
    other = await factory.account("Other")

    path, query = failure(await login.connect(other, await factory.headers(other)))

    assert path == f"/app/accounts/{other.id}/settings/inboxes/new/instagram"
    assert (query["error_type"], query["code"]) == ("account_in_use", "409")
    assert "already connected to another account" in query["error_message"]
    channel = (await db.scalars(select(ChannelInstagram))).one()
    await db.refresh(channel)
    assert (channel.account_id, channel.access_token) == (account.id, token_before)


async def test_concurrent_callbacks_end_with_exactly_one_inbox(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession
) -> None:
    account, headers = admin
    states = [(await login.start(account, headers))["state"][0] for _ in range(4)]
    codes = [await login.sandbox.code(REDIRECT_URI) for _ in states]
    answers = await asyncio.gather(
        *(login.callback(code=c, state=s) for c, s in zip(codes, states, strict=True))
    )
    assert all(a.status_code == 302 and "error_type" not in a.headers["location"] for a in answers)
    assert sum("/agents" in a.headers["location"] for a in answers) == 1
    assert await counts(db) == (1, 1)


async def test_cancelled_consent(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession
) -> None:
    account, headers = admin
    state = (await login.start(account, headers))["state"][0]
    path, query = failure(
        await login.callback(
            error="access_denied",
            error_reason="user_denied",
            error_description="The user denied your request",
            state=state,
        )
    )
    assert path == f"/app/accounts/{account.id}/settings/inboxes/new/instagram"
    assert query == {
        "error_type": "access_denied",
        "code": "400",
        "error_message": "The user denied your request",
    }
    assert await counts(db) == (0, 0)


def _state_signed(secret: str, *, age_seconds: float = 0) -> str:
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age_seconds)

    serializer = URLSafeTimedSerializer(secret, salt=STATE_SALT, signer=Past)
    return serializer.dumps({"account_id": 1, "user_id": 1, "nonce": "x"})


@pytest.mark.parametrize(
    ("state", "error_type"),
    [
        (lambda good: good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"), "invalid_state"),
        (lambda good: _state_signed("test-secret-key-for-this-run", age_seconds=11 * 60), "expired_state"),
        (lambda good: _state_signed("some-other-installation"), "invalid_state"),
        (lambda good: None, "invalid_state"),
    ],
    ids=["tampered", "expired", "foreign", "missing"],
)
async def test_untrusted_state_is_refused_without_naming_an_account(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession, state: object, error_type: str
) -> None:
    account, headers = admin
    good = (await login.start(account, headers))["state"][0]
    code = await login.sandbox.code(REDIRECT_URI)
    chosen = state(good)  # type: ignore[operator]
    params = {"code": code, **({"state": chosen} if chosen else {})}
    path, query = failure(await login.callback(**params))
    assert path == "/app/settings/inboxes/new/instagram"
    assert query["error_type"] == error_type and query["error_message"]
    assert await counts(db) == (0, 0)
    assert await login.sandbox.requests("/oauth/access_token") == []  # the code was never spent


META_ERRORS = [
    (
        "/oauth/access_token$",
        {
            "status": 400,
            "body": {
                "error_type": "OAuthException",
                "code": 400,
                "error_message": "Matching code was not found or was already used",
            },
        },
        "oauth_error",
    ),
    (
        "/access_token$",
        {"error": {"code": 190, "subcode": 467, "message": "Invalid OAuth access token"}},
        "invalid_token",
    ),
    ("/v25.0/me$", {"error": {"code": 100, "message": "Tried accessing nonexisting field"}}, "oauth_error"),
    ("/v25.0/me$", {"status": 503, "body": "<html>down</html>"}, "meta_unavailable"),
]


@pytest.mark.parametrize(
    ("path_regex", "fault", "error_type"), META_ERRORS, ids=["exchange", "long-lived", "me", "me-5xx"]
)
async def test_each_meta_error_lands_on_the_error_page_with_nothing_created(
    login: Login,
    admin: tuple[Account, dict[str, str]],
    db: AsyncSession,
    path_regex: str,
    fault: dict[str, object],
    error_type: str,
) -> None:
    account, headers = admin
    await login.sandbox.fault(path_regex, **fault)  # type: ignore[arg-type]
    path, query = failure(await login.connect(account, headers))
    assert path == f"/app/accounts/{account.id}/settings/inboxes/new/instagram"
    assert query["error_type"] == error_type and query["error_message"]
    assert await counts(db) == (0, 0)


async def test_a_missing_messaging_permission_is_refused(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession
) -> None:
    account, headers = admin
    state = (await login.start(account, headers))["state"][0]
    code = await login.sandbox.code(REDIRECT_URI, scopes=["instagram_business_basic"])
    _, query = failure(await login.callback(code=code, state=state))
    assert query["error_type"] == "missing_permission"
    assert await counts(db) == (0, 0)


async def test_wrapped_code_exchange_shape_also_connects(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession
) -> None:
    account, headers = admin
    await login.sandbox.configure(token_response_shape="wrapped")
    answer = await login.connect(account, headers)
    assert answer.headers["location"].endswith("/agents")
    assert (await db.scalars(select(ChannelInstagram.instagram_id))).one() == ACME


async def test_subscription_failure_keeps_the_inbox_shows_the_error_and_queues_a_retry(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession, redis: object
) -> None:
    account, headers = admin
    await login.sandbox.fault(
        "subscribed_apps", error={"code": 2, "message": "Service temporarily unavailable"}
    )
    answer = await login.connect(account, headers)
    assert answer.headers["location"].endswith("/agents")
    channel = (await db.scalars(select(ChannelInstagram))).one()
    assert channel.webhooks_subscribed_at is None
    assert channel.subscription_error and "temporarily unavailable" in channel.subscription_error
    assert await redis.zscore("maintenance", f"subscribe_webhooks:{channel.id}") is not None  # type: ignore[attr-defined]


async def test_missing_app_configuration_is_a_clear_error(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession
) -> None:
    from shared import app_config

    account, headers = admin
    await app_config.save_value(db, key="INSTAGRAM_APP_ID", raw="")
    await db.commit()
    answer = await login.auth.post(f"/api/v1/accounts/{account.id}/instagram/authorization", headers=headers)
    assert answer.status_code == 422
    assert "INSTAGRAM_APP_ID" in answer.json()["error"]


async def test_consent_page_allow_end_to_end(
    login: Login, admin: tuple[Account, dict[str, str]], db: AsyncSession
) -> None:
    """Open the real consent page, press Allow, follow Meta's redirect to our callback."""
    account, headers = admin
    answer = await login.auth.post(f"/api/v1/accounts/{account.id}/instagram/authorization", headers=headers)
    async with httpx.AsyncClient() as browser:
        page = await browser.get(answer.json()["url"])
        assert page.status_code == 200 and "Allow" in page.text
        query = parse_qs(urlsplit(answer.json()["url"]).query)
        form = {
            "client_id": query["client_id"][0],
            "redirect_uri": query["redirect_uri"][0],
            "state": query["state"][0],
            "account": ACME,
            "decision": "allow",
            "granted": query["scope"][0].split(","),
        }
        redirect = await browser.post(f"{login.sandbox_url}/oauth/authorize", data=form)
    back = urlsplit(redirect.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URI and redirect.headers[
        "location"
    ].endswith("#_")
    landed = await login.auth.get(f"{back.path}?{back.query}")
    assert landed.headers["location"].endswith("/agents")
    assert await counts(db) == (1, 1)
