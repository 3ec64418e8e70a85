"""Auth service: Instagram Business Login, platform API, super-admin app configuration."""

from services.auth.app_config.router import router as app_config_router
from services.auth.instagram.router import router as instagram_router
from services.auth.platform.router import router as platform_router
from shared.app import create_app

app = create_app("Instagram Inbox — auth", routers=[platform_router, instagram_router, app_config_router])
