"""A real HTTP receiver for account webhooks: records what arrives, answers as told."""

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import free_port, serve_in_thread


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    # path -> list of (status, delay seconds) answers, used in order; then 200 immediately
    plans: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def plan(self, path: str, *answers: tuple[int, float]) -> None:
        with self.lock:
            self.plans[path] = list(answers)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.plans.clear()


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    async def handle(request: Request) -> Response:
        receiver = holder["receiver"]
        body = await request.body()
        with receiver.lock:
            answers = receiver.plans.get(request.url.path, [])
            status, delay = answers.pop(0) if answers else (200, 0.0)
        if delay:
            await asyncio.sleep(delay)
        with receiver.lock:
            receiver.received.append(
                Received(request.url.path, dict(request.headers), body, time.monotonic())
            )
        return Response(status_code=status)

    app = Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])
    with serve_in_thread(app, free_port()) as url:
        holder["receiver"] = Receiver(url)
        yield holder["receiver"]


@pytest.fixture
def receiver(receiver_server: Receiver) -> Iterator[Receiver]:
    receiver_server.reset()
    yield receiver_server
    receiver_server.reset()
