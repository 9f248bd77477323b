"""The job API: the same job functions under InProcessRunner and under a real arq worker on Redis."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq.connections import RedisSettings, create_pool
from arq.cron import next_cron
from arq.worker import create_worker

from app.kit import jobs
from app.kit.jobs import (
    ArqRunner,
    CronSpec,
    InProcessRunner,
    JobRegistry,
    JobRunner,
    _arq_cron_job,
    enqueue,
    worker_settings,
)
from app.kit.logging import context_value, log_context

# arq's own Worker.close() still calls redis' deprecated close().
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")

# --- the shared job functions -------------------------------------------------------------------------------

reg = JobRegistry()


@reg.job
async def add(ctx: dict[str, Any], *, a: int, b: int) -> int:
    ctx["results"].append(("add", a + b))
    return a + b


@reg.job
async def explode(ctx: dict[str, Any], *, message: str) -> None:
    raise RuntimeError(message)


@reg.job
async def stamp(ctx: dict[str, Any], *, tag: str) -> None:
    ctx["results"].append((tag, time.monotonic()))


@reg.job
async def whoami(ctx: dict[str, Any]) -> None:
    ctx["results"].append(("whoami", ctx["job_id"], ctx["job_try"]))


@reg.job
async def note_log_context(ctx: dict[str, Any], *, note: str) -> None:
    ctx["results"].append((note, context_value("request_id"), context_value("job")))


Event = tuple[str, str, BaseException | None]


def fresh_queue() -> str:
    # Other test runs may share this Redis database at the same time; a queue of our own keeps their workers
    # from taking our jobs (and ours from taking theirs).
    return f"test-jobs:{uuid.uuid4().hex}"


@dataclass
class Setup:
    """One runner made active through configure_jobs, plus a way to run everything it queued."""

    kind: str
    runner: JobRunner
    drain: Callable[[], Awaitable[None]]
    results: list[Any] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def phases(self, name: str) -> list[str]:
        return [phase for job, phase, _ in self.events if job == name]


@pytest.fixture(params=["inprocess", "arq"])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    results: list[Any] = []
    events: list[Event] = []

    def on_job_event(name: str, phase: str, error: BaseException | None) -> None:
        events.append((name, phase, error))

    if request.param == "inprocess":
        runner = InProcessRunner(reg, lambda: {"results": results}, on_job_event=on_job_event)

        async def drain() -> None:
            await runner.join()

        runner.start()
        jobs.configure_jobs(runner)
        yield Setup("inprocess", runner, drain, results, events)
        await runner.stop()
    else:
        redis_url = request.getfixturevalue("redis_url")
        queue = fresh_queue()
        arq_runner = ArqRunner(reg, redis_url, queue_name=queue)
        settings = worker_settings(reg, redis_url, on_job_event=on_job_event, queue_name=queue)

        async def drain() -> None:
            # A burst worker runs until the queue (deferred jobs included) is empty, then returns.
            worker = create_worker(
                settings, burst=True, handle_signals=False, poll_delay=0.02, ctx={"results": results}
            )
            try:
                await worker.async_run()
            finally:
                await worker.close()

        arq_runner.start()
        jobs.configure_jobs(arq_runner)
        yield Setup("arq", arq_runner, drain, results, events)
        await arq_runner.stop()
    jobs.configure_jobs(None)


# --- behaviour shared by both runners -----------------------------------------------------------------------


async def test_runs_a_job_with_its_kwargs(setup: Setup) -> None:
    assert await enqueue("add", a=2, b=3) is True
    await setup.drain()
    assert setup.results == [("add", 5)]
    assert setup.events == [("add", "started", None), ("add", "finished", None)]


async def test_a_job_started_by_a_request_logs_with_its_request_id(setup: Setup) -> None:
    with log_context(request_id="req-42"):
        await enqueue("note_log_context", note="from a request")
    await enqueue("note_log_context", note="on its own")
    await setup.drain()
    # The id travels with the job (through Redis under arq) and never reaches the job's own arguments.
    assert sorted(setup.results) == [
        ("from a request", "req-42", "note_log_context"),
        ("on its own", None, "note_log_context"),
    ]


async def test_ctx_carries_job_id_and_try(setup: Setup) -> None:
    await enqueue("whoami", _job_id="me-1")
    await setup.drain()
    assert setup.results == [("whoami", "me-1", 1)]


async def test_job_id_is_refused_while_queued_and_free_once_done(setup: Setup) -> None:
    assert await enqueue("add", a=1, b=1, _job_id="sum:1") is True
    assert await enqueue("add", a=9, b=9, _job_id="sum:1") is False
    assert await enqueue("add", a=0, b=1) is True  # other ids are unaffected
    await setup.drain()
    assert sorted(setup.results) == [("add", 1), ("add", 2)]

    assert await enqueue("add", a=5, b=5, _job_id="sum:1") is True
    await setup.drain()
    assert ("add", 10) in setup.results


async def test_failing_job_is_reported_and_the_next_one_still_runs(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    await enqueue("explode", message="boom")
    await setup.drain()
    await enqueue("add", a=1, b=2)
    await setup.drain()

    assert setup.phases("explode") == ["started", "failed"]
    error = next(err for name, phase, err in setup.events if phase == "failed")
    assert isinstance(error, RuntimeError) and str(error) == "boom"
    assert setup.phases("add") == ["started", "finished"]
    assert setup.results == [("add", 3)]
    assert "boom" in caplog.text


async def test_defer_by(setup: Setup) -> None:
    start = time.monotonic()
    assert await enqueue("stamp", tag="late", _defer_by=0.3)
    await setup.drain()
    [(tag, ran_at)] = setup.results
    assert tag == "late"
    assert ran_at - start >= 0.28  # arq schedules on the wall clock (ms); allow for clock granularity


async def test_defer_until(setup: Setup) -> None:
    start = time.monotonic()
    # Naive means UTC in this product, under both runners.
    when = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=0.3)
    assert await enqueue("stamp", tag="at", _defer_until=when)
    await setup.drain()
    [(_, ran_at)] = setup.results
    assert ran_at - start >= 0.28


async def test_enqueue_errors_are_raised_before_queueing(setup: Setup) -> None:
    with pytest.raises(KeyError, match="nope"):
        await enqueue("nope")
    with pytest.raises(ValueError, match="not both"):
        await enqueue("add", a=1, b=1, _defer_by=1, _defer_until=datetime.now(UTC))


async def test_runners_must_be_started() -> None:
    with pytest.raises(RuntimeError, match="start"):
        await InProcessRunner(reg).enqueue("add", a=1, b=1)
    with pytest.raises(RuntimeError, match="start"):
        await ArqRunner(reg, "redis://127.0.0.1:6379/15").enqueue("add", a=1, b=1)


async def test_enqueue_without_a_configured_runner() -> None:
    jobs.configure_jobs(None)
    with pytest.raises(RuntimeError, match="configure_jobs"):
        await enqueue("add", a=1, b=1)


# --- registry -----------------------------------------------------------------------------------------------


def test_registry_names_jobs_by_function_name_and_rejects_clashes() -> None:
    local = JobRegistry()

    @local.job
    async def send_mail(ctx: dict[str, Any]) -> None: ...

    assert local.get("send_mail") is send_mail
    assert local.job(send_mail) is send_mail  # registering the same function again is harmless

    async def send_mail_copy(ctx: dict[str, Any]) -> None: ...

    send_mail_copy.__name__ = "send_mail"
    with pytest.raises(ValueError, match="already registered"):
        local.job(send_mail_copy)

    def not_async(ctx: dict[str, Any]) -> None: ...

    with pytest.raises(TypeError):
        local.job(not_async)  # type: ignore[arg-type]


def test_cron_registers_the_job_too_and_works_as_a_decorator() -> None:
    local = JobRegistry()

    @local.cron(hour=3, minute=0)
    async def nightly(ctx: dict[str, Any]) -> None: ...

    async def hourly(ctx: dict[str, Any]) -> None: ...

    assert local.cron(hourly, minute=15) is hourly
    assert set(local.jobs) == {"nightly", "hourly"}
    specs = {spec.name: spec for spec in local.crons}
    assert specs["nightly"].hour == {3} and specs["nightly"].minute == {0}
    assert specs["hourly"].hour is None and specs["hourly"].minute == {15}


@pytest.mark.parametrize(
    "options",
    [{"minute": 60}, {"hour": -1}, {"second": [0, 99]}, {"minute": []}, {"weekday": "someday"}, {"hour": True}],
)
def test_cron_rejects_impossible_schedules(options: dict[str, Any]) -> None:
    async def job(ctx: dict[str, Any]) -> None: ...

    with pytest.raises(ValueError):
        JobRegistry().cron(job, **options)


# --- cron schedule computation ------------------------------------------------------------------------------


def spec(**options: Any) -> CronSpec:
    local = JobRegistry()

    async def job(ctx: dict[str, Any]) -> None: ...

    local.cron(job, **options)
    return local.crons[0]


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# 2026-01-05 is a Monday.
@pytest.mark.parametrize(
    ("options", "after", "expected"),
    [
        ({}, at(2026, 1, 5, 12, 0, 0), at(2026, 1, 5, 12, 1, 0)),
        ({}, at(2026, 1, 5, 11, 59, 59) + timedelta(microseconds=900_000), at(2026, 1, 5, 12, 0, 0)),
        ({"second": None}, at(2026, 1, 5, 12, 0, 0), at(2026, 1, 5, 12, 0, 1)),
        ({"second": {0, 30}}, at(2026, 1, 5, 12, 0, 10), at(2026, 1, 5, 12, 0, 30)),
        ({"minute": {0, 30}}, at(2026, 1, 5, 12, 0, 0), at(2026, 1, 5, 12, 30, 0)),
        ({"hour": 3, "minute": 30}, at(2026, 1, 5, 4, 0, 0), at(2026, 1, 6, 3, 30, 0)),
        ({"hour": 3, "minute": 30}, at(2026, 1, 5, 3, 29, 59), at(2026, 1, 5, 3, 30, 0)),
        ({"weekday": "mon", "hour": 0, "minute": 0}, at(2026, 1, 5, 0, 0, 0), at(2026, 1, 12, 0, 0, 0)),
        ({"weekday": ["sat", "sun"], "hour": 9, "minute": 0}, at(2026, 1, 5, 10), at(2026, 1, 10, 9, 0, 0)),
        ({"weekday": 6, "hour": 23, "minute": 59}, at(2026, 1, 11, 23, 59, 0), at(2026, 1, 18, 23, 59, 0)),
        ({"minute": 0}, at(2026, 12, 31, 23, 59, 30), at(2027, 1, 1, 0, 0, 0)),
        ({"hour": 0, "minute": 0}, at(2028, 2, 28, 12, 0, 0), at(2028, 2, 29, 0, 0, 0)),
    ],
)
def test_next_run(options: dict[str, Any], after: datetime, expected: datetime) -> None:
    assert spec(**options).next_run(after) == expected


def test_next_run_reads_naive_as_utc_and_converts_other_zones() -> None:
    hourly = spec(minute=0)
    assert hourly.next_run(datetime(2026, 1, 5, 12, 10)) == at(2026, 1, 5, 13, 0, 0)
    plus_three = timezone(timedelta(hours=3))
    # 15:10 at +03:00 is 12:10 UTC.
    assert hourly.next_run(datetime(2026, 1, 5, 15, 10, tzinfo=plus_three)) == at(2026, 1, 5, 13, 0, 0)


def test_next_run_agrees_with_arq() -> None:
    """The in-process schedule must mean what the arq worker's does; compare on many random cases."""
    rng = random.Random(20260105)

    def pick(low: int, high: int) -> set[int] | int | None:
        roll = rng.random()
        if roll < 0.4:
            return None
        if roll < 0.7:
            return rng.randint(low, high)
        return set(rng.sample(range(low, high + 1), rng.randint(1, 3)))

    for _ in range(400):
        options = {
            "minute": pick(0, 59),
            "hour": pick(0, 23),
            "weekday": pick(0, 6),
            "second": pick(0, 59),
        }
        after = at(2026, 1, 1) + timedelta(seconds=rng.randint(0, 400 * 86_400), microseconds=rng.randint(0, 999_999))
        ours = spec(**options).next_run(after)
        theirs = next_cron(after, **options, microsecond=0)  # type: ignore[arg-type]
        assert ours == theirs, (options, after)


