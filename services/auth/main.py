"""Auth service: Instagram Business Login, platform API, super-admin app configuration."""

from services.auth.platform.router import router as platform_router
from shared.app import create_app

app = create_app("Instagram Inbox — auth", routers=[platform_router])
