"""`make bench`: every performance figure of the project, each beside a baseline measured in the
same run on the same machine, written to bench/results.json, bench/results.md and a latency plot.

The system under test is the Procfile's processes on private Postgres and Redis against the
sandbox; load comes from separate processes (wrk when installed, else bench.load).
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from sandbox import events
from shared import crypto
from tools.stack import SANDBOX_APP_SECRET, Stack, free_port, running_stack, seed_connected_account

OUT = Path(__file__).resolve().parent
OUTBOUND_WORKERS = 2
API_RATE = 20
ACME = "17841400000000001"
JANE = "1190000000000001"
RESULTS: list[dict[str, Any]] = []
TICK = os.sysconf("SC_CLK_TCK")


def record(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_name: str = "",
    target: str = "",
    ok: bool | None = None,
) -> None:
    ratio = round(value / baseline, 3) if baseline else None
    RESULTS.append(
        {
            "figure": name,
            "value": round(value, 3),
            "unit": unit,
            "baseline": baseline and round(baseline, 3),
            "baseline_name": baseline_name,
            "ratio": ratio,
            "target": target,
            "met": ok,
        }
    )
    print(
        f"  {name}: {value:.2f} {unit}"
        + (f" (baseline {baseline:.2f}, ratio {ratio})" if baseline else "")
        + (f" target {target}: {'met' if ok else 'NOT met'}" if target else ""),
        flush=True,
    )


def pg_url(stack: Stack) -> str:
    return stack.postgres.url.replace("postgresql+asyncpg", "postgresql")


# -- process resources -------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            pids += _tree(int(child))
    return pids


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for each in _tree(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except (FileNotFoundError, IndexError):
            pass
    return total


def cpu_per_request(pid: int, run: Callable[[], tuple[float, int]]) -> tuple[float, float]:
    """Run a load `run()` answering (rate, requests): the rate and the CPU µs per request that the
    process `pid` and its children spent meanwhile."""
    before = cpu_seconds(pid)
    rate, requests = run()
    return rate, (cpu_seconds(pid) - before) * 1e6 / max(1, requests)


def postgres_cpu_seconds(stack: Stack) -> float:
    """CPU of the private Postgres: the postmaster, its live backends, and backends already gone."""
    pid = int((stack.postgres.directory / "data" / "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / TICK  # cutime + cstime of exited backends
    return cpu_seconds(pid) + reaped


def peak_rss_mb(pid: int) -> float:
    total = 0
    for each in _tree(pid):
        try:
            match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{each}/status").read_text())
            total += int(match.group(1)) if match else 0
        except FileNotFoundError:
            pass
    return total / 1024


def run_with_peak_rss(command: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """Run a command; its standard output, its peak RSS in MB, read from /proc while it runs
    (getrusage would report the forking parent's size, which the child shares until exec), and
    its CPU seconds (from the exit status's resource usage)."""
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.DEVNULL, text=True)
        peak = 0.0
        while True:
            peak = max(peak, peak_rss_mb(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.1)
        output.seek(0)
        return output.read(), peak, usage.ru_utime + usage.ru_stime


# -- load -----------------------------------------------------------------------------------


def signed_bodies(count: int, prefix: str, customers: int = 1) -> list[tuple[str, str]]:
    """Signed single-event deliveries; `customers` spreads them over that many senders."""
    bodies = []
    for i in range(count):
        customer = JANE if customers == 1 else f"119{i % customers:013d}"
        item = events.text(customer, ACME, text=f"benchmark event {i}", mid=f"{prefix}-{i}")
        body = events.encode(events.envelope(events.entry(ACME, item)))
        bodies.append((events.sign(body, SANDBOX_APP_SECRET), body.decode()))
    return bodies


def write_jsonl(
    path: Path, bodies: list[tuple[str, str]], *, method: str = "POST", headers: dict[str, str] | None = None
) -> Path:
    with path.open("w") as file:
        for signature, body in bodies:
            base = (
                {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
                if method == "POST"
                else {}
            )
            file.write(json.dumps({"body": body, "headers": {**base, **(headers or {})}}) + "\n")
    return path


def load(url: str, bodies: Path, *, rate: float, duration: float, method: str = "POST") -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            url,
            str(bodies),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--method",
            method,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def wrk(url: str, bodies: list[tuple[str, str]], directory: Path, seconds: int = 8) -> tuple[float, int]:
    """Requests per second and requests answered, from wrk (2 threads, 64 connections) posting the
    signed bodies in turn."""
    path = directory / "wrk-bodies.tsv"
    path.write_text("".join(f"{signature}\t{body}\n" for signature, body in bodies))
    done = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds}s", "-s", str(OUT / "wrk_post.lua"), url],
        capture_output=True,
        text=True,
        env={**os.environ, "BODIES": str(path)},
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    return rate, int(re.search(r"(\d+) requests in", done.stdout).group(1))  # type: ignore[union-attr]


# -- setup -----------------------------------------------------------------------------------


async def count_messages(stack: Stack, prefix: str) -> int:
    connection = await asyncpg.connect(pg_url(stack))
    try:
        return int(
            await connection.fetchval("SELECT count(*) FROM messages WHERE source_id LIKE $1", f"{prefix}-%")
        )
    finally:
        await connection.close()


async def raw_insert_rate(stack: Stack, rows: int = 5000, connections: int = 2) -> float:
    """Baseline: single-row INSERTs with raw asyncpg, `connections` at a time."""
    setup = await asyncpg.connect(pg_url(stack))
    await setup.execute(
        "CREATE TABLE bench_raw (id bigserial primary key, source_id text unique, content text, created_at timestamptz)"
    )
    pool = [await asyncpg.connect(pg_url(stack)) for _ in range(connections)]

    async def insert(connection: asyncpg.Connection, start: int) -> None:
        for i in range(start, rows, connections):
            await connection.execute(
                "INSERT INTO bench_raw (source_id, content, created_at) VALUES ($1, $2, now())", f"r{i}", "x"
            )

    began = time.perf_counter()
    await asyncio.gather(*(insert(c, n) for n, c in enumerate(pool)))
    elapsed = time.perf_counter() - began
    await setup.execute("DROP TABLE bench_raw")
    for connection in (*pool, setup):
        await connection.close()
    return rows / elapsed


# -- benchmarks ------------------------------------------------------------------------------


def bench_ingest(stack: Stack, directory: Path) -> list[dict[str, Any]]:
    print("ingest: webhooks service vs a bare FastAPI endpoint", flush=True)
    bare_port = free_port()
    bare = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "bench.bare:app",
            "--port",
            str(bare_port),
            "--workers",
            "2",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=OUT.parent,
    )
    time.sleep(2.5)
    bare_url, ingest_url = (
        f"http://127.0.0.1:{bare_port}/webhooks/instagram",
        f"{stack.url('webhooks')}/webhooks/instagram",
    )
    try:
        webhooks = stack.services["webhooks"].process
        assert webhooks is not None
        if shutil.which("wrk"):
            baseline, baseline_cpu = cpu_per_request(
                bare.pid, lambda: wrk(bare_url, signed_bodies(2000, "warm"), directory)
            )
            measured, measured_cpu = cpu_per_request(
                webhooks.pid, lambda: wrk(ingest_url, signed_bodies(60_000, "wrk"), directory)
            )
            tool = "wrk -t2 -c64"
        else:
            bodies = write_jsonl(directory / "tp.jsonl", signed_bodies(20_000, "tp"))

            def throughput(url: str) -> tuple[float, int]:
                result = load(url, bodies, rate=3000, duration=5)
                return result["achieved_rate"], sum(result["statuses"].values())

            baseline, baseline_cpu = cpu_per_request(bare.pid, lambda: throughput(bare_url))
            measured, measured_cpu = cpu_per_request(webhooks.pid, lambda: throughput(ingest_url))
            tool = "bench.load"
        record(
            "ingest throughput",
            measured,
            "req/s",
            baseline=baseline,
            baseline_name=f"bare FastAPI endpoint ({tool})",
            target=">= 0.7 x baseline",
            ok=measured >= 0.7 * baseline,
        )
        record(
            "ingest CPU per request",
            measured_cpu,
            "CPU µs (uvicorn processes, throughput run)",
            baseline=baseline_cpu,
            baseline_name="bare FastAPI endpoint",
        )
        sweep = []
        for rate in (100, 250, 500, 750):
            bodies = write_jsonl(directory / f"lat{rate}.jsonl", signed_bodies(int(rate * 4), f"lat{rate}"))
            result = load(ingest_url, bodies, rate=rate, duration=4)
            result["bare"] = load(bare_url, bodies, rate=rate, duration=4)
            sweep.append(result)
            print(
                f"  offered {rate}/s: p50 {result['p50_ms']} p99 {result['p99_ms']} ms (bare p99 {result['bare']['p99_ms']})",
                flush=True,
            )
        at_500 = next(r for r in sweep if r["offered_rate"] == 500)
        record(
            "ingest p99 ack at 500 req/s",
            at_500["p99_ms"],
            "ms",
            baseline=at_500["bare"]["p99_ms"],
            baseline_name="bare FastAPI endpoint p99",
            target="< 25 ms",
            ok=at_500["p99_ms"] < 25,
        )
        return sweep
    finally:
        bare.terminate()
        bare.wait()


def plot(sweep: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r["offered_rate"] for r in sweep]
    figure, axis = plt.subplots(figsize=(7, 4))
    for key, style in (("p50_ms", "o-"), ("p90_ms", "s-"), ("p99_ms", "^-")):
        axis.plot(rates, [r[key] for r in sweep], style, label=f"webhooks {key[:-3]}")
    axis.plot(rates, [r["bare"]["p99_ms"] for r in sweep], "k--", label="bare endpoint p99")
    axis.set_xlabel("offered load (signed webhooks per second)")
    axis.set_ylabel("acknowledgement latency (ms)")
    axis.set_yscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend()
    axis.set_title("Webhook ingest latency against offered load")
    figure.tight_layout()
    figure.savefig(OUT / "ingest_latency.png", dpi=110)


async def bench_inbound(stack: Stack, directory: Path) -> None:
    print("inbound: signed webhook in -> message row, two workers, 500 customers", flush=True)
    count = 12000
    bodies = write_jsonl(directory / "e2e.jsonl", signed_bodies(count, "e2e", customers=500))
    result = load(f"{stack.url('webhooks')}/webhooks/instagram", bodies, rate=2000, duration=count / 2000)
    count = result["statuses"].get("200", 0)  # the acknowledged events (Meta would redeliver the rest)
    before = await raw_insert_rate(stack)
    workers = [stack.start(f"inbound_worker_{i}", copy="inbound_worker") for i in range(2)]
    # The clock starts at the first stored message: a worker's start (imports, connections) is
    # not part of the pipeline's rate, and messages stored by then are not counted.
    while not (first := await count_messages(stack, "e2e")):
        await asyncio.sleep(0.01)
    cpu_before = sum(cpu_seconds(w.process.pid) for w in workers if w.process)
    began = time.perf_counter()
    while await count_messages(stack, "e2e") < count:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - began
    cpu = sum(cpu_seconds(w.process.pid) for w in workers if w.process) - cpu_before
    rate = (count - first) / elapsed
    baseline = (before + await raw_insert_rate(stack)) / 2  # this machine's speed drifts: both sides
    record(
        "inbound end-to-end rate (2 workers)",
        rate,
        "events/s",
        baseline=baseline,
        baseline_name="raw asyncpg single-row inserts (2 connections)",
        target=">= 1000/s and >= 1/3 x baseline",
        ok=rate >= 1000 and rate >= baseline / 3,
    )
    record("inbound worker CPU per 1000 events", cpu / (count - first) * 1000, "CPU s")
    webhooks = stack.services["webhooks"].process
    if webhooks:
        record(
            "webhooks service CPU per 1000 events",
            cpu_seconds(webhooks.pid) / max(1, count) * 1000,
            "CPU s (whole run)",
        )


async def bench_outbound(stack: Stack, sandbox: str, account_id: int) -> None:
    print("outbound: Send API throughput against Meta's per-account limit", flush=True)
    async with httpx.AsyncClient(base_url=sandbox, timeout=30) as client:
        await client.patch("/_sandbox/config", json={"webhook_url": None})
    limit = 100
    sandbox_pid = stack.services["sandbox"].process.pid  # type: ignore[union-attr]
    for label, accounts, conversations, each in (("1 busy account", 1, 100, 10), ("100 accounts", 100, 2, 5)):
        ids = await _outgoing(stack, sandbox, account_id, accounts, conversations, each)
        began = time.perf_counter()
        workers = [f"outbound_worker_{i}" for i in range(OUTBOUND_WORKERS)]
        pids = [stack.start(name, copy="outbound_worker").process.pid for name in workers]  # type: ignore[union-attr]
        # CPU is counted from the first confirmed send on, so the workers' start-up is left out.
        first: tuple[int, float, float, float] | None = None
        while (done := await _sent_count(stack, ids)) < len(ids):
            if first is None and done:
                first = (
                    done,
                    sum(map(cpu_seconds, pids)),
                    cpu_seconds(sandbox_pid),
                    postgres_cpu_seconds(stack),
                )
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - began
        first = first or (0, 0.0, cpu_seconds(sandbox_pid), postgres_cpu_seconds(stack))
        cpu = (
            sum(map(cpu_seconds, pids)) - first[1],
            cpu_seconds(sandbox_pid) - first[2],
            postgres_cpu_seconds(stack) - first[3],
        )
        for name in workers:
            stack.stop(name)
        async with httpx.AsyncClient(base_url=sandbox, timeout=30) as client:
            sent = (await client.get("/_sandbox/sent")).json()
            requests = (await client.get("/_sandbox/requests", params={"path_contains": "/messages"})).json()
        refused = [r for r in requests if r["status"] == 400]
        worst = _busiest_second(sent)
        times = sorted(item["at"] for item in sent)
        rate = (len(times) - 1) / (times[-1] - times[0])  # sustained: first send to last
        ceiling = limit * accounts
        record(
            f"outbound sends, {label} ({OUTBOUND_WORKERS} workers)",
            rate,
            f"msg/s sustained ({len(ids)} in {elapsed:.1f} s with worker start)",
            baseline=ceiling,
            baseline_name="Meta's limit (100/s per account)",
            target=">= 0.9 x limit, never above it" if accounts == 1 else "never above the per-account limit",
            ok=(rate >= 0.9 * limit if accounts == 1 else True) and worst <= limit and not refused,
        )
        record(
            f"outbound busiest second of one account, {label}",
            worst,
            "msg",
            target=f"<= {limit}",
            ok=worst <= limit,
        )
        per_1000 = 1000 / max(1, len(ids) - first[0])
        for process, seconds in zip(("outbound workers", "sandbox", "Postgres"), cpu, strict=True):
            record(f"outbound CPU per 1000 sends, {label}: {process}", seconds * per_1000, "CPU s")
        async with httpx.AsyncClient(base_url=sandbox, timeout=30) as client:
            await client.delete("/_sandbox/requests")
            await client.delete("/_sandbox/sent")


async def _outgoing(
    stack: Stack, sandbox: str, account_id: int, accounts: int, conversations: int, each: int
) -> list[int]:
    """Outgoing messages ready to send: `accounts` businesses x `conversations` customers x `each` messages."""
    connection = await asyncpg.connect(pg_url(stack))
    now = datetime.now(UTC)
    ids: list[int] = []
    async with httpx.AsyncClient(base_url=sandbox, timeout=30) as client:
        for n in range(accounts):
            ig_id = f"17841{5 + int(accounts > 1)}{n:011d}"  # each series gets its own businesses
            await client.post(
                "/_sandbox/businesses",
                json={"ig_id": ig_id, "asid": 27001234567890123 + n, "username": f"shop{n}"},
            )
            token = (await client.post("/_sandbox/tokens", json={"business": ig_id})).json()["access_token"]
            channel = await connection.fetchval(
                "INSERT INTO channel_instagram (account_id, instagram_id, access_token, expires_at, token_updated_at) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                account_id,
                ig_id,
                crypto.encrypt(token),
                now + timedelta(days=50),
                now,
            )
            inbox = await connection.fetchval(
                "INSERT INTO inboxes (account_id, name, channel_id) VALUES ($1, $2, $3) RETURNING id",
                account_id,
                f"shop{n}",
                channel,
            )
            for c in range(conversations):
                igsid = f"11{8 + int(accounts > 1)}{n:05d}{c:07d}"
                await client.post(
                    "/_sandbox/customers", json={"igsid": igsid, "username": f"customer{n}_{c}"}
                )
                await client.post(f"/_sandbox/customers/{igsid}/last_message", json={"business": ig_id})
                contact = await connection.fetchval(
                    "INSERT INTO contacts (account_id, name) VALUES ($1, $2) RETURNING id", account_id, igsid
                )
                contact_inbox = await connection.fetchval(
                    "INSERT INTO contact_inboxes (contact_id, inbox_id, source_id) VALUES ($1, $2, $3) RETURNING id",
                    contact,
                    inbox,
                    igsid,
                )
                display_id = await connection.fetchval(
                    "UPDATE accounts SET last_display_id = last_display_id + 1 WHERE id = $1 RETURNING last_display_id",
                    account_id,
                )
                conversation = await connection.fetchval(
                    "INSERT INTO conversations (account_id, inbox_id, contact_id, contact_inbox_id, display_id, last_incoming_at) "
                    "VALUES ($1, $2, $3, $4, $5, now()) RETURNING id",
                    account_id,
                    inbox,
                    contact,
                    contact_inbox,
                    display_id,
                )
                rows = await connection.fetch(
                    "INSERT INTO messages (account_id, inbox_id, conversation_id, message_type, content, status, sender_type) "
                    "SELECT $1, $2, $3, 1, 'benchmark reply ' || $5 || '-' || g, 'progress', 'User' FROM generate_series(1, $4) g RETURNING id",
                    account_id,
                    inbox,
                    conversation,
                    each,
                    str(conversation),
                )
                ids += [r["id"] for r in rows]
    await connection.close()
    from arq.connections import RedisSettings, create_pool

    from shared.queue import SEND_MESSAGE, enqueue

    redis = await create_pool(RedisSettings.from_dsn(stack.redis.url))
    for message_id in ids:
        await enqueue(redis, SEND_MESSAGE, key=str(message_id), message_id=message_id)
    await redis.aclose()
    return ids


async def _sent_count(stack: Stack, ids: list[int]) -> int:
    connection = await asyncpg.connect(pg_url(stack))
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM messages WHERE id = ANY($1) AND status <> 'progress'", ids
            )
        )
    finally:
        await connection.close()