# --- InProcessRunner specifics ------------------------------------------------------------------------------


class FakeTime:
    """A clock plus a sleep that moves it: the cron loop then runs through hours of schedule instantly."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        # Let tasks that are ready (the job just fired) run at the current time before time moves on.
        for _ in range(5):
            await asyncio.sleep(0)
        self.now += timedelta(seconds=seconds)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll the state the runner's tasks change; yielding is what lets them (and fake time) progress."""
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within 5 s")
        await asyncio.sleep(0)


async def test_cron_runs_on_its_schedule() -> None:
    fake = FakeTime(at(2026, 1, 5, 11, 50, 0))
    local = JobRegistry()
    runs: list[datetime] = []

    @local.cron(minute={0, 30})
    async def tick(ctx: dict[str, Any]) -> None:
        runs.append(fake.now)

    runner = InProcessRunner(local, clock=fake.clock, sleep=fake.sleep)
    runner.start()
    await wait_until(lambda: len(runs) >= 3)
    await runner.stop()

    assert runs[:3] == [at(2026, 1, 5, 12, 0), at(2026, 1, 5, 12, 30), at(2026, 1, 5, 13, 0)]
    assert fake.sleeps[:3] == [600, 1800, 1800]


async def test_cron_run_at_startup_runs_first_then_follows_the_schedule() -> None:
    fake = FakeTime(at(2026, 1, 5, 11, 50, 0))
    local = JobRegistry()
    runs: list[datetime] = []

    @local.cron(minute=0, run_at_startup=True)
    async def tick(ctx: dict[str, Any]) -> None:
        runs.append(fake.now)

    runner = InProcessRunner(local, clock=fake.clock, sleep=fake.sleep)
    runner.start()
    await wait_until(lambda: len(runs) >= 2)
    await runner.stop()
    assert runs[:2] == [at(2026, 1, 5, 11, 50), at(2026, 1, 5, 12, 0)]


