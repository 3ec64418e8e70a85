"""Per-account send pacing, shared by every outbound worker through Redis.

Meta allows 100 Send API calls per second per Instagram account (10 for audio and video). Each
account's sends get evenly spaced slots, one every WINDOW_SECONDS / limit (a little wider than
Meta's second, for network jitter), on Redis's clock so every worker agrees. A part reserves its
slot once: a slot within HORIZON_SECONDS is awaited in process; a later one is kept for that
part and the job is deferred until just before it. A busy account's backlog therefore waits in
the queue, not in a worker's job slots, and each part is scheduled exactly once. A kept slot
missed by more than LATE_SECONDS (the job came back late) is given up for a new one.

Slots spread the sends; the guarantee is the account's send log. Right before a request goes
out, it is counted among the account's sends of the last WINDOW_SECONDS, and goes out only
while they number fewer than the limit. A send that is late (a busy machine woke it late, its
commit was slow) therefore still goes out when the window has room, instead of being given up
and tried again, which on a loaded machine would spend more of it on retries the later the
sends get.
"""

import asyncio
from dataclasses import dataclass

from arq.connections import ArqRedis

WINDOW_SECONDS = 1.05
HORIZON_SECONDS = 0.2
LATE_SECONDS = 0.01
LEAD_SECONDS = 0.015

# KEYS[1] = the account's next free slot, KEYS[2] = this part's reserved slot (µs since the epoch);
# ARGV = interval µs, horizon µs, late µs. Returns {1, µs to wait then send} or {0, µs until the slot}.
RESERVE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local slot = tonumber(redis.call('GET', KEYS[2]) or 0)
if slot < now - tonumber(ARGV[3]) then
  slot = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
  local ttl = math.ceil((slot - now + ARGV[1]) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%d', slot + ARGV[1]), 'PX', ttl)
end
local wait = slot - now
if wait > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], string.format('%d', slot), 'PX', math.ceil(wait / 1000) + 600000)
  return {0, wait}
end
redis.call('DEL', KEYS[2])
return {1, math.max(wait, 0)}
"""


@dataclass(frozen=True)
class Slot:
    now: bool  # True: wait `seconds` in process, then send; False: come back in `seconds`
    seconds: float


async def reserve(redis: ArqRedis, *, channel_id: int, kind: str, limit: int, part: str) -> Slot:
    """The send slot of one part (`message id:part name`) on the account's `kind` pace."""
    interval_us = int(WINDOW_SECONDS / limit * 1_000_000)
    keys = (f"instagram-inbox:send-pace:{channel_id}:{kind}", f"instagram-inbox:send-slot:{part}")
    horizon_us, late_us = int(HORIZON_SECONDS * 1_000_000), int(LATE_SECONDS * 1_000_000)
    now, wait_us = await redis.eval(RESERVE, 2, *keys, str(interval_us), str(horizon_us), str(late_us))  # type: ignore[misc]
    return Slot(now=bool(now), seconds=int(wait_us) / 1_000_000)


# KEYS[1] = the account's send log (a sorted set of send times, µs); ARGV = window µs, limit,
# the send's name. Returns 0 when the send is counted and may go out now, or µs until the oldest
# send in the window leaves it.
ADMIT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. '@' .. now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 1)
"""


@dataclass(frozen=True)
class Turn:
    """A part's turn to go out: `defer` says when to come back instead; otherwise the part waits
    for its slot (`due`, on the event loop's clock) and is counted in the send log."""

    defer: float | None
    due: float = 0.0
    log: str = ""
    limit: int = 0
    part: str = ""

    async def arrive(self, redis: ArqRedis) -> float | None:
        """Wait for the slot, then count the send: None to send now, or the seconds until the
        account's last window has room (more sends went out in it than the limit allows)."""
        await asyncio.sleep(self.due - asyncio.get_running_loop().time())
        window_us = int(WINDOW_SECONDS * 1_000_000)
        wait_us = await redis.eval(ADMIT, 1, self.log, str(window_us), str(self.limit), self.part)  # type: ignore[misc]
        return None if int(wait_us) == 0 else int(wait_us) / 1_000_000


async def take(redis: ArqRedis, *, channel_id: int, kind: str, limit: int, part: str) -> Turn:
    """The part's slot: returns LEAD_SECONDS before it (time for the caller to record the send
    it is about to make), or says when to come back for it."""
    loop = asyncio.get_running_loop()
    asked = loop.time()  # the slot is counted from here, so its answer's delay is not added to it
    slot = await reserve(redis, channel_id=channel_id, kind=kind, limit=limit, part=part)
    if not slot.now:
        return Turn(defer=slot.seconds - HORIZON_SECONDS * 0.75)
    due = asked + slot.seconds
    await asyncio.sleep(due - LEAD_SECONDS - loop.time())
    log = f"instagram-inbox:send-log:{channel_id}:{kind}"
    return Turn(defer=None, due=due, log=log, limit=limit, part=part)
