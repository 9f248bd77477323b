"""One background-job API for the whole product, with two interchangeable runners.

Jobs are plain `async def job(ctx: dict, **kwargs)` functions registered on a `JobRegistry`. Application code
calls `await enqueue("job_name", user_id=1, _job_id="x")` and never learns which runner is active:

* `InProcessRunner` runs jobs as asyncio tasks in this process (the embedded demo, no Redis);
* `ArqRunner` enqueues into Redis for an arq worker built with `worker_settings(...)`.

Both honour the same options (`_job_id`, `_defer_by`, `_defer_until`), the same cron schedule semantics and
the same observability hook `on_job_event(name, phase, error)` with phase "started" / "finished" / "failed".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import pickle
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar, overload
from uuid import uuid4

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name
from arq.cron import cron as arq_cron
from arq.worker import create_worker
from arq.worker import func as arq_func
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.kit.clock import ensure_utc, utcnow
from app.kit.logging import context_value, log_context
from app.kit.metrics import JOB_DURATION

log = logging.getLogger(__name__)

# The keyword a job's request id travels under; the runners take it off before calling the job.
REQUEST_ID_KWARG = "_request_id"

JobContext = dict[str, Any]
JobFunc = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=JobFunc)
JobPhase = Literal["started", "finished", "failed"]
# May be sync or async: the app records runs in the database, which needs an await.
JobEventHook = Callable[[str, JobPhase, BaseException | None], Awaitable[None] | None]
CtxFactory = Callable[[], JobContext | Awaitable[JobContext]]
CronField = int | Iterable[int] | None
WeekdayField = int | str | Iterable[int | str] | None

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --- registry and cron schedules ---------------------------------------------------------------------------


def _normalize(value: CronField, field_name: str, low: int, high: int) -> frozenset[int] | None:
    if value is None:
        return None
    values = frozenset([value] if isinstance(value, int) else value)
    if not values:
        raise ValueError(f"cron {field_name} must not be empty")
    for item in values:
        # bool is an int subclass; `minute=True` is certainly a mistake.
        if not isinstance(item, int) or isinstance(item, bool) or not low <= item <= high:
            raise ValueError(f"cron {field_name} values must be integers in {low}..{high}, got {item!r}")
    return values


def _weekday_number(item: int | str) -> int:
    if isinstance(item, str):
        name = item.strip().lower()[:3]
        if name not in WEEKDAY_NAMES:
            raise ValueError(f"unknown weekday {item!r}; use 0-6 (Monday is 0) or mon..sun")
        return WEEKDAY_NAMES.index(name)
    return item


def _normalize_weekday(value: WeekdayField) -> frozenset[int] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, int | str) else list(value)
    return _normalize([_weekday_number(item) for item in items], "weekday", 0, 6)


@dataclass(frozen=True)
class CronSpec:
    """When a registered job runs on its own. A field left as None matches every value (like arq's `cron`)."""

    name: str
    func: JobFunc
    minute: frozenset[int] | None = None
    hour: frozenset[int] | None = None
    weekday: frozenset[int] | None = None  # Monday is 0
    second: frozenset[int] | None = frozenset({0})
    run_at_startup: bool = False

    @property
    def job_id(self) -> str:
        """The id every run of this cron is enqueued under, so a run still going blocks the next one."""
        return f"cron:{self.name}"

    def next_run(self, after: datetime) -> datetime:
        """The first matching whole second strictly after `after`, in UTC."""
        candidate = ensure_utc(after).replace(microsecond=0) + timedelta(seconds=1)
        # Each step jumps to the start of the next day/hour/minute/second, so a valid spec converges within
        # 7 days + 24 hours + 60 minutes + 60 seconds of steps; the bound only guards against a logic error.
        for _ in range(10_000):
            if self.weekday is not None and candidate.weekday() not in self.weekday:
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif self.hour is not None and candidate.hour not in self.hour:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0)
            elif self.minute is not None and candidate.minute not in self.minute:
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
            elif self.second is not None and candidate.second not in self.second:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise RuntimeError(f"no next run found for cron {self.name!r}")  # pragma: no cover


