"""The Meta sandbox: a local Instagram platform (OAuth, Graph, Send API, signed webhooks).

Served as `sandbox.main:app` (port 8010 in `make run`); configured from SANDBOX_* variables.
"""

import asyncio
import copy
import json
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sandbox import admin, graph, oauth
from sandbox.config import SandboxConfig
from sandbox.world import Fault, GraphFault, OAuthFault, World

SECRET_PARAMS = re.compile(r"(access_token|client_secret|code)=[^&]+")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else None


def create_app(config: SandboxConfig | None = None) -> FastAPI:
    config = config or SandboxConfig.from_env()
    app = FastAPI(title="Meta sandbox (Instagram API with Instagram Login)")
    app.state.world = World()
    app.state.config = config
    app.state.initial_config = copy.deepcopy(config)
    app.state.bearer = _bearer
    tasks: set[asyncio.Task[None]] = set()

    def background(coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def cancel_background() -> None:
        for task in tasks:
            task.cancel()

    app.state.background = background
    app.state.cancel_background = cancel_background

    @app.exception_handler(GraphFault)
    async def graph_fault(_: Request, fault: GraphFault) -> JSONResponse:
        return JSONResponse(fault.body(), status_code=fault.status)

    @app.exception_handler(OAuthFault)
    async def oauth_fault(_: Request, fault: OAuthFault) -> JSONResponse:
        return JSONResponse(fault.body(), status_code=400)

    @app.middleware("http")
    async def faults_and_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path.startswith("/_sandbox"):
            return await call_next(request)
        world: World = app.state.world
        started = time.time()
        fault = _matching_fault(world, request)
        if fault is not None and (fault.error is not None or fault.status is not None):
            await asyncio.sleep(fault.hang_seconds)
            response = _fault_response(fault)
        else:
            response = await call_next(request)  # the request takes effect, as at Meta...
            if fault is not None:
                await asyncio.sleep(fault.hang_seconds)  # ...but the answer comes late (or never)
        if re.match(r"^/v\d+\.\d+/", path):
            usage = {"call_count": min(100, len(world.requests) % 100), "total_cputime": 1, "total_time": 1}
            response.headers["X-App-Usage"] = json.dumps(usage)
        world.requests.append(
            {
                "method": request.method,
                "path": path,
                "query": SECRET_PARAMS.sub(r"\1=***", request.url.query),
                "authorized": _bearer(request) is not None or "access_token=" in request.url.query,
                "status": response.status_code,
                "at": started,
            }
        )
        return response

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(admin.router)
    app.include_router(oauth.router)
    app.include_router(graph.router)
    return app


def _matching_fault(world: World, request: Request) -> Fault | None:
    """Take one use of the first fault that matches the request."""
    for fault in world.faults:
        if fault.times <= 0 or (fault.method and fault.method.upper() != request.method):
            continue
        if re.search(fault.path_regex, request.url.path):
            fault.times -= 1
            return fault
    return None


def _fault_response(fault: Fault) -> Response:
    if fault.error is not None:
        error = GraphFault(
            int(fault.error.get("code", 1)),
            str(fault.error.get("message", "An unknown error occurred")),
            subcode=fault.error.get("subcode"),
            kind=str(fault.error.get("type", "OAuthException")),
            status=fault.status or 400,
        )
        return JSONResponse(error.body(), status_code=error.status)
    if isinstance(fault.body, str):
        return Response(fault.body, status_code=fault.status or 500, media_type="text/html")
    return JSONResponse(fault.body, status_code=fault.status or 500)


app = create_app()
