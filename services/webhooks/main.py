"""Webhooks service: Meta's verification handshake and signed event ingestion."""

from shared.app import create_app

app = create_app("Instagram Inbox — webhooks")