class JobRegistry:
    """The job functions (by function name) and cron schedules known to the product."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobFunc] = {}
        self._crons: dict[str, CronSpec] = {}

    def job(self, func: F) -> F:
        """Register `func` under its own name; returns it unchanged so it stays directly callable."""
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"job {func!r} must be an async function")
        name = func.__name__
        existing = self._jobs.get(name)
        if existing is not None and existing is not func:
            raise ValueError(f"a different job is already registered as {name!r}")
        self._jobs[name] = func
        return func

    @overload
    def cron(
        self,
        func: F,
        *,
        minute: CronField = ...,
        hour: CronField = ...,
        weekday: WeekdayField = ...,
        second: CronField = ...,
        run_at_startup: bool = ...,
    ) -> F: ...

    @overload
    def cron(
        self,
        func: None = None,
        *,
        minute: CronField = ...,
        hour: CronField = ...,
        weekday: WeekdayField = ...,
        second: CronField = ...,
        run_at_startup: bool = ...,
    ) -> Callable[[F], F]: ...

    def cron(
        self,
        func: F | None = None,
        *,
        minute: CronField = None,
        hour: CronField = None,
        weekday: WeekdayField = None,
        second: CronField = 0,
        run_at_startup: bool = False,
    ) -> F | Callable[[F], F]:
        """Schedule a job (also registering it, so it can be enqueued by hand too).

        Usable as `registry.cron(func, minute=0)` or as a decorator `@registry.cron(minute=0)`.
        """

        def register(target: F) -> F:
            self.job(target)
            spec = CronSpec(
                name=target.__name__,
                func=target,
                minute=_normalize(minute, "minute", 0, 59),
                hour=_normalize(hour, "hour", 0, 23),
                weekday=_normalize_weekday(weekday),
                second=_normalize(second, "second", 0, 59),
                run_at_startup=run_at_startup,
            )
            self._crons[spec.name] = spec
            return target

        return register if func is None else register(func)

    def get(self, name: str) -> JobFunc:
        try:
            return self._jobs[name]
        except KeyError:
            raise KeyError(f"unknown job {name!r}") from None

    @property
    def jobs(self) -> Mapping[str, JobFunc]:
        return dict(self._jobs)

    @property
    def crons(self) -> list[CronSpec]:
        return list(self._crons.values())


registry = JobRegistry()


# --- observing runs -----------------------------------------------------------------------------------------


async def _emit(hook: JobEventHook | None, name: str, phase: JobPhase, error: BaseException | None) -> None:
    """Call the hook; its own failure is logged and never changes the job's outcome."""
    if hook is None:
        return
    try:
        result = hook(name, phase, error)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("on_job_event hook failed for job %s (%s)", name, phase)


async def run_observed(
    name: str, call: Callable[[], Awaitable[Any]], hook: JobEventHook | None, *, request_id: str | None = None
) -> Any:
    """Run one job attempt between "started" and "finished"/"failed" events; re-raises the job's error. Its log
    lines name the job, and the request that enqueued it when there was one."""
    fields = {"job": name} | ({"request_id": request_id} if request_id else {})
    with log_context(**fields):
        await _emit(hook, name, "started", None)
        started = time.perf_counter()
        try:
            result = await call()
        except (Exception, asyncio.CancelledError) as exc:
            JOB_DURATION.labels(name).observe(time.perf_counter() - started)
            # Cancellation (shutdown, arq timeout) is reported too, so no recorded run stays "started" forever.
            await _emit(hook, name, "failed", exc)
            raise
        JOB_DURATION.labels(name).observe(time.perf_counter() - started)
        await _emit(hook, name, "finished", None)
        return result


# --- runners ------------------------------------------------------------------------------------------------


