"""The FastAPI application every HTTP service is built from.

`create_app` wires what all services share: the lifespan that builds the engine, Redis pool,
app-config cache and Graph client once per process (exposed as typed `request.state`), the
request-id middleware and access log, error rendering, `/health` and `/ready`.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, TypedDict

import asyncpg
import structlog
from arq.connections import ArqRedis
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.app_config import AppConfigCache
from shared.db import SessionMaker, create_engine, create_sessionmaker
from shared.errors import AppError
from shared.graph import GraphClient
from shared.logging import configure_logging, get_logger
from shared.settings import Settings, get_settings
from shared.storage import Storage, storage_from

log = get_logger("http")
ACCESS_LOG = logging.getLogger("http")  # checked first: a filtered access line costs nothing
UNLOGGED_PATHS = ("/health", "/ready", "/metrics")
READY_TIMEOUT_SECONDS = 2.0


class State(TypedDict):
    settings: Settings
    engine: AsyncEngine
    sessionmaker: SessionMaker
    redis: ArqRedis
    app_config: AppConfigCache
    graph: GraphClient
    storage: Storage


def create_redis_client(settings: Settings) -> ArqRedis:
    """A Redis client that connects lazily: a process starts, and reports not ready, while Redis is down."""
    return ArqRedis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


@asynccontextmanager
async def open_state(
    settings: Settings, *, pool_size: int = 10, pool_timeout: float = 5, check_idle_only: bool = False
) -> AsyncIterator[State]:
    engine = create_engine(
        settings, pool_size=pool_size, pool_timeout=pool_timeout, check_idle_only=check_idle_only
    )
    sessionmaker = create_sessionmaker(engine)
    redis = create_redis_client(settings)
    app_config = AppConfigCache(sessionmaker, settings)
    graph = GraphClient.create(settings, app_config.get)
    storage = storage_from(settings)
    try:
        yield State(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            app_config=app_config,
            graph=graph,
            storage=storage,
        )
    finally:
        await storage.aclose()
        await graph.aclose()
        await redis.aclose()
        await engine.dispose()


class RequestContextMiddleware:
    """Binds a request id to every log line of the request and logs one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = next(
            (v.decode() for k, v in scope["headers"] if k == b"x-request-id" and 0 < len(v) <= 128), None
        ) or secrets.token_hex(16)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if ACCESS_LOG.isEnabledFor(logging.INFO) and scope["path"] not in UNLOGGED_PATHS:
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )


def error_response(status_code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status_code)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, error: AppError) -> JSONResponse:
        return error_response(error.status_code, error.message, **error.extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "message": str(e.get("msg", "")), "type": e.get("type", "")}
            for e in error.errors()
        ]
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        message = str(first["message"])
        return error_response(422, f"{where}: {message}" if where else message, details=details)

    @app.exception_handler(DBAPIError)
    async def data_error(_: Request, error: DBAPIError) -> JSONResponse:
        """A value Postgres cannot take (a number beyond 64 bits, say) is the client's error, not ours."""
        cause = error.orig.__cause__ if error.orig is not None else None
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(cause, "sqlstate", None)
        if isinstance(cause, asyncpg.exceptions.DataError) or (sqlstate or "").startswith("22"):
            return error_response(422, "a value in the request is out of range or malformed")
        raise error

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail))


async def check_ready(state: State) -> dict[str, str]:
    """'ok' or the reason, for Postgres and Redis."""

    async def postgres() -> None:
        async with state["engine"].connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis() -> None:
        await state["redis"].ping()

    results: dict[str, str] = {}
    for name, probe in (("postgres", postgres), ("redis", redis)):
        try:
            await asyncio.wait_for(probe(), READY_TIMEOUT_SECONDS)
            results[name] = "ok"
        except Exception as error:  # any failure means not ready; say which
            results[name] = f"unavailable: {type(error).__name__}: {error}"[:300]
    return results


def create_app(
    title: str,
    *,
    routers: Sequence[APIRouter] = (),
    settings: Settings | None = None,
    lifespan: Callable[[FastAPI, State], AbstractAsyncContextManager[dict[str, Any] | None]] | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """One service's app. `lifespan` may add service-specific state on top of the shared one."""
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL)

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with open_state(settings) as state:
            if lifespan is None:
                yield dict(state)
            else:
                async with lifespan(app, state) as extra:
                    yield {**state, **(extra or {})}

    # No OpenTelemetry provider is configured: FastAPI's own telemetry would only look for one on
    # every request.
    telemetry: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(title=title, lifespan=app_lifespan, telemetry=telemetry, **fastapi_kwargs)
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)

    @app.get("/health", tags=["operations"], summary="The process is alive")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], summary="Postgres and Redis are reachable", response_model=None)
    async def ready(request: Request) -> JSONResponse:
        results = await check_ready(_state(request))
        ok = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", **results}, status_code=200 if ok else 503
        )

    for router in routers:
        app.include_router(router)
    return app


# -- dependencies -----------------------------------------------------------------------


def _state(request: Request) -> State:
    return request.scope["state"]  # type: ignore[no-any-return]


# Dependencies are `async def`: FastAPI runs a plain `def` one in a thread pool, per request.
async def _state_dep(request: Request) -> State:
    return _state(request)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with _state(request)["sessionmaker"]() as session:
        yield session


StateDep = Annotated[State, Depends(_state_dep)]
SessionDep = Annotated[AsyncSession, Depends(_session)]


async def _redis(request: Request) -> ArqRedis:
    return _state(request)["redis"]


async def _graph(request: Request) -> GraphClient:
    return _state(request)["graph"]


async def _settings(request: Request) -> Settings:
    return _state(request)["settings"]


async def _storage(request: Request) -> Storage:
    return _state(request)["storage"]


QueueDep = Annotated[ArqRedis, Depends(_redis)]
GraphDep = Annotated[GraphClient, Depends(_graph)]
SettingsDep = Annotated[Settings, Depends(_settings)]
StorageDep = Annotated[Storage, Depends(_storage)]
