from fastapi import APIRouter, status

from services.messaging.webhooks import service as webhooks
from services.messaging.webhooks.schemas import (
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from shared.access import AccountAdministrator
from shared.app import SessionDep, SettingsDep

router = APIRouter(prefix="/api/v1/accounts/{account_id}/webhooks", tags=["webhooks"])


@router.get("")
async def list_webhooks(
    member: AccountAdministrator, session: SessionDep
) -> dict[str, dict[str, list[WebhookRead]]]:
    found = await webhooks.list_webhooks(session, account_id=member.account_id)
    return {"payload": {"webhooks": [WebhookRead.model_validate(w, from_attributes=True) for w in found]}}


@router.post("", status_code=status.HTTP_200_OK)
async def create_webhook(
    body: WebhookCreate, member: AccountAdministrator, session: SessionDep, settings: SettingsDep
) -> dict[str, dict[str, WebhookCreated]]:
    webhook, secret = await webhooks.create_webhook(
        session,
        account_id=member.account_id,
        body=body,
        allow_private=settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES,
    )
    await session.commit()
    created = WebhookCreated.model_validate(
        {**WebhookRead.model_validate(webhook, from_attributes=True).__dict__, "secret": secret}
    )
    return {"payload": {"webhook": created}}


@router.get("/{webhook_id}")
async def show_webhook(
    webhook_id: int, member: AccountAdministrator, session: SessionDep
) -> dict[str, dict[str, WebhookRead]]:
    webhook = await webhooks.get_webhook(session, account_id=member.account_id, webhook_id=webhook_id)
    return {"payload": {"webhook": WebhookRead.model_validate(webhook, from_attributes=True)}}


@router.patch("/{webhook_id}")
async def update_webhook(
    webhook_id: int,
    body: WebhookUpdate,
    member: AccountAdministrator,
    session: SessionDep,
    settings: SettingsDep,
) -> dict[str, dict[str, WebhookRead]]:
    webhook = await webhooks.get_webhook(session, account_id=member.account_id, webhook_id=webhook_id)
    await webhooks.update_webhook(
        session, webhook=webhook, body=body, allow_private=settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES
    )
    await session.commit()
    return {"payload": {"webhook": WebhookRead.model_validate(webhook, from_attributes=True)}}


@router.delete("/{webhook_id}")
async def delete_webhook(
    webhook_id: int, member: AccountAdministrator, session: SessionDep
) -> dict[str, bool]:
    webhook = await webhooks.get_webhook(session, account_id=member.account_id, webhook_id=webhook_id)
    await session.delete(webhook)
    await session.commit()
    return {"success": True}


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: int, member: AccountAdministrator, session: SessionDep
) -> dict[str, list[DeliveryRead]]:
    """The latest delivery attempts, newest first."""
    webhook = await webhooks.get_webhook(session, account_id=member.account_id, webhook_id=webhook_id)
    rows = await webhooks.recent_deliveries(session, webhook_id=webhook.id)
    return {
        "payload": [
            DeliveryRead.model_validate({**d.__dict__, "event": event}, from_attributes=False)
            for d, event in rows
        ]
    }