class JobRunner(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def enqueue(
        self,
        name: str,
        /,
        *,
        _job_id: str | None = None,
        _defer_by: float | timedelta | None = None,
        _defer_until: datetime | None = None,
        **kwargs: Any,
    ) -> bool: ...


def _check_defer(defer_by: float | timedelta | None, defer_until: datetime | None) -> None:
    if defer_by is not None and defer_until is not None:
        raise ValueError("use either _defer_by or _defer_until, not both")


@dataclass(eq=False)
class _QueuedJob:
    job_id: str
    name: str
    kwargs: dict[str, Any]
    enqueue_time: datetime
    delay: float
    started: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class InProcessRunner:
    """Runs jobs as asyncio tasks of this process: for the embedded demo and tests, where there is no Redis.

    Queued jobs live only in memory: whatever has not started when the process stops is lost (and logged).
    """

    def __init__(
        self,
        registry: JobRegistry,
        ctx_factory: CtxFactory = dict,
        *,
        concurrency: int = 4,
        on_job_event: JobEventHook | None = None,
        stop_timeout: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.registry = registry
        self.on_job_event = on_job_event
        self.stop_timeout = stop_timeout
        self._ctx_factory = ctx_factory
        self._clock = clock
        self._sleep = sleep
        self._semaphore = asyncio.Semaphore(concurrency)
        self._active: dict[str, _QueuedJob] = {}
        self._cron_tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._stopping = False

    # lifecycle

    def start(self) -> None:
        """Start the cron schedules; must be called from within the running event loop."""
        if self._started:
            raise RuntimeError("InProcessRunner already started")
        loop = asyncio.get_running_loop()
        self._started = True
        self._cron_tasks = [
            loop.create_task(self._cron_loop(spec), name=f"cron:{spec.name}") for spec in self.registry.crons
        ]

    async def stop(self) -> None:
        """Stop gracefully: no new jobs, queued jobs dropped, running jobs get `stop_timeout` seconds to
        finish (then they are cancelled and reported as failed)."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        for task in self._cron_tasks:
            task.cancel()
        await asyncio.gather(*self._cron_tasks, return_exceptions=True)

        jobs = list(self._active.values())
        waiting = [job for job in jobs if not job.started]
        running = [job for job in jobs if job.started]
        if waiting:
            log.warning("dropping %d queued jobs on stop: %s", len(waiting), [job.name for job in waiting])
            for job in waiting:
                if job.task is not None:
                    job.task.cancel()
        if running:
            _, late = await asyncio.wait(
                [job.task for job in running if job.task is not None],
                timeout=self.stop_timeout,
            )
            if late:
                log.warning("cancelling %d jobs still running after the stop timeout", len(late))
                for task in late:
                    task.cancel()
        await asyncio.gather(*(job.task for job in jobs if job.task is not None), return_exceptions=True)

    async def join(self) -> None:
        """Wait until no job is queued or running (jobs enqueued meanwhile included)."""
        while self._active:
            await asyncio.gather(
                *(job.task for job in list(self._active.values()) if job.task is not None),
                return_exceptions=True,
            )

    def is_active(self, job_id: str) -> bool:
        """Whether a job with this id is queued or running."""
        return job_id in self._active

    # enqueueing

    async def enqueue(
        self,
        name: str,
        /,
        *,
        _job_id: str | None = None,
        _defer_by: float | timedelta | None = None,
        _defer_until: datetime | None = None,
        **kwargs: Any,
    ) -> bool:
        """Queue a job. False when not queued: a job with this id is already queued or running, or the
        runner is stopping."""
        if not self._started:
            raise RuntimeError("InProcessRunner.start() must be called before enqueueing")
        self.registry.get(name)
        _check_defer(_defer_by, _defer_until)
        if self._stopping:
            log.warning("job %s not enqueued: the runner is stopping", name)
            return False
        job_id = _job_id or uuid4().hex
        if job_id in self._active:
            return False
        # A pickle round trip gives the job a private copy of its arguments and fails here, in the demo and in
        # tests, on anything the arq runner could not serialize either.
        kwargs = pickle.loads(pickle.dumps(kwargs))
        now = self._clock()
        if _defer_until is not None:
            delay = (ensure_utc(_defer_until) - now).total_seconds()
        elif isinstance(_defer_by, timedelta):
            delay = _defer_by.total_seconds()
        else:
            delay = float(_defer_by or 0)
        job = _QueuedJob(job_id=job_id, name=name, kwargs=kwargs, enqueue_time=now, delay=max(0.0, delay))
        self._active[job_id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"job:{name}:{job_id}")
        return True

    # execution

    async def _run(self, job: _QueuedJob) -> None:
        try:
            if job.delay > 0:
                await self._sleep(job.delay)
            async with self._semaphore:
                job.started = True
                await self._execute(job)
        finally:
            if self._active.get(job.job_id) is job:
                del self._active[job.job_id]

    async def _execute(self, job: _QueuedJob) -> None:
        func = self.registry.get(job.name)
        kwargs = dict(job.kwargs)
        request_id = kwargs.pop(REQUEST_ID_KWARG, None)

        async def call() -> Any:
            ctx = self._ctx_factory()
            if inspect.isawaitable(ctx):
                ctx = await ctx
            # The same per-run keys an arq worker puts in ctx, so jobs can rely on them under both runners.
            ctx = {**ctx, "job_id": job.job_id, "job_try": 1, "enqueue_time": job.enqueue_time}
            return await func(ctx, **kwargs)

        try:
            await run_observed(job.name, call, self.on_job_event, request_id=request_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A failing job must never take the runner down with it.
            log.exception("job %s (%s) failed", job.name, job.job_id)

    async def _cron_loop(self, spec: CronSpec) -> None:
        if spec.run_at_startup:
            await self._fire(spec)
        due = spec.next_run(self._clock())
        while True:
            await self._sleep(max(0.0, (due - self._clock()).total_seconds()))
            await self._fire(spec)
            # From the later of the two: a wake-up after a long suspend runs once, not once per missed slot.
            due = spec.next_run(max(due, self._clock()))

    async def _fire(self, spec: CronSpec) -> None:
        try:
            if not await self.enqueue(spec.name, _job_id=spec.job_id):
                log.info("cron %s skipped: the previous run is still going", spec.name)
        except Exception:
            log.exception("cron %s could not be enqueued", spec.name)


class ArqRunner:
    """Enqueues into Redis for arq workers started with `worker_settings(...)` of the same registry."""

    def __init__(self, registry: JobRegistry, redis_url: str, *, queue_name: str = default_queue_name) -> None:
        self.registry = registry
        self.redis_url = redis_url
        self.queue_name = queue_name
        self._pool: ArqRedis | None = None
        self._lock = asyncio.Lock()
        self._started = False

    def start(self) -> None:
        # The pool is created on first use: connecting needs an await, and start() is synchronous like
        # InProcessRunner's so both fit the same lifespan code.
        self._started = True

    async def stop(self) -> None:
        self._started = False
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose(close_connection_pool=True)

    async def pool(self) -> ArqRedis:
        async with self._lock:
            if self._pool is None:
                self._pool = await create_pool(
                    RedisSettings.from_dsn(self.redis_url), default_queue_name=self.queue_name
                )
            return self._pool

    async def enqueue(
        self,
        name: str,
        /,
        *,
        _job_id: str | None = None,
        _defer_by: float | timedelta | None = None,
        _defer_until: datetime | None = None,
        **kwargs: Any,
    ) -> bool:
        """Queue a job in Redis. False when a job with this id is already queued or running."""
        if not self._started:
            raise RuntimeError("ArqRunner.start() must be called before enqueueing")
        self.registry.get(name)
        _check_defer(_defer_by, _defer_until)
        pool = await self.pool()
        job = await pool.enqueue_job(
            name,
            _job_id=_job_id,
            _defer_by=_defer_by,
            # arq reads a naive datetime as local time; the product's naive datetimes are UTC.
            _defer_until=ensure_utc(_defer_until) if _defer_until is not None else None,
            **kwargs,
        )
        return job is not None


# --- arq worker ---------------------------------------------------------------------------------------------

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# A cron's overlap lock lives this long unless its run renews it (every third of it): a worker killed mid-run
# blocks that cron on the other workers for at most this long, not for a whole job timeout (the outbox
# dispatchers' takeover after a killed worker waits for this and for the outbox lease).
CRON_LOCK_TTL = 15.0


async def _renew_lock(redis: ArqRedis, key: str, token: str, ttl: float) -> bool:
    return bool(await redis.eval(_RENEW_LOCK, 1, key, token, int(ttl * 1000)))


async def keep_renewing(renew: Callable[[], Awaitable[bool]], *, every: float, what: str) -> None:
    """Call `renew` every `every` seconds until it reports the lease lost (False) or this task is cancelled. A
    failed renewal is logged and tried again at the next beat: the lease outlives a few missed beats."""
    while True:
        await asyncio.sleep(every)
        try:
            if not await renew():
                log.warning("%s was lost while its work went on", what)
                return
        except Exception:
            log.warning("could not renew %s", what, exc_info=True)


@asynccontextmanager
async def renewed(renew: Callable[[], Awaitable[bool]], *, every: float, what: str) -> AsyncIterator[None]:
    """Keep a lease (a lock, a claim on rows) alive while the block runs: short leases then free the work soon
    after its process dies, however long the work itself takes."""
    keeper = asyncio.create_task(keep_renewing(renew, every=every, what=what))
    try:
        yield
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


def _arq_job(name: str, func: JobFunc, hook: JobEventHook | None) -> JobFunc:
    async def job(ctx: JobContext, **kwargs: Any) -> Any:
        request_id = kwargs.pop(REQUEST_ID_KWARG, None)
        return await run_observed(name, lambda: func(ctx, **kwargs), hook, request_id=request_id)

    job.__qualname__ = job.__name__ = name
    return job


def _arq_cron_job(
    spec: CronSpec, hook: JobEventHook | None, *, lock_prefix: str, lock_ttl: float = CRON_LOCK_TTL
) -> JobFunc:
    """arq keeps one cron slot from running twice, but a run outlasting its interval would overlap the next
    slot's run (they have different job ids). A short-lived Redis lock per cron skips such an overlap, across
    all workers, as InProcessRunner does with the cron's fixed job id."""
    key = f"{lock_prefix}{spec.name}"

    async def job(ctx: JobContext, **kwargs: Any) -> Any:
        redis: ArqRedis = ctx["redis"]
        token = uuid4().hex
        if not await redis.set(key, token, nx=True, px=int(lock_ttl * 1000)):
            log.info("cron %s skipped: the previous run is still going", spec.name)
            return None
        try:
            async with renewed(
                lambda: _renew_lock(redis, key, token, lock_ttl), every=lock_ttl / 3, what=f"the lock {key}"
            ):
                return await run_observed(spec.name, lambda: spec.func(ctx, **kwargs), hook)
        finally:
            # Only our own lock: if it expired and another run took it, that run keeps it. A failed release
            # must not mask the job's outcome; the lock then simply expires.
            try:
                await redis.eval(_RELEASE_LOCK, 1, key, token)
            except Exception:
                log.warning("could not release the lock of cron %s", spec.name, exc_info=True)

    job.__qualname__ = job.__name__ = f"cron_{spec.name}"
    return job


def _arq_option(values: frozenset[int] | None) -> set[int] | None:
    # arq accepts set/list/tuple but not frozenset.
    return None if values is None else set(values)


def worker_settings(
    registry: JobRegistry,
    redis_url: str,
    *,
    on_startup: Callable[[JobContext], Awaitable[Any]] | None = None,
    on_shutdown: Callable[[JobContext], Awaitable[Any]] | None = None,
    on_job_event: JobEventHook | None = None,
    queue_name: str = default_queue_name,
    max_jobs: int = 10,
    job_timeout: float = 300,
    keep_result: float = 0,
) -> type:
    """An arq `WorkerSettings` class for `arq module.WorkerSettings` running every job of `registry`.

    `keep_result=0` by default: a kept result would block its `_job_id` until it expires, while in-process a
    job id is free again once the job is done; the app records runs through `on_job_event` instead.
    """
    functions = [arq_func(_arq_job(name, func, on_job_event), name=name) for name, func in registry.jobs.items()]
    cron_jobs = [
        arq_cron(
            _arq_cron_job(spec, on_job_event, lock_prefix=f"{queue_name}:cron-running:"),
            name=spec.job_id,
            minute=_arq_option(spec.minute),
            hour=_arq_option(spec.hour),
            weekday=_arq_option(spec.weekday),
            second=_arq_option(spec.second),
            run_at_startup=spec.run_at_startup,
            # One enqueue per slot however many workers run: the slot's job id is unique.
            unique=True,
            timeout=job_timeout,
        )
        for spec in registry.crons
    ]
    attributes: dict[str, Any] = {
        "functions": functions,
        "cron_jobs": cron_jobs,
        "redis_settings": _patient_redis_settings(redis_url),
        "queue_name": queue_name,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "max_jobs": max_jobs,
        "job_timeout": job_timeout,
        "keep_result": keep_result,
        # Cron fields mean UTC under both runners, whatever the server's timezone.
        "timezone": UTC,
    }
    return type("WorkerSettings", (), attributes)


class PatientRetry(Retry):
    """Every Redis command of the worker is retried, with backoff up to 10 s, for as long as Redis is down (a
    restart, a failover), with a warning now and then; so the worker waits and carries on instead of exiting.
    After `stop()` (the worker was told to shut down) a failure is final, so shutdown never waits for Redis."""

    WARN_EVERY = 10  # failures

    ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

    def __init__(self) -> None:
        super().__init__(ExponentialBackoff(cap=10, base=0.5), retries=-1, supported_errors=self.ERRORS)
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True

    def __deepcopy__(self, memo: dict[int, Any]) -> PatientRetry:
        # redis-py deep-copies the retry into its pool and every connection; they must all see `stop()`.
        return self

    async def call_with_retry(self, do: Callable[[], Awaitable[Any]], fail: Callable[[RedisError], Any]) -> Any:
        failures = 0

        async def note(error: RedisError) -> None:
            nonlocal failures
            failures += 1
            if self.stopping:
                raise error
            if failures % self.WARN_EVERY == 1:
                log.warning("Redis is unreachable (%s); waiting for it (attempt %d)", error, failures)
            await fail(error)

        result = await super().call_with_retry(do, note)
        if failures:
            log.warning("Redis is reachable again after %d failed attempts", failures)
        return result


def _patient_redis_settings(redis_url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(redis_url)
    settings.retry = PatientRetry()
    # The client retries only the errors also named here (else its failure handler re-raises at once).
    settings.retry_on_error = list(PatientRetry.ERRORS)
    # arq's own start-up retries would give up after these; PatientRetry already waits inside each command.
    settings.conn_retries = 0
    settings.conn_timeout = 2
    return settings


def run_arq_worker(settings_cls: type) -> None:
    """Run an arq worker (built by `worker_settings`) until it is told to stop, waiting out Redis outages."""
    worker = create_worker(settings_cls)
    retry = worker.redis_settings.retry if worker.redis_settings else None
    if isinstance(retry, PatientRetry):
        worker.on_stop = lambda _signal: retry.stop()
    worker.run()


# --- the active runner --------------------------------------------------------------------------------------

_runner: JobRunner | None = None


def configure_jobs(runner: JobRunner | None) -> None:
    """Make `runner` the one `enqueue` uses (None unsets it, e.g. at shutdown or between tests)."""
    global _runner
    _runner = runner


def current_runner() -> JobRunner:
    if _runner is None:
        raise RuntimeError("no job runner configured; call configure_jobs() at startup")
    return _runner


async def enqueue(
    name: str,
    /,
    *,
    _job_id: str | None = None,
    _defer_by: float | timedelta | None = None,
    _defer_until: datetime | None = None,
    **kwargs: Any,
) -> bool:
    """Enqueue a registered job on the active runner. Pass plain values (ids, strings), not ORM objects:
    arguments are serialized. False when a job with the same `_job_id` is already queued or running.

    A job enqueued while a request is handled carries the request's id into its own log lines."""
    request_id = context_value("request_id")
    if request_id:
        kwargs[REQUEST_ID_KWARG] = request_id
    return await current_runner().enqueue(
        name, _job_id=_job_id, _defer_by=_defer_by, _defer_until=_defer_until, **kwargs
    )
