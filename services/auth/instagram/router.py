from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from services.auth.instagram import service as instagram
from shared import channels
from shared.access import AccountAdministrator
from shared.app import GraphDep, QueueDep, SessionDep, SettingsDep
from shared.graph import GraphError
from shared.logging import get_logger
from shared.models import ChannelInstagram
from shared.queue import SUBSCRIBE_WEBHOOKS, enqueue

router = APIRouter(tags=["instagram"])
log = get_logger("auth.instagram")


@router.post("/api/v1/accounts/{account_id}/instagram/authorization")
async def authorization(
    member: AccountAdministrator, graph: GraphDep, settings: SettingsDep
) -> dict[str, object]:
    """The consent URL to open in a browser; its signed `state` names this account, valid 10 minutes."""
    url = await instagram.authorization_url(
        graph, settings, account_id=member.account_id, user_id=member.user.id
    )
    return {"success": True, "url": url}


@router.get("/instagram/callback", response_class=RedirectResponse, status_code=302)
async def callback(
    session: SessionDep,
    graph: GraphDep,
    queue: QueueDep,
    settings: SettingsDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> RedirectResponse:
    """Meta sends the browser here after consent; every outcome ends on a dashboard page."""
    try:
        account_id = instagram.account_of_state(state)
        if error or not code:
            raise instagram.ConnectFailure(
                error or "missing_code",
                400,
                error_description or "Instagram did not return an authorization code.",
                account_id=account_id,
            )
        connected = await instagram.fetch_account(graph, settings, code=code, account_id=account_id)
        inbox, created = await instagram.connect(session, account_id=account_id, connected=connected)
        await session.commit()
    except instagram.ConnectFailure as failure:
        await session.rollback()
        if failure.account_id is None and error:  # cancelled consent without a trustworthy state
            failure = instagram.ConnectFailure(error, 400, error_description or failure.message)
        log.info("instagram connect failed", error_type=failure.error_type, code=failure.code)
        return RedirectResponse(instagram.failure_location(settings, failure), status_code=302)
    channel = await session.get(ChannelInstagram, inbox.channel_id)
    assert channel is not None
    try:
        await channels.subscribe_webhooks(session, graph, channel=channel)
    except GraphError:
        await enqueue(queue, SUBSCRIBE_WEBHOOKS, key=str(channel.id), channel_id=channel.id)
    await session.commit()
    log.info("instagram account connected", inbox_id=inbox.id, created=created)
    location = instagram.success_location(settings, account_id=account_id, inbox_id=inbox.id, created=created)
    return RedirectResponse(location, status_code=302)
