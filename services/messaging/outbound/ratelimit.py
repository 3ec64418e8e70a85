"""Per-account send pacing, shared by every outbound worker through Redis.

Meta allows 100 Send API calls per second per Instagram account (10 for audio and video). Each
account's sends get evenly spaced slots, one every WINDOW_SECONDS / limit (a little wider than
Meta's second, for network jitter), on Redis's clock so every worker agrees. A part reserves its
slot once: a slot within HORIZON_SECONDS is awaited in process; a later one is kept for that
part and the job is deferred until just before it. A busy account's backlog therefore waits in
the queue, not in a worker's job slots, and each part is scheduled exactly once. A slot
missed by more than LATE_SECONDS (a job came back late, a busy machine woke it late) is given
up for a new one: sent late, it would bunch with the sends of the slots after it.
"""

import asyncio
from dataclasses import dataclass

from arq.connections import ArqRedis

WINDOW_SECONDS = 1.05
HORIZON_SECONDS = 0.2
LATE_SECONDS = 0.01
LEAD_SECONDS = 0.015
LATE_TRIES = 3

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


@dataclass(frozen=True)
class Turn:
    defer: float | None  # None: send at `due`; otherwise come back in that many seconds
    due: float = 0.0  # the slot, on the event loop's clock

    def missed(self) -> bool:
        """Past the slot by more than LATE_SECONDS: sent now, it would bunch with the next ones."""
        return asyncio.get_running_loop().time() - self.due > LATE_SECONDS

    async def arrive(self) -> bool:
        """Wait for the slot; False when it was missed."""
        await asyncio.sleep(self.due - asyncio.get_running_loop().time())
        return not self.missed()


async def take(redis: ArqRedis, *, channel_id: int, kind: str, limit: int, part: str) -> Turn:
    """The part's slot: returns LEAD_SECONDS before it (time for the caller to record the send
    it is about to make), or says when to come back for it."""
    loop = asyncio.get_running_loop()
    for _ in range(LATE_TRIES):
        asked = loop.time()  # the slot is counted from here: its answer's own delay is lateness too
        slot = await reserve(redis, channel_id=channel_id, kind=kind, limit=limit, part=part)
        if not slot.now:
            return Turn(defer=slot.seconds - HORIZON_SECONDS * 0.75)
        turn = Turn(defer=None, due=asked + slot.seconds)
        await asyncio.sleep(turn.due - LEAD_SECONDS - loop.time())
        if not turn.missed():
            return turn
    return Turn(defer=HORIZON_SECONDS)
