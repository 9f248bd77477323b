"""The ARQ worker (`vpnshop worker`) and the in-process runner of the embedded demo: the same jobs in both."""

from __future__ import annotations

import logging

import tasks  # noqa: F401  (registers the jobs)
from app.config import Settings
from app.kit.jobs import InProcessRunner, JobContext, JobEventHook, JobPhase, registry, worker_settings
from app.kit.metrics import serve_metrics
from app.resources import Resources, open_resources
from tasks.runs import job_run_recorder


def build_worker_settings(settings: Settings) -> type:
    """WorkerSettings for arq: opens the shared resources at start-up and closes them at shutdown."""
    recorder: dict[str, JobEventHook] = {}

    async def on_startup(ctx: JobContext) -> None:
        ctx["resources"] = open_resources(settings)
        ctx["settings"] = settings
        recorder["hook"] = job_run_recorder(ctx["resources"])
        ctx["metrics_server"] = await serve_metrics(settings.metrics_host, settings.worker_metrics_port)

    async def on_shutdown(ctx: JobContext) -> None:
        if ctx.get("metrics_server") is not None:
            await ctx["metrics_server"].cleanup()
        await ctx["resources"].aclose()

    async def on_job_event(name: str, phase: JobPhase, error: BaseException | None) -> None:
        # The hook is handed to arq before start-up, when the resources it writes with do not exist yet.
        await recorder["hook"](name, phase, error)

    return worker_settings(
        registry, settings.redis_url, on_startup=on_startup, on_shutdown=on_shutdown, on_job_event=on_job_event
    )


log = logging.getLogger(__name__)


def build_in_process_runner(resources: Resources) -> InProcessRunner:
    return InProcessRunner(
        registry,
        lambda: {"resources": resources, "settings": resources.settings},
        on_job_event=job_run_recorder(resources),
    )
