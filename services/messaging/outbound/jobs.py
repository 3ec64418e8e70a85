"""Outbound jobs (queue `outbound`): replies go out through the Instagram Send API."""

from arq import Retry, func
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.outbound import service as outbound
from shared import worker
from shared.graph import GraphTransientError
from shared.models import Message
from shared.queue import SEND_MESSAGE
from shared.settings import get_settings
from shared.worker import JobContext

MAX_TRIES = 12
# Deferrals (ordering, rate limit) are retries too; allow many before giving up.
MAX_JOB_TRIES = 1000


async def send_message(ctx: JobContext, message_id: int) -> None:
    app = await ctx["app_config"].get()

    async def work(session: AsyncSession) -> None:
        try:
            await outbound.send(
                session, ctx["graph"], ctx["redis"], ctx["settings"], app, message_id=message_id
            )
        except outbound.Deferred as deferred:
            await session.commit()  # keep the parts already sent
            raise Retry(defer=deferred.seconds) from deferred
        except GraphTransientError as error:
            message = await session.get(Message, message_id)
            assert message is not None
            failures = int(message.content_attributes.get("send_failures", 0)) + 1
            message.content_attributes = {**message.content_attributes, "send_failures": failures}
            if failures >= MAX_TRIES:
                outbound.fail(session, message, f"Instagram kept failing: {error.message}")
                return
            await session.commit()  # keep the parts already sent, and the count
            raise Retry(defer=worker.backoff(failures, hint=error.retry_after)) from error

    await worker.run_job(
        ctx,
        job=SEND_MESSAGE,
        key=str(message_id),
        kwargs={"message_id": message_id},
        max_tries=MAX_JOB_TRIES,
        work=work,
    )


FUNCTIONS = [
    func(
        send_message,
        name=SEND_MESSAGE.name,
        max_tries=MAX_JOB_TRIES,
        timeout=get_settings().JOB_TIMEOUT_SECONDS,
    )
]
