"""Business Login: the consent page, the code exchange and the token endpoints."""

import html
import secrets
import time
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from sandbox.config import SandboxConfig
from sandbox.world import HOUR, LEGACY_SCOPES, SCOPES, Code, GraphFault, OAuthFault, World

router = APIRouter()


def _state(request: Request) -> tuple[World, SandboxConfig]:
    return request.app.state.world, request.app.state.config


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto}</style>"
        f"</head><body>{body}</body></html>",
        status_code=status,
    )


def _consent_problem(
    config: SandboxConfig, client_id: str, redirect_uri: str, response_type: str, scope: str
) -> str | None:
    if client_id != config.app_id:
        return "Invalid platform app: client_id is not a known Instagram app."
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "Invalid redirect_uri: it must be an absolute http(s) URL registered for the app."
    if response_type != "code":
        return "Invalid response_type: only 'code' is supported."
    scopes = [s for s in scope.replace(" ", ",").split(",") if s]
    legacy = [s for s in scopes if s in LEGACY_SCOPES]
    if legacy:
        return f"Invalid scope: {', '.join(legacy)} (legacy scope names no longer work)."
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or "instagram_business_basic" not in scopes:
        return f"Invalid scope: {', '.join(unknown) or 'instagram_business_basic is required'}."
    return None


@router.get("/oauth/authorize", response_class=HTMLResponse)
async def consent_page(
    request: Request,
    client_id: str = "",
    redirect_uri: str = "",
    response_type: str = "",
    scope: str = "",
    state: str | None = None,
) -> HTMLResponse:
    world, config = _state(request)
    problem = _consent_problem(config, client_id, redirect_uri, response_type, scope)
    if problem:
        return _page(
            "Error", f"<h1>Sorry, this page isn't available</h1><p id='error'>{html.escape(problem)}</p>", 400
        )
    scopes = [s for s in scope.replace(" ", ",").split(",") if s]
    accounts = "".join(
        f"<option value='{b.ig_id}'>@{html.escape(b.username)} ({html.escape(b.name)})</option>"
        for b in world.businesses.values()
    )
    boxes = "".join(
        f"<label><input type='checkbox' name='granted' value='{s}' checked> {s}</label><br>" for s in scopes
    )
    hidden = "".join(
        f"<input type='hidden' name='{k}' value='{html.escape(v)}'>"
        for k, v in (("client_id", client_id), ("redirect_uri", redirect_uri), ("state", state or ""))
    )
    return _page(
        "Allow access",
        f"<h1>Sandbox Instagram app {html.escape(config.app_id)}</h1>"
        "<p>wants to connect to your Instagram professional account.</p>"
        f"<form method='post' action='/oauth/authorize'>{hidden}"
        f"<p><label>Account <select name='account' id='account'>{accounts}</select></label></p>"
        f"<fieldset><legend>It will be able to:</legend>{boxes}</fieldset>"
        "<p><button name='decision' value='allow' id='allow'>Allow</button>"
        "<button name='decision' value='cancel' id='cancel'>Cancel</button></p></form>",
    )


def issue_code(world: World, *, redirect_uri: str, business: str, scopes: tuple[str, ...]) -> Code:
    code = Code(
        value=f"AQ{secrets.token_urlsafe(32)}",
        redirect_uri=redirect_uri,
        business=business,
        scopes=scopes,
        expires_at=time.time() + HOUR,
    )
    world.codes[code.value] = code
    return code


def _redirect(redirect_uri: str, params: dict[str, str], fragment: str = "") -> RedirectResponse:
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}{fragment}", status_code=302)


