# One image for every process: web (`vpnshop serve`), worker (`vpnshop worker`), bot (`vpnshop bot`).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pg_dump for `vpnshop backup`; curl for the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/vpnshop
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
COPY bot ./bot
COPY tasks ./tasks
COPY migrations ./migrations
COPY webapp ./webapp
RUN pip install -c constraints.txt .

RUN useradd --system --uid 10001 vpnshop && mkdir -p /srv/vpnshop/var && chown vpnshop /srv/vpnshop/var
USER vpnshop

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["vpnshop", "serve", "--host", "0.0.0.0", "--port", "8000"]
