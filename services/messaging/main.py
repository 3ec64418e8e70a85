"""Messaging API: Chatwoot's Application API for inboxes, contacts, conversations and messages."""

from fastapi import FastAPI

from services.messaging.contacts.router import router as contacts_router
from services.messaging.conversations.router import router as conversations_router
from services.messaging.inboxes.router import router as inboxes_router
from services.messaging.media.router import router as media_router
from services.messaging.messages.router import router as messages_router
from services.messaging.profile.router import router as profile_router
from services.messaging.webhooks.router import router as webhooks_router
from shared.app import create_app
from shared.settings import Settings


def create_messaging_app(settings: Settings | None = None) -> FastAPI:
    return create_app(
        "Instagram Inbox — messaging API",
        routers=[
            profile_router,
            inboxes_router,
            contacts_router,
            conversations_router,
            messages_router,
            webhooks_router,
            media_router,
        ],
        settings=settings,
    )


app = create_messaging_app()
