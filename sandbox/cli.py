"""`inboxctl sandbox ...`: make the Meta sandbox send signed webhooks, as a customer would."""

import asyncio
import json
from typing import Annotated, Any

import typer

from sandbox.client import ACME, JANE, SandboxAdmin

app = typer.Typer(help="Drive the Meta sandbox (development only).", no_args_is_help=True)
URL = typer.Option("--url", envvar="SANDBOX_URL", help="the sandbox's base URL")


def _send(url: str, kind: str, customer: str, business: str, fields: dict[str, Any]) -> None:
    async def main() -> dict[str, Any]:
        admin = SandboxAdmin(url)
        try:
            return await admin.webhook(kind, customer=customer, business=business, **fields)
        finally:
            await admin.aclose()

    result = asyncio.run(main())
    typer.echo(
        f"delivered {kind} from {customer} to {business}: HTTP {result['statuses']} mids {result['mids']}"
    )


@app.command()
def dm(
    text: Annotated[str, typer.Option(help="the message text")] = "Hi! Is this still available?",
    customer: Annotated[str, typer.Option(help="the customer's IGSID")] = JANE,
    business: Annotated[str, typer.Option(help="the business's Instagram account id")] = ACME,
    url: Annotated[str, URL] = "http://127.0.0.1:8010",
) -> None:
    """Send a text DM from a sandbox customer to the connected business."""
    _send(url, "text", customer, business, {"text": text})


@app.command()
def event(
    kind: Annotated[
        str, typer.Argument(help="text, attachment, story_reply, reaction, read, unsend, edit, ...")
    ],
    fields: Annotated[str, typer.Option(help='kind-specific fields as JSON, e.g. {"type": "video"}')] = "{}",
    customer: Annotated[str, typer.Option(help="the customer's IGSID")] = JANE,
    business: Annotated[str, typer.Option(help="the business's Instagram account id")] = ACME,
    url: Annotated[str, URL] = "http://127.0.0.1:8010",
) -> None:
    """Send any kind of webhook event."""
    _send(url, kind, customer, business, json.loads(fields))