@router.post("/oauth/authorize", response_model=None)
async def decide(
    request: Request,
    client_id: Annotated[str, Form()],
    redirect_uri: Annotated[str, Form()],
    decision: Annotated[str, Form()],
    account: Annotated[str, Form()] = "",
    state: Annotated[str, Form()] = "",
    granted: Annotated[list[str] | None, Form()] = None,
) -> RedirectResponse | HTMLResponse:
    world, config = _state(request)
    if client_id != config.app_id or (account and account not in world.businesses):
        return _page("Error", "<p id='error'>Invalid request.</p>", 400)
    extra = {"state": state} if state else {}
    if decision != "allow":
        params = {
            "error": "access_denied",
            "error_reason": "user_denied",
            "error_description": "The user denied your request",
            **extra,
        }
        return _redirect(redirect_uri, params)
    business = account or next(iter(world.businesses))
    code = issue_code(world, redirect_uri=redirect_uri, business=business, scopes=tuple(granted or ()))
    return _redirect(redirect_uri, {"code": code.value, **extra}, fragment="#_")


@router.post("/oauth/access_token")
async def exchange_code(
    request: Request,
    client_id: Annotated[str, Form()] = "",
    client_secret: Annotated[str, Form()] = "",
    grant_type: Annotated[str, Form()] = "",
    redirect_uri: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
) -> JSONResponse:
    world, config = _state(request)
    if client_id != config.app_id or client_secret != config.app_secret:
        raise OAuthFault("Invalid platform app")
    if grant_type != "authorization_code":
        raise OAuthFault("Invalid grant_type: authorization_code is the only supported grant type")
    found = world.codes.get(code)
    if found is None or found.used or found.expires_at < time.time():
        raise OAuthFault("Matching code was not found or was already used")
    if found.redirect_uri != redirect_uri:
        raise OAuthFault(
            "Error validating verification code. Please make sure your redirect_uri is identical"
        )
    found.used = True
    business = world.businesses[found.business]
    token = world.mint_token(
        business.ig_id, long_lived=False, scopes=found.scopes, lifetime=config.short_lived_seconds
    )
    if config.token_response_shape == "wrapped":
        wrapped = {
            "access_token": token.value,
            "user_id": str(business.asid),
            "permissions": ",".join(found.scopes),
        }
        return JSONResponse({"data": [wrapped]})
    # Flat, as production answers: `user_id` is a JSON number above 2**53.
    return JSONResponse(
        {"access_token": token.value, "user_id": business.asid, "permissions": list(found.scopes)}
    )


@router.get("/access_token")
async def long_lived_token(
    request: Request,
    grant_type: str = "",
    client_secret: str = "",
    access_token: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    world, config = _state(request)
    if grant_type != "ig_exchange_token":
        raise GraphFault(100, "Unsupported grant_type: ig_exchange_token expected")
    if client_secret != config.app_secret:
        raise GraphFault(101, "Error validating client secret.", subcode=None)
    short = world.token(access_token or request.app.state.bearer(request))
    if short.long_lived:
        raise GraphFault(100, "The access token is already long-lived.")
    token = world.mint_token(
        short.business, long_lived=True, scopes=short.scopes, lifetime=config.long_lived_seconds
    )
    return {"access_token": token.value, "token_type": "bearer", "expires_in": config.long_lived_seconds}


@router.get("/refresh_access_token")
async def refresh_token(
    request: Request, grant_type: str = "", access_token: str | None = None
) -> dict[str, Any]:
    world, config = _state(request)
    if grant_type != "ig_refresh_token":
        raise GraphFault(100, "Unsupported grant_type: ig_refresh_token expected")
    current = world.token(access_token or request.app.state.bearer(request))
    if not current.long_lived:
        raise GraphFault(
            100, "Short-lived tokens cannot be refreshed; exchange it for a long-lived token first."
        )
    age = time.time() - current.issued_at
    if age < config.refresh_min_age_seconds:
        raise GraphFault(
            100, f"The access token must be at least 24 hours old to be refreshed (it is {int(age)} s)."
        )
    token = world.mint_token(
        current.business, long_lived=True, scopes=current.scopes, lifetime=config.long_lived_seconds
    )
    return {"access_token": token.value, "token_type": "bearer", "expires_in": config.long_lived_seconds}
