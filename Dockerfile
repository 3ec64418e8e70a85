# One image for every process; docker-compose.yml gives each its command (the Procfile's).
#   docker build -t instagram-inbox . && docker run --rm instagram-inbox   # prints the CLI's help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app STORAGE_DIR=/app/storage
WORKDIR /app

# Dependencies first (from pyproject.toml alone), so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt \
    && useradd --create-home --uid 10001 inbox

# The code, then the project itself (the `inboxctl` command). PYTHONPATH=/app makes every
# process import the code from /app, beside alembic.ini and migrations/ that `inboxctl migrate` reads.
COPY shared ./shared
COPY services ./services
COPY sandbox ./sandbox
COPY alembic.ini ./
COPY migrations ./migrations
RUN pip install --no-deps . && rm -rf build *.egg-info \
    && mkdir -p /app/storage && chown inbox:inbox /app/storage

USER inbox
CMD ["inboxctl", "--help"]
