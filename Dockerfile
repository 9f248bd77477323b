# One image for every process: web (`vpnshop serve`), worker (`vpnshop worker`), bot (`vpnshop bot`), migrate.
# Base images are pinned by digest (python:3.11.14-slim-bookworm); update both the tag and the digest together
# (`docker buildx imagetools inspect python:<tag>` prints the digest).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- the wheel, built from the source tree (templates, static files and locales are package data) ------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY bot ./bot
COPY tasks ./tasks
COPY migrations ./migrations
COPY webapp ./webapp
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- the image ------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pg_dump/pg_restore for `vpnshop backup` and `vpnshop restore`. pg_dump refuses a server newer than itself, and
# Debian bookworm ships 15 while compose.yml runs PostgreSQL 16, so the client comes from the PostgreSQL
# project's apt repository in the server's major version (build with --build-arg PG_MAJOR=17 for a 17 server).
# curl only fetches the repository's key; the health checks use Python.
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
    && apt-get purge -y curl && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

# Dependencies before the code: this layer is rebuilt only when pyproject.toml or constraints.txt change.
COPY pyproject.toml constraints.txt /tmp/deps/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/deps/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/deps/requirements.txt \
    && pip install -c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

# Then the product itself, a plain (non-editable) install of the wheel.
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels

# Non-root. var/backups exists in the image, owned by vpnshop, so the named volume compose mounts there starts
# out writable by the app (Docker copies the directory's owner into a new volume).
RUN useradd --system --uid 10001 vpnshop \
    && mkdir -p /srv/vpnshop/var/backups \
    && chown -R vpnshop /srv/vpnshop/var
WORKDIR /srv/vpnshop
USER vpnshop

EXPOSE 8000
# Each compose service sets its own health check (web over HTTP, worker and bot on their health port).
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"
CMD ["vpnshop", "serve", "--host", "0.0.0.0", "--port", "8000"]