def _busiest_second(sent: list[dict[str, Any]]) -> int:
    """The most sends any one account made within a sliding one-second window."""
    worst = 0
    by_account: dict[str, list[float]] = {}
    for item in sent:
        by_account.setdefault(item["business"], []).append(item["at"])
    for times in by_account.values():
        times.sort()
        start = 0
        for end, at in enumerate(times):
            while at - times[start] >= 1.0:
                start += 1
            worst = max(worst, end - start + 1)
    return worst


async def bench_api(stack: Stack, directory: Path, account_id: int, api_token: str) -> None:
    print("API: the 50 latest messages of a conversation, 1 million messages in the database", flush=True)
    connection = await asyncpg.connect(pg_url(stack))
    base = await connection.fetchrow(
        "SELECT * FROM conversations WHERE account_id = $1 ORDER BY id LIMIT 1", account_id
    )
    await connection.execute(
        """
        INSERT INTO conversations (account_id, inbox_id, contact_id, contact_inbox_id, display_id, status)
        SELECT $1, $2, $3, $4, 200000 + g, 'resolved' FROM generate_series(1, 999) g""",
        base["account_id"],
        base["inbox_id"],
        base["contact_id"],
        base["contact_inbox_id"],
    )
    existing = await connection.fetchval("SELECT count(*) FROM messages")
    conversations = await connection.fetchval(
        "SELECT count(*) FROM conversations WHERE account_id = $1", account_id
    )
    await connection.execute(
        """
        INSERT INTO messages (account_id, inbox_id, conversation_id, message_type, content, source_id, created_at)
        SELECT c.account_id, c.inbox_id, c.id, g % 2, 'message ' || g, 'm-' || c.id || '-' || g,
               now() - (g || ' seconds')::interval
        FROM conversations c CROSS JOIN generate_series(1, $1) g WHERE c.account_id = $2""",
        (1_000_000 - existing) // conversations + 1,
        account_id,
    )
    await connection.execute("VACUUM ANALYZE messages")  # a database in steady state, not mid-autovacuum
    total = await connection.fetchval("SELECT count(*) FROM messages")
    display_id = base["display_id"]
    await connection.close()
    url = (
        f"{stack.url('messaging')}/api/v1/accounts/{account_id}/conversations/{display_id}/messages?limit=50"
    )
    bodies = write_jsonl(
        directory / "api.jsonl", [("", "")], method="GET", headers={"api_access_token": api_token}
    )
    # Latency at a steady load the service sustains; throughput is the other benchmarks' subject.
    load(url, bodies, rate=API_RATE, duration=3, method="GET")  # warm-up: connections, statement caches
    result = load(url, bodies, rate=API_RATE, duration=10, method="GET")
    health = load(f"{stack.url('messaging')}/health", bodies, rate=API_RATE, duration=10, method="GET")
    record(
        f"API p99 at {API_RATE} req/s, 50 latest messages ({total:,} messages stored)",
        result["p99_ms"],
        "ms",
        baseline=health["p99_ms"],
        baseline_name="GET /health of the same service",
        target="< 50 ms",
        ok=result["p99_ms"] < 50 and result["statuses"] == {"200": result["sent"]},
    )


