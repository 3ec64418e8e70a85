"""Typed async client for the sandbox's admin API, for tests and `inboxctl sandbox`."""

from typing import Any

import httpx

ACME = "17841400000000001"
JANE = "1190000000000001"


class SandboxAdmin:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(base_url=f"{base_url}/_sandbox", timeout=30)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def world(self) -> dict[str, Any]:
        return await self._call("GET", "/world")  # type: ignore[no-any-return]

    async def configure(self, **changes: Any) -> dict[str, Any]:
        return await self._call("PATCH", "/config", json=changes)  # type: ignore[no-any-return]

    async def add_business(self, ig_id: str, asid: int, username: str, **fields: Any) -> dict[str, Any]:
        body = {"ig_id": ig_id, "asid": asid, "username": username, **fields}
        return await self._call("POST", "/businesses", json=body)  # type: ignore[no-any-return]

    async def add_customer(self, igsid: str, username: str, **fields: Any) -> dict[str, Any]:
        return await self._call("POST", "/customers", json={"igsid": igsid, "username": username, **fields})  # type: ignore[no-any-return]

    async def last_message(
        self, customer: str = JANE, *, business: str = ACME, seconds_ago: float = 0, never: bool = False
    ) -> None:
        body = {"business": business, "seconds_ago": seconds_ago, "never": never}
        await self._call("POST", f"/customers/{customer}/last_message", json=body)

    async def token(
        self,
        business: str = ACME,
        *,
        age_seconds: float = 0,
        expires_in: float | None = None,
        long_lived: bool = True,
        scopes: list[str] | None = None,
    ) -> str:
        """Mint an access token for the business, issued `age_seconds` ago."""
        body: dict[str, Any] = {"business": business, "age_seconds": age_seconds, "long_lived": long_lived}
        if expires_in is not None:
            body["expires_in"] = expires_in
        if scopes is not None:
            body["scopes"] = scopes
        return str((await self._call("POST", "/tokens", json=body))["access_token"])

    async def age_token(self, token: str, seconds: float) -> None:
        await self._call("POST", f"/tokens/{token}/age", json={"seconds": seconds})

    async def revoke_token(self, token: str) -> None:
        await self._call("POST", f"/tokens/{token}/revoke")

    async def expire_token(self, token: str) -> None:
        await self._call("POST", f"/tokens/{token}/expire")

    async def code(self, redirect_uri: str, *, business: str = ACME, scopes: list[str] | None = None) -> str:
        body: dict[str, Any] = {"redirect_uri": redirect_uri, "business": business}
        if scopes is not None:
            body["scopes"] = scopes
        return str((await self._call("POST", "/oauth/codes", json=body))["code"])

    async def fault(
        self,
        path_regex: str,
        *,
        times: int = 1,
        method: str | None = None,
        status: int | None = None,
        body: Any = None,
        error: dict[str, Any] | None = None,
        hang_seconds: float = 0.0,
    ) -> None:
        """The next `times` matching requests fail with `status`/`body` or a Graph `error` (after
        `hang_seconds`); with `hang_seconds` alone the request takes effect but is answered late."""
        fault = {
            "path_regex": path_regex,
            "times": times,
            "method": method,
            "status": status,
            "body": body,
            "error": error,
            "hang_seconds": hang_seconds,
        }
        await self._call("POST", "/faults", json=fault)

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/faults")

    async def requests(self, path_contains: str = "") -> list[dict[str, Any]]:
        return await self._call("GET", "/requests", params={"path_contains": path_contains})  # type: ignore[no-any-return]

    async def sent(self, business: str | None = None) -> list[dict[str, Any]]:
        return await self._call("GET", "/sent", params={"business": business} if business else {})  # type: ignore[no-any-return]

    async def webhook(
        self, kind: str = "text", *, customer: str = JANE, business: str = ACME, **fields: Any
    ) -> dict[str, Any]:
        """Send one event of `kind` as a signed webhook; answers the payload, statuses and mids."""
        body = {"kind": kind, "customer": customer, "business": business, "fields": fields}
        return await self._call("POST", "/webhooks", json=body)  # type: ignore[no-any-return]

    async def dm(
        self, text: str, *, customer: str = JANE, business: str = ACME, **fields: Any
    ) -> dict[str, Any]:
        return await self.webhook("text", customer=customer, business=business, text=text, **fields)

    async def batch(
        self,
        events: list[dict[str, Any]],
        *,
        separate_entries: bool = False,
        shuffle: bool = False,
        redeliver: int = 0,
    ) -> dict[str, Any]:
        """Several events in one delivery: each item {kind, customer?, business?, fields}."""
        body = {
            "events": events,
            "separate_entries": separate_entries,
            "shuffle": shuffle,
            "redeliver": redeliver,
        }
        return await self._call("POST", "/webhooks", json=body)  # type: ignore[no-any-return]
