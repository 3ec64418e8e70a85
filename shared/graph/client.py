"""The one client for Meta's Instagram endpoints.

Every URL is built from the three base-URL settings and the API version, so the sandbox,
the tests or a staging proxy can stand in for Meta. This is the only code that reads Meta's
responses; failures leave it as the typed errors of `shared.graph.errors`.
"""

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp

from shared.app_config import InstagramApp
from shared.graph.errors import (
    GraphOutcomeUnknown,
    GraphRequestError,
    GraphTransientError,
    error_from_response,
)
from shared.settings import Settings

PROFILE_FIELDS = (
    "name",
    "username",
    "profile_pic",
    "follower_count",
    "is_user_follow_business",
    "is_business_follow_user",
    "is_verified_user",
)
ME_FIELDS = ("user_id", "username", "name", "account_type", "profile_picture_url")
# Failures before any byte of the request left: safe to retry whatever the request was.
NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


@dataclass(frozen=True)
class ShortLivedToken:
    access_token: str
    user_id: str  # the app-scoped id; informational only, never the channel key
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class Media:
    content: bytes
    content_type: str | None


@dataclass(frozen=True)
class LongLivedToken:
    access_token: str
    expires_in: int

    def expires_at(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) + timedelta(seconds=self.expires_in)


def _first(payload: Any) -> dict[str, Any]:
    """Meta documents some answers wrapped in `{"data": [...]}` and sends them flat: accept both."""
    if isinstance(payload, dict) and isinstance(payload.get("data"), list) and payload["data"]:
        payload = payload["data"][0]
    if not isinstance(payload, dict):
        raise GraphRequestError("unexpected answer from Instagram")
    return payload


def _permissions(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list):
        return tuple(str(p) for p in value)
    return ()


class GraphClient:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        settings: Settings,
        app: Callable[[], Awaitable[InstagramApp]],
    ) -> None:
        self._http = http
        self._settings = settings
        self._app = app

    @classmethod
    def create(cls, settings: Settings, app: Callable[[], Awaitable[InstagramApp]]) -> "GraphClient":
        """Call inside the event loop that will use it (the lifespan, a worker's start-up)."""
        connect = min(5.0, settings.GRAPH_TIMEOUT_SECONDS)
        # connect: waiting for a pooled connection and opening one; sock_read: Meta's answer.
        timeout = aiohttp.ClientTimeout(
            total=connect + settings.GRAPH_TIMEOUT_SECONDS,
            connect=connect,
            sock_read=settings.GRAPH_TIMEOUT_SECONDS,
        )
        http = aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=200),
            cookie_jar=aiohttp.DummyCookieJar(),  # no state shared between accounts' calls
        )
        return cls(http, settings, app)

    async def aclose(self) -> None:
        await self._http.close()

    async def app(self) -> InstagramApp:
        return await self._app()

    # -- Business Login ------------------------------------------------------------------

    async def authorize_url(self, *, redirect_uri: str, scopes: Iterable[str], state: str) -> str:
        app = await self._app()
        params = {
            "enable_fb_login": "0",
            "force_authentication": "1",
            "client_id": app.app_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": ",".join(scopes),
            "state": state,
        }
        return f"{self._settings.INSTAGRAM_WWW_BASE_URL}/oauth/authorize?{urlencode(params)}"

    async def exchange_code(self, *, code: str, redirect_uri: str) -> ShortLivedToken:
        app = await self._app()
        payload = _first(
            await self._call(
                "POST",
                f"{self._settings.INSTAGRAM_API_BASE_URL}/oauth/access_token",
                data={
                    "client_id": app.app_id,
                    "client_secret": app.app_secret,
                    "grant_type": "authorization_code",
                    "redirect_uri": redirect_uri,
                    "code": code,
                },
            )
        )
        return ShortLivedToken(
            access_token=str(payload["access_token"]),
            user_id=str(payload.get("user_id", "")),
            permissions=_permissions(payload.get("permissions")),
        )

    async def long_lived_token(self, short_lived: str) -> LongLivedToken:
        app = await self._app()
        payload = await self._call(
            "GET",
            f"{self._settings.INSTAGRAM_GRAPH_BASE_URL}/access_token",
            params={
                "grant_type": "ig_exchange_token",
                "client_secret": app.app_secret,
                "access_token": short_lived,
            },
        )
        return LongLivedToken(
            access_token=str(payload["access_token"]), expires_in=int(payload["expires_in"])
        )

    async def refresh_token(self, token: str) -> LongLivedToken:
        payload = await self._call(
            "GET",
            f"{self._settings.INSTAGRAM_GRAPH_BASE_URL}/refresh_access_token",
            params={"grant_type": "ig_refresh_token", "access_token": token},
        )
        return LongLivedToken(
            access_token=str(payload["access_token"]), expires_in=int(payload["expires_in"])
        )

    # -- Graph -----------------------------------------------------------------------------

    async def me(self, token: str, fields: Iterable[str] = ME_FIELDS) -> dict[str, Any]:
        return _first(await self.graph("GET", "me", token=token, params={"fields": ",".join(fields)}))

    async def user_profile(self, token: str, igsid: str) -> dict[str, Any]:
        return await self.graph("GET", igsid, token=token, params={"fields": ",".join(PROFILE_FIELDS)})

    async def subscribe_webhooks(self, token: str, fields: Iterable[str]) -> None:
        await self.graph(
            "POST", "me/subscribed_apps", token=token, params={"subscribed_fields": ",".join(fields)}
        )

    async def unsubscribe_webhooks(self, token: str) -> None:
        await self.graph("DELETE", "me/subscribed_apps", token=token)

    async def send_message(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send API. A timeout after the request went out is GraphOutcomeUnknown: never resend blindly."""
        return await self.graph("POST", "me/messages", token=token, json=body, outcome_matters=True)

    async def graph(self, method: str, path: str, *, token: str, **kwargs: Any) -> dict[str, Any]:
        app = await self._app()
        url = f"{self._settings.INSTAGRAM_GRAPH_BASE_URL}/{app.api_version}/{path.lstrip('/')}"
        return await self._call(method, url, token=token, **kwargs)

    async def fetch(self, url: str) -> Media:
        """Download media (Meta's CDN URLs). Transport failures become GraphTransientError."""
        try:
            async with self._http.get(url) as response:  # follows redirects
                content = await response.read()
        except (TimeoutError, aiohttp.ClientError) as error:
            raise GraphTransientError(f"download failed: {type(error).__name__}") from error
        if response.status >= 400:
            raise error_from_response(response.status, content, response.headers)
        return Media(content=content, content_type=response.headers.get("content-type"))

    async def _call(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        outcome_matters: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._http.request(
                method, url, headers=headers, allow_redirects=False, **kwargs
            ) as response:
                status, content = response.status, await response.read()
        except NOT_SENT as error:
            raise GraphTransientError(f"Instagram unreachable: {type(error).__name__}") from error
        except (TimeoutError, aiohttp.ClientError) as error:
            kind = GraphOutcomeUnknown if outcome_matters else GraphTransientError
            raise kind(f"no answer from Instagram: {type(error).__name__}") from error
        if status >= 400:
            raise error_from_response(status, content, response.headers)
        try:
            payload = json.loads(content)
        except ValueError as error:
            kind = GraphOutcomeUnknown if outcome_matters else GraphTransientError
            raise kind(f"Instagram answered HTTP {status} with a body that is not JSON") from error
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise error_from_response(400, content, response.headers)
        return payload if isinstance(payload, dict) else {"data": payload}