async def bench_token_sweep(stack: Stack, sandbox: str) -> None:
    print("token refresh: a sweep over 100,000 channels, 10% due", flush=True)
    async with httpx.AsyncClient(base_url=sandbox, timeout=30) as client:
        token = (await client.post("/_sandbox/tokens", json={"age_seconds": 2 * 86400})).json()[
            "access_token"
        ]
    secret = crypto.encrypt(token)
    connection = await asyncpg.connect(pg_url(stack))
    account_id = await connection.fetchval("SELECT id FROM accounts LIMIT 1")
    await connection.execute(
        """
        INSERT INTO channel_instagram (account_id, instagram_id, access_token, expires_at, token_updated_at)
        SELECT $1, 'sweep-' || g, $2,
               CASE WHEN g % 10 = 0 THEN now() + interval '5 days' ELSE now() + interval '40 days' END,
               now() - interval '20 days'
        FROM generate_series(1, 100000) g""",
        account_id,
        secret,
    )
    await connection.close()
    sandbox_pid = stack.services["sandbox"].process.pid  # type: ignore[union-attr]
    before = cpu_seconds(sandbox_pid), postgres_cpu_seconds(stack)
    output, peak, sweep_cpu = await asyncio.to_thread(
        run_with_peak_rss, [sys.executable, "-m", "shared.cli", "tokens", "refresh"], stack.env
    )
    cpu = sweep_cpu, cpu_seconds(sandbox_pid) - before[0], postgres_cpu_seconds(stack) - before[1]
    reported = re.search(r"refreshed (\d+).* in ([\d.]+) s", output)
    refreshed, seconds = (int(reported.group(1)), float(reported.group(2))) if reported else (0, 1.0)
    rate = refreshed / seconds
    record(
        "token sweep, 100k channels (10% due)",
        rate,
        "refreshes/s (the sweep's own time)",
        target=">= 500/s",
        ok=rate >= 500 and refreshed == 10_000,
    )
    record("token sweep peak memory", peak, "MB (peak RSS of the sweep)", target="< 200 MB", ok=peak < 200)
    for process, seconds in zip(("sweep (whole run)", "sandbox", "Postgres"), cpu, strict=True):
        record(f"token sweep CPU per 1000 refreshes: {process}", seconds / max(1, refreshed) * 1000, "CPU s")


