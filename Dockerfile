# One image for every process; docker-compose.yml gives each its command (see Procfile).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY sandbox ./sandbox
RUN pip install . && useradd --create-home --uid 10001 inbox
COPY alembic.ini ./
COPY migrations ./migrations
RUN mkdir -p /app/storage && chown inbox:inbox /app/storage

USER inbox
CMD ["inboxctl", "--help"]
