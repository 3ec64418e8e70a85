"""`inboxctl tokens ...`: run the sweep now, and see which tokens need attention."""

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

import typer

from services.token_refresh import service
from shared.app import open_state
from shared.settings import get_settings

app = typer.Typer(help="Instagram access tokens.", no_args_is_help=True)


@app.command()
def refresh(
    all_due: Annotated[
        bool,
        typer.Option(
            "--all-due",
            help="also retry tokens whose refresh failed in the last 30 minutes (else left for later)",
        ),
    ] = False,
) -> None:
    """Run one refresh sweep now and print what it did. Expired tokens are flagged, not sent to Meta."""

    async def main() -> service.SweepReport:
        async with open_state(get_settings()) as state:
            return await service.sweep(
                state["sessionmaker"], state["graph"], state["settings"], retry_now=all_due
            )

    started = time.perf_counter()
    report = asyncio.run(main())
    seconds = time.perf_counter() - started
    typer.echo(
        f"refreshed {report.refreshed}, failed {report.failed} (retried next sweep), "
        f"flagged {report.flagged} in {seconds:.1f} s"
    )
    for error in report.errors:
        typer.echo(f"  {error}")


@app.command()
def status() -> None:
    """Tokens expiring within 7 days or flagged for re-authorization, and the soonest expiry."""

    async def main() -> tuple[list[service.TokenStatus], float | None]:
        async with open_state(get_settings()) as state, state["sessionmaker"]() as session:
            return await service.expiring_soon(session), await service.soonest_expiry_days(session)

    tokens, soonest = asyncio.run(main())
    typer.echo(f"soonest expiry: {'none' if soonest is None else f'{soonest:.1f} days'}")
    if not tokens:
        typer.echo("no token expires within 7 days; none needs re-authorization")
    now = datetime.now(UTC)
    for token in tokens:
        state = (
            "RE-AUTHORIZE"
            if token.reauthorization_required
            else f"expires in {(token.expires_at - now).total_seconds() / 86_400:.1f} days"
        )
        reason = f" ({token.refresh_error})" if token.refresh_error else ""
        typer.echo(f"inbox {token.inbox_id} @{token.username}: {state}{reason}")