def write_results(stack: Stack) -> None:
    for name, service in stack.services.items():
        if service.process:
            record(f"peak RSS: {name}", peak_rss_mb(service.process.pid), "MB")
    payload = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "results": RESULTS,
    }
    (OUT / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "| figure | measured | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in RESULTS:
        base = f"{r['baseline']} ({r['baseline_name']})" if r["baseline"] is not None else ""
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(
            f"| {r['figure']} | {r['value']} {r['unit']} | {base} | {r['ratio'] or ''} | {r['target']} | {met} |"
        )
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


PARTS = ("ingest", "inbound", "outbound", "api", "sweep")


async def measure(stack: Stack, directory: Path, parts: tuple[str, ...] = PARTS) -> None:
    sandbox = stack.url("sandbox")
    async with httpx.AsyncClient(base_url=sandbox) as client:
        token = (await client.post("/_sandbox/tokens", json={})).json()["access_token"]
        await client.post(f"/_sandbox/customers/{JANE}/last_message", json={})
    account_id, api_token = await seed_connected_account(stack.postgres.url, token)
    if "ingest" in parts:
        plot(bench_ingest(stack, directory))
        subprocess.run(["redis-cli", "-p", str(stack.redis.port), "FLUSHDB"], capture_output=True, check=True)
    if "inbound" in parts:
        await bench_inbound(stack, directory)
        for name in [n for n in stack.services if n.startswith("inbound_worker")]:
            stack.stop(name)
    if "outbound" in parts:
        await bench_outbound(stack, sandbox, account_id)
    if "api" in parts:
        await bench_api(stack, directory, account_id, api_token)
    if "sweep" in parts:
        await bench_token_sweep(stack, sandbox)


def main() -> None:
    """`python -m bench.run [part ...]`: every part by default; results files only for a full run."""
    parts = tuple(sys.argv[1:]) or PARTS
    unknown = set(parts) - set(PARTS)
    if unknown:
        sys.exit(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    started = time.perf_counter()
    directory = Path(tempfile.mkdtemp(prefix="inbox-bench-load-"))
    with running_stack(webhooks_workers=2, extra_env={"LOG_LEVEL": "WARNING"}) as stack:
        for name in ("sandbox", "webhooks", "messaging"):
            stack.start(name)
        asyncio.run(measure(stack, directory, parts))
        if parts == PARTS:
            write_results(stack)
    print(
        f"\nbench finished in {time.perf_counter() - started:.0f} s; see bench/results.md and bench/ingest_latency.png"
    )


if __name__ == "__main__":
    main()
