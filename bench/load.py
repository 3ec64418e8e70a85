"""Open-loop load generator, run as its own process so it never shares a core's event loop
with the server it measures.

    python -m bench.load URL BODIES.jsonl --rate 500 --duration 10

Each line of BODIES.jsonl is `{"body": "<raw text>", "headers": {...}}` (empty for GET); requests are
sent at a fixed rate whatever the server's speed (so queueing shows up as latency), and the
result is printed as one JSON object: counts by status and latency percentiles in ms.
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

CONNECTIONS = 128


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(
    url: str, requests: list[tuple[bytes, dict[str, str]]], rate: float, duration: float, method: str = "POST"
) -> dict[str, object]:
    total = int(rate * duration)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    # Requests beyond the open connections wait here, not in httpx's pool (whose bookkeeping grows
    # quadratically with waiting requests and would starve this process of CPU).
    free = asyncio.Semaphore(CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def one(body: bytes, headers: dict[str, str]) -> None:
            started = time.perf_counter()  # latency counts from the scheduled send, waiting included
            async with free:
                try:
                    response = await client.request(method, url, content=body or None, headers=headers)
                    key = str(response.status_code)
                except httpx.HTTPError as error:
                    key = type(error).__name__
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[key] = statuses.get(key, 0) + 1

        tasks = []
        began = time.perf_counter()
        for index in range(total):
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body, headers = requests[index % len(requests)]
            tasks.append(asyncio.create_task(one(body, headers)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
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
