# One image for every process: web (`vpnshop serve`), worker (`vpnshop worker`), bot (`vpnshop bot`).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pg_dump/pg_restore for `vpnshop backup` and `vpnshop restore`; curl for the health check. pg_dump refuses a
# server newer than itself, and Debian bookworm ships 15 while compose.yml runs PostgreSQL 16, so the client comes
# from the PostgreSQL project's apt repository in the server's major version (build with --build-arg PG_MAJOR=17
# for a PostgreSQL 17 server).
ARG PG_MAJOR=16
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && install -d /usr/share/postgresql-common/pgdg \
    && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
    && pg_dump --version \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/vpnshop
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY bot ./bot
COPY tasks ./tasks
COPY migrations ./migrations
COPY webapp ./webapp
# Editable, so the code runs from /srv/vpnshop: app/kit/templating.py finds webapp/ beside app/, and the
# locale JSON files (not package data) stay next to their module. A plain install would put app/ in
# site-packages without either.
RUN pip install -c constraints.txt -e .

# var/backups exists in the image, owned by vpnshop, so the named volume compose mounts there starts out
# writable by the app (Docker copies the directory's owner into a new volume).
RUN useradd --system --uid 10001 vpnshop \
    && mkdir -p /srv/vpnshop/var/backups \
    && chown -R vpnshop /srv/vpnshop/var
USER vpnshop

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["vpnshop", "serve", "--host", "0.0.0.0", "--port", "8000"]
