"""`inboxctl replies ...`: replies going out through the Send API."""

import asyncio
from typing import Annotated

import typer

from services.messaging.outbound import recovery
from shared.app import open_state
from shared.settings import get_settings

app = typer.Typer(help="Replies going out through the Instagram Send API.", no_args_is_help=True)


@app.command()
def recover(
    grace: Annotated[
        float | None,
        typer.Option(help="only replies older than this many seconds (default REPLY_RECOVERY_GRACE_SECONDS)"),
    ] = None,
) -> None:
    """Run the outbound worker's recovery sweep now: replies in progress without a live send job
    are enqueued (under their usual job id, so a queued or running send gets nothing new)."""

    async def main() -> recovery.RecoveryReport:
        async with open_state(get_settings()) as state:
            seconds = state["settings"].REPLY_RECOVERY_GRACE_SECONDS if grace is None else grace
            return await recovery.sweep(state["sessionmaker"], state["redis"], grace_seconds=seconds)

    report = asyncio.run(main())
    typer.echo(
        f"enqueued {report.enqueued}, left to their queued or running job {report.waiting}, "
        f"given up {report.given_up}"
    )
