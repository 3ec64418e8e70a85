"""Helpers for tests: real servers on threads, real workers in burst mode."""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from shared.worker import create_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread owns signals
        pass


@contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[str]:
    """Serve an ASGI app over real HTTP on 127.0.0.1:port from a background thread."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = _ThreadServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def run_worker(settings_cls: type, **overrides: Any) -> None:
    """Run an arq worker until its queue is empty (burst mode), as arq's own tests do."""
    worker = create_worker(settings_cls, burst=True, poll_delay=0, handle_signals=False, **overrides)
    try:
        await worker.main()
    finally:
        await worker.close()


async def eventually(predicate: Any, *, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll an async predicate until it returns something truthy (for work done by other processes)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last result: {result!r})")
        await asyncio.sleep(interval)


def inboxctl(*args: str) -> subprocess.CompletedProcess[str]:
    """The operator CLI in a subprocess, with this test run's environment."""
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args], capture_output=True, text=True, env=os.environ.copy()
    )


class TcpProxy:
    """A TCP proxy to a real server that a test can pause and cut: a network failure, for real.

    `hold()` keeps what clients send (in `held`) instead of forwarding it; `cut()` drops held
    bytes and resets every connection; `restore()` forwards again."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.held = b""
        self.holding = False
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [client_writer, server_writer]
        await asyncio.gather(
            self._pipe(client_reader, server_writer, from_client=True),
            self._pipe(server_reader, client_writer, from_client=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_client: bool
    ) -> None:
        while data := await reader.read(65536):
            if from_client and self.holding:
                self.held += data
                continue
            writer.write(data)
            await writer.drain()
        writer.close()

    def hold(self) -> None:
        self.holding = True

    def cut(self) -> None:
        self.held = b""
        for writer in self._writers:
            writer.transport.abort()
        self._writers = []

    def restore(self) -> None:
        self.holding = False


async def assert_serves_byte_ranges(client: Any, path: str, whole: bytes) -> None:
    """The media URL answers what players ask for to seek: one byte range (206), a range beyond
    the file (416), and several ranges with the whole file (200)."""
    size = len(whole)
    for asked, (first, last) in (
        ("bytes=0-9", (0, 9)),
        ("bytes=10-", (10, size - 1)),
        ("bytes=-5", (size - 5, size - 1)),
    ):
        part = await client.get(path, headers={"Range": asked})
        assert part.status_code == 206, asked
        assert part.content == whole[first : last + 1], asked
        assert part.headers["content-range"] == f"bytes {first}-{last}/{size}", asked
        assert part.headers["content-length"] == str(last - first + 1), asked
    beyond = await client.get(path, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    several = await client.get(path, headers={"Range": "bytes=0-1,4-5"})
    assert several.status_code == 200 and several.content == whole
    assert several.headers["accept-ranges"] == "bytes"
