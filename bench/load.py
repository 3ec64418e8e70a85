"""Open-loop load generator, run as its own process so it never shares a core's event loop
with the server it measures.

    python -m bench.load URL BODIES.jsonl --rate 500 --duration 10

Each line of BODIES.jsonl is `{"body": "<raw text>", "headers": {...}}` (empty for GET); requests are
sent at a fixed rate whatever the server's speed (so queueing shows up as latency, counted from
each request's scheduled time), and the result is printed as one JSON object: counts by status
and latency percentiles in ms. HTTP/1.1 keep-alive over raw asyncio streams: a general-purpose
client spends more CPU per request than the servers it would measure.
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

CONNECTIONS = 128
TIMEOUT_SECONDS = 10.0

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def encode(method: str, target: str, host: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def response_status(reader: asyncio.StreamReader) -> int:
    """Read one whole response (Content-Length or chunked) and answer its status code."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head[9:12])
    if "transfer-encoding: chunked" in head:
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
        return status
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            await reader.readexactly(int(line.split(":", 1)[1]))
    return status


async def run(
    url: str, requests: list[tuple[bytes, dict[str, str]]], rate: float, duration: float, method: str = "POST"
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    raw = [encode(method, target, f"{host}:{port}", body, headers) for body, headers in requests]
    total = int(rate * duration)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    free, idle = asyncio.Semaphore(CONNECTIONS), list[Connection]()

    async def exchange(request: bytes, *, fresh: bool = False) -> int:
        reused = bool(idle) and not fresh
        reader, writer = idle.pop() if reused else await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            status = await response_status(reader)
        except (OSError, asyncio.IncompleteReadError):
            writer.close()
            if reused:  # the server closed an idle keep-alive connection: once more, on a new one
                return await exchange(request, fresh=True)
            raise
        except BaseException:
            writer.close()
            raise
        idle.append((reader, writer))
        return status

    async def one(request: bytes) -> None:
        started = time.perf_counter()
        async with free:
            try:
                key = str(await asyncio.wait_for(exchange(request), TIMEOUT_SECONDS))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as error:
                key = type(error).__name__
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[key] = statuses.get(key, 0) + 1

    tasks = []
    began = time.perf_counter()
    for index in range(total):
        delay = began + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(raw[index % len(raw)])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    for _, writer in idle:
        writer.close()
    return {
        "offered_rate": rate,
        "sent": total,
        "achieved_rate": round(total / elapsed, 1),
        "statuses": statuses,
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p90_ms": round(percentile(latencies, 0.90), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("bodies", type=Path)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--method", default="POST")
    args = parser.parse_args()
    requests = []
    for line in args.bodies.read_text().splitlines():
        item = json.loads(line)
        requests.append((item["body"].encode(), item.get("headers", {})))
    result = asyncio.run(run(args.url, requests, args.rate, args.duration, args.method))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
