"""Account webhook events, through a transactional outbox.

A producer calls `emit` inside the transaction that makes the change; the row commits (or rolls
back) with it, so an event exists exactly once per committed change and never for a rolled-back
one. A transaction's events are written just before it commits, in one INSERT, in the order
they were emitted. The events worker dispatches undelivered rows and renders each payload from
the subject named here (the API objects of the contract, with `event` and the account/inbox added).
"""

from enum import StrEnum
from typing import Any

from sqlalchemy import event as orm_events
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from shared.db import table
from shared.models import WebhookEvent

_PENDING = "webhook_events"  # in Session.info: the rows of the transaction's events


class Event(StrEnum):
    MESSAGE_CREATED = "message_created"
    MESSAGE_UPDATED = "message_updated"
    CONVERSATION_CREATED = "conversation_created"
    CONVERSATION_STATUS_CHANGED = "conversation_status_changed"
    CONVERSATION_UPDATED = "conversation_updated"
    CONTACT_CREATED = "contact_created"
    CONTACT_UPDATED = "contact_updated"
    INBOX_REAUTHORIZATION_REQUIRED = "inbox.reauthorization_required"


def emit(
    session: AsyncSession,
    *,
    event: Event,
    account_id: int,
    inbox_id: int | None = None,
    message_id: int | None = None,
    conversation_id: int | None = None,
    contact_id: int | None = None,
    changed_attributes: dict[str, Any] | None = None,
) -> None:
    """Record that `event` happened to the subject (pass the id of the row it is about)."""
    subject = {
        "message_id": message_id,
        "conversation_id": conversation_id,
        "contact_id": contact_id,
        "inbox_id": inbox_id,
    }
    payload: dict[str, Any] = {"subject": {k: v for k, v in subject.items() if v is not None}}
    if changed_attributes:
        payload["changed_attributes"] = changed_attributes
    row = {"account_id": account_id, "inbox_id": inbox_id, "event": event.value, "payload": payload}
    if not session.in_transaction():
        session.sync_session.begin()  # so that a rollback or close before any query forgets the row
    session.info.setdefault(_PENDING, []).append(row)


@orm_events.listens_for(Session, "before_commit")
def _write(session: Session) -> None:
    if rows := session.info.pop(_PENDING, None):
        session.execute(insert(table(WebhookEvent)), rows)


@orm_events.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back or closed: its events did not happen
        session.info.pop(_PENDING, None)