async def test_cron_never_runs_twice_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.kit.jobs")
    fake = FakeTime(at(2026, 1, 5, 12, 0, 30))
    local = JobRegistry()
    gate = asyncio.Event()
    running = 0
    most_at_once = 0
    runs: list[datetime] = []

    @local.cron()  # every minute
    async def slow(ctx: dict[str, Any]) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        runs.append(fake.now)
        await gate.wait()
        running -= 1

    runner = InProcessRunner(local, clock=fake.clock, sleep=fake.sleep)
    runner.start()
    await wait_until(lambda: len(fake.sleeps) >= 5)  # several slots pass while the first run blocks
    assert runs == [at(2026, 1, 5, 12, 1)]
    assert "cron slow skipped" in caplog.text

    gate.set()
    await wait_until(lambda: len(runs) >= 3)
    await runner.stop()
    assert most_at_once == 1


async def test_failing_cron_keeps_its_schedule(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    fake = FakeTime(at(2026, 1, 5, 12, 0, 30))
    local = JobRegistry()
    events: list[Event] = []

    @local.cron()
    async def broken(ctx: dict[str, Any]) -> None:
        raise ValueError("always")

    runner = InProcessRunner(
        local, clock=fake.clock, sleep=fake.sleep, on_job_event=lambda *event: events.append(event)
    )
    runner.start()
    await wait_until(lambda: sum(phase == "failed" for _, phase, _ in events) >= 3)
    await runner.stop()
    assert "job broken" in caplog.text


async def test_concurrency_is_bounded() -> None:
    local = JobRegistry()
    running = 0
    most_at_once = 0

    @local.job
    async def busy(ctx: dict[str, Any]) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        await asyncio.sleep(0.02)
        running -= 1

    runner = InProcessRunner(local, concurrency=4)
    runner.start()
    for _ in range(12):
        await runner.enqueue("busy")
    await runner.join()
    await runner.stop()
    assert most_at_once == 4


async def test_defer_uses_the_injected_clock_and_sleep() -> None:
    fake = FakeTime(at(2026, 1, 5, 12, 0, 0))
    results: list[Any] = []
    runner = InProcessRunner(reg, lambda: {"results": results}, clock=fake.clock, sleep=fake.sleep)
    runner.start()
    await runner.enqueue("add", a=1, b=1, _defer_until=at(2026, 1, 5, 12, 10, 0))
    await runner.enqueue("add", a=2, b=2, _defer_by=timedelta(minutes=1))
    await runner.enqueue("add", a=3, b=3, _defer_until=at(2026, 1, 5, 11, 0, 0))  # past: runs now
    await runner.join()
    await runner.stop()
    assert sorted(fake.sleeps) == [60, 600]
    assert sorted(results) == [("add", 2), ("add", 4), ("add", 6)]


async def test_graceful_stop_waits_for_running_jobs_and_drops_queued_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    local = JobRegistry()
    done: list[str] = []
    events: list[Event] = []

    @local.job
    async def nap(ctx: dict[str, Any], *, seconds: float, tag: str) -> None:
        await asyncio.sleep(seconds)
        done.append(tag)

    runner = InProcessRunner(local, on_job_event=lambda *event: events.append(event), stop_timeout=5)
    runner.start()
    await runner.enqueue("nap", seconds=0.2, tag="running")
    await runner.enqueue("nap", seconds=0, tag="deferred", _defer_by=60, _job_id="later")
    await asyncio.sleep(0.05)

    started = time.monotonic()
    await runner.stop()
    assert 0.1 < time.monotonic() - started < 2
    assert done == ["running"]
    assert events == [("nap", "started", None), ("nap", "finished", None)]
    assert not runner.is_active("later")
    assert "dropping 1 queued jobs" in caplog.text
    assert await runner.enqueue("nap", seconds=0, tag="after-stop") is False


async def test_stop_cancels_jobs_that_outlast_the_timeout() -> None:
    local = JobRegistry()
    events: list[Event] = []

    @local.job
    async def stuck(ctx: dict[str, Any]) -> None:
        await asyncio.sleep(60)

    runner = InProcessRunner(local, on_job_event=lambda *event: events.append(event), stop_timeout=0.1)
    runner.start()
    await runner.enqueue("stuck")
    await asyncio.sleep(0.02)
    started = time.monotonic()
    await runner.stop()
    assert time.monotonic() - started < 1
    assert [phase for _, phase, _ in events] == ["started", "failed"]
    assert isinstance(events[-1][2], asyncio.CancelledError)


async def test_hook_may_be_async_and_its_failure_does_not_fail_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    results: list[Any] = []
    seen: list[str] = []

    async def flaky_hook(name: str, phase: str, error: BaseException | None) -> None:
        await asyncio.sleep(0)
        seen.append(phase)
        if phase == "started":
            raise ConnectionError("database down")

    async def ctx_factory() -> dict[str, Any]:
        return {"results": results}

    runner = InProcessRunner(reg, ctx_factory, on_job_event=flaky_hook)
    runner.start()
    await runner.enqueue("add", a=4, b=4)
    await runner.join()
    await runner.stop()
    assert results == [("add", 8)]
    assert seen == ["started", "finished"]
    assert "on_job_event hook failed" in caplog.text


async def test_arguments_must_be_serializable_like_under_arq() -> None:
    runner = InProcessRunner(reg)
    runner.start()
    with pytest.raises(Exception, match="pickle"):
        await runner.enqueue("add", a=lambda: 1, b=2)
    await runner.stop()


async def test_arguments_are_copied() -> None:
    local = JobRegistry()
    seen: list[list[int]] = []

    @local.job
    async def keep(ctx: dict[str, Any], *, items: list[int]) -> None:
        seen.append(items)

    runner = InProcessRunner(local)
    runner.start()
    items = [1]
    await runner.enqueue("keep", items=items)
    items.append(2)  # the caller changing its object afterwards must not change the job's arguments
    await runner.join()
    await runner.stop()
    assert seen == [[1]]


# --- arq specifics ------------------------------------------------------------------------------------------


def test_worker_settings_come_from_the_registry() -> None:
    local = JobRegistry()

    @local.job
    async def one(ctx: dict[str, Any]) -> None: ...

    @local.cron(weekday="mon", hour=3, minute={0, 30})
    async def weekly(ctx: dict[str, Any]) -> None: ...

    async def startup(ctx: dict[str, Any]) -> None: ...

    settings = worker_settings(local, "redis://127.0.0.1:6379/15", on_startup=startup)
    assert {f.name for f in settings.functions} == {"one", "weekly"}
    [cron] = settings.cron_jobs
    assert cron.name == "cron:weekly"
    assert cron.unique is True
    assert (cron.weekday, cron.hour, cron.minute, cron.second) == ({0}, {3}, {0, 30}, {0})
    assert settings.timezone is UTC
    assert settings.on_startup is startup
    assert settings.redis_settings.database == 15
    assert settings.keep_result == 0


async def arq_burst(settings: type, **ctx: Any) -> None:
    worker = create_worker(settings, burst=True, handle_signals=False, poll_delay=0.02, ctx=ctx)
    try:
        await worker.async_run()
    finally:
        await worker.close()


def cron_registry(runs: list[str]) -> JobRegistry:
    local = JobRegistry()

    @local.cron(minute=0, run_at_startup=True)
    async def tick(ctx: dict[str, Any]) -> None:
        runs.append(ctx["job_id"])

    return local


async def test_arq_worker_runs_crons_and_reports_them(redis_url: str) -> None:
    runs: list[str] = []
    events: list[Event] = []
    queue = fresh_queue()
    settings = worker_settings(
        cron_registry(runs), redis_url, on_job_event=lambda *e: events.append(e), queue_name=queue
    )
    await arq_burst(settings)

    assert len(runs) == 1 and runs[0].startswith("cron:tick:")  # arq's per-slot unique id
    assert events == [("tick", "started", None), ("tick", "finished", None)]
    client = aioredis.Redis.from_url(redis_url)
    assert await client.keys(f"{queue}:cron-running:*") == []  # the overlap lock was released
    await client.aclose()


async def test_arq_cron_skips_while_a_previous_run_holds_the_lock(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.kit.jobs")
    runs: list[str] = []
    client = aioredis.Redis.from_url(redis_url)
    queue = fresh_queue()
    await client.set(f"{queue}:cron-running:tick", "another-worker", px=60_000)

    await arq_burst(worker_settings(cron_registry(runs), redis_url, queue_name=queue))

    assert runs == []
    assert "cron tick skipped" in caplog.text
    assert await client.get(f"{queue}:cron-running:tick") == b"another-worker"  # not ours to release
    await client.aclose()


async def test_arq_cron_lock_is_short_lived_but_renewed_while_its_run_goes_on(redis_url: str) -> None:
    """A killed worker's lock must not block the cron elsewhere for a whole job timeout: it lives 0.3 s here, and
    only a run that is still going keeps it alive."""
    client = aioredis.Redis.from_url(redis_url)
    queue = fresh_queue()
    key = f"{queue}:cron-running:slow"
    seen: list[bool] = []
    local = JobRegistry()

    @local.cron(minute=0)
    async def slow(ctx: dict[str, Any]) -> None:
        for _ in range(4):  # 0.8 s, well past the 0.3 s the lock lives without renewal
            await asyncio.sleep(0.2)
            seen.append(await client.exists(key) == 1)

    spec = local.crons[0]
    job = _arq_cron_job(spec, None, lock_prefix=f"{queue}:cron-running:", lock_ttl=0.3)
    arq_redis = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        await job({"redis": arq_redis})
        assert seen == [True, True, True, True]
        assert await client.exists(key) == 0  # released at the end
    finally:
        await arq_redis.aclose()
        await client.aclose()
