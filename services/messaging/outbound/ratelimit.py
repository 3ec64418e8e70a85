"""Per-account send limiter: a sliding one-second window in Redis, shared by every outbound worker.

Meta allows 100 Send API calls per second per Instagram account (10 for audio and video). A
job that finds its account's window full is deferred until a slot frees, so a busy account
never blocks the others' jobs and the account never exceeds Meta's limit.
"""

import time
import uuid

from arq.connections import ArqRedis

WINDOW_MS = 1050  # a little wider than Meta's second, for clock and network jitter

# KEYS[1] = window key; ARGV = now_ms, window_ms, limit, member. Returns 0 (slot taken) or ms to wait.
SLIDING_WINDOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + ARGV[2] - ARGV[1])
"""


async def acquire(redis: ArqRedis, *, channel_id: int, kind: str, limit: int) -> float:
    """Take a send slot: 0 when granted, else the seconds to wait before trying again."""
    now_ms = int(time.time() * 1000)
    key = f"instagram-inbox:send-window:{channel_id}:{kind}"
    wait_ms = await redis.eval(
        SLIDING_WINDOW, 1, key, now_ms, WINDOW_MS, limit, f"{now_ms}:{uuid.uuid4().hex}"
    )  # type: ignore[misc]
    return int(wait_ms) / 1000
