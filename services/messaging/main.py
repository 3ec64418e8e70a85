"""Messaging API: Chatwoot's Application API for inboxes, contacts, conversations and messages."""

from services.messaging.media.router import router as media_router
from services.messaging.profile.router import router as profile_router
from services.messaging.webhooks.router import router as webhooks_router
from shared.app import create_app

app = create_app("Instagram Inbox — messaging API", routers=[profile_router, webhooks_router, media_router])
