"""The ARQ worker (`vpnshop worker`) and the in-process runner of the embedded demo: the same jobs in both."""

from __future__ import annotations

import logging
import time

from arq.worker import run_worker
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

import tasks  # noqa: F401  (registers the jobs)
from app.config import Settings
from app.kit.jobs import InProcessRunner, JobContext, JobEventHook, JobPhase, registry, worker_settings
from app.resources import Resources, open_resources
from tasks.runs import job_run_recorder


def build_worker_settings(settings: Settings) -> type:
    """WorkerSettings for arq: opens the shared resources at start-up and closes them at shutdown."""
    recorder: dict[str, JobEventHook] = {}

    async def on_startup(ctx: JobContext) -> None:
        ctx["resources"] = open_resources(settings)
        ctx["settings"] = settings
        recorder["hook"] = job_run_recorder(ctx["resources"])

    async def on_shutdown(ctx: JobContext) -> None:
        await ctx["resources"].aclose()

    async def on_job_event(name: str, phase: JobPhase, error: BaseException | None) -> None:
        # The hook is handed to arq before start-up, when the resources it writes with do not exist yet.
        await recorder["hook"](name, phase, error)

    return worker_settings(
        registry, settings.redis_url, on_startup=on_startup, on_shutdown=on_shutdown, on_job_event=on_job_event
    )


log = logging.getLogger(__name__)

MAX_REDIS_WAIT = 30.0  # seconds between two tries at most


def run_until_stopped(settings: Settings) -> None:
    """`vpnshop worker`: arq's worker, started once Redis answers and started again whenever arq gives up on a
    lost connection. Redis restarting (or starting after us) is no reason for the job runner to exit: it waits,
    says so in one line per try, and carries on."""
    while True:
        wait_for_redis(settings.redis_url)
        try:
            run_worker(build_worker_settings(settings))
            return
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("worker: lost Redis (%s: %s); reconnecting", type(exc).__name__, exc)


def wait_for_redis(redis_url: str) -> None:
    """Return once Redis at `redis_url` answers a PING, trying again with backoff (1 s doubling to 30 s)."""
    delay = 1.0
    while True:
        client = Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
        try:
            client.ping()
            return
        except (RedisError, OSError) as exc:
            log.warning("worker: Redis (REDIS_URL) is unreachable (%s); trying again in %.0f s", exc, delay)
        finally:
            client.close()
        time.sleep(delay)
        delay = min(delay * 2, MAX_REDIS_WAIT)


def build_in_process_runner(resources: Resources) -> InProcessRunner:
    return InProcessRunner(
        registry,
        lambda: {"resources": resources, "settings": resources.settings},
        on_job_event=job_run_recorder(resources),
    )
