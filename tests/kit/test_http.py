"""app/kit/http.py against a real flaky HTTP server on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.kit import http as kit_http
from app.kit.errors import ExternalServiceError
from app.kit.http import CircuitBreaker, CircuitOpenError, HttpClient, RetryPolicy, breaker_for
from tests.emulators.harness import free_port, serve


@dataclass
class Step:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b"ok"


class FlakyServer:
    """Answers with the scripted steps in order, then with `after` forever; counts every request it gets."""

    def __init__(self) -> None:
        self.script: list[Step] = []
        self.after = Step()
        self.hits = 0
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])

    def reset(self, *script: Step, after: Step | None = None) -> None:
        self.script = list(script)
        self.after = after or Step()
        self.hits = 0

    async def handle(self, request: Request) -> Response:
        self.hits += 1
        step = self.script.pop(0) if self.script else self.after
        if step.delay:
            await asyncio.sleep(step.delay)
        return Response(step.body, status_code=step.status, headers=step.headers)


@pytest.fixture(scope="module")
def flaky_server() -> Iterator[tuple[FlakyServer, str]]:
    server = FlakyServer()
    with serve(server.app) as base_url:
        yield server, base_url


@pytest.fixture
def flaky(flaky_server: tuple[FlakyServer, str]) -> FlakyServer:
    server, _ = flaky_server
    server.reset()
    return server


@pytest.fixture
def base_url(flaky_server: tuple[FlakyServer, str]) -> str:
    return flaky_server[1]


@pytest.fixture(autouse=True)
def isolated_breakers() -> Iterator[None]:
    # Breakers are process-wide per host; these tests must not leave one open for the rest of the suite.
    kit_http.reset_breakers()
    yield
    kit_http.reset_breakers()


class Sleeps:
    """An injected sleep that records the delays instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def client(
    base_url: str,
    sleeps: Sleeps,
    *,
    attempts: int = 3,
    timeout: float = 5.0,
    breaker: CircuitBreaker | None = None,
    **policy: float,
) -> HttpClient:
    return HttpClient(
        base_url,
        service="flaky",
        timeout=timeout,
        retry=RetryPolicy(attempts=attempts, **policy),  # type: ignore[arg-type]
        breaker=breaker or CircuitBreaker(),
        sleep=sleeps,
    )


async def test_recovers_after_two_server_errors(flaky: FlakyServer, base_url: str) -> None:
    flaky.reset(Step(500), Step(500), after=Step(200, body=b"finally"))
    sleeps = Sleeps()
    async with client(base_url, sleeps) as http:
        response = await http.get("/thing")
    assert response.status_code == 200
    assert response.content == b"finally"
    assert flaky.hits == 3
    assert len(sleeps.delays) == 2


async def test_persistent_503_raises_external_service_error(flaky: FlakyServer, base_url: str) -> None:
    flaky.reset(after=Step(503))
    sleeps = Sleeps()
    async with client(base_url, sleeps, attempts=4) as http:
        with pytest.raises(ExternalServiceError, match="HTTP 503") as caught:
            await http.post("/pay", json={"amount": 1})
    assert not isinstance(caught.value, CircuitOpenError)
    assert caught.value.service == "flaky"
    assert flaky.hits == 4
    assert len(sleeps.delays) == 3  # no pointless sleep after the last attempt


async def test_429_waits_for_retry_after_then_succeeds(flaky: FlakyServer, base_url: str) -> None:
    flaky.reset(Step(429, headers={"Retry-After": "1"}))
    sleeps = Sleeps()
    breaker = CircuitBreaker(threshold=1)
    async with client(base_url, sleeps, breaker=breaker) as http:
        response = await http.get("/limited")
    assert response.status_code == 200
    assert sleeps.delays == [1.0]
    assert flaky.hits == 2
    # Throttling proves the host is alive: even a threshold of 1 leaves the circuit closed.
    assert breaker.state == "closed" and breaker.failures == 0


async def test_retry_after_above_the_maximum_raises_without_waiting(flaky: FlakyServer, base_url: str) -> None:
    flaky.reset(after=Step(429, headers={"Retry-After": "120"}))
    sleeps = Sleeps()
    async with client(base_url, sleeps, max_retry_after=30) as http:
        with pytest.raises(ExternalServiceError) as caught:
            await http.get("/limited")
    assert caught.value.retry_after == 120  # the caller (a job) reschedules itself with this
    assert sleeps.delays == []
    assert flaky.hits == 1


async def test_retry_after_as_http_date(flaky: FlakyServer, base_url: str) -> None:
    flaky.reset(after=Step(429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}))
    sleeps = Sleeps()
    async with client(base_url, sleeps) as http:
        with pytest.raises(ExternalServiceError) as caught:
            await http.get("/limited")
    assert caught.value.retry_after is not None and caught.value.retry_after > 86_400
    assert sleeps.delays == []


async def test_unparseable_retry_after_falls_back_to_backoff(flaky: FlakyServer, base_url: str) -> None:
    # Regression: a Retry-After that is neither seconds nor a date used to escape as a bare ValueError.
    flaky.reset(Step(429, headers={"Retry-After": "soon"}))
    sleeps = Sleeps()
    async with client(base_url, sleeps, base_delay=0.25) as http:
        response = await http.get("/limited")
    assert response.status_code == 200
    assert len(sleeps.delays) == 1 and 0 <= sleeps.delays[0] <= 0.25


async def test_timeout_is_retried(flaky: FlakyServer, base_url: str) -> None:
    flaky.reset(Step(200, delay=1.0, body=b"too late"), after=Step(200, body=b"fast"))
    sleeps = Sleeps()
    async with client(base_url, sleeps, timeout=0.2) as http:
        response = await http.get("/slow")
    assert response.content == b"fast"
    assert flaky.hits == 2
    assert len(sleeps.delays) == 1


async def test_unreachable_host_raises_after_retries() -> None:
    sleeps = Sleeps()
    async with client(f"http://127.0.0.1:{free_port()}", sleeps, attempts=2) as http:
        with pytest.raises(ExternalServiceError, match="ConnectError"):
            await http.get("/")
    assert len(sleeps.delays) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_client_errors_are_returned_untouched(flaky: FlakyServer, base_url: str, status: int) -> None:
    flaky.reset(after=Step(status, body=b'{"detail": "nope"}', headers={"Content-Type": "application/json"}))
    sleeps = Sleeps()
    breaker = CircuitBreaker(threshold=1)
    async with client(base_url, sleeps, breaker=breaker) as http:
        response = await http.get("/resource")
    assert response.status_code == status
    assert response.json() == {"detail": "nope"}
    assert flaky.hits == 1
    assert sleeps.delays == []
    assert breaker.state == "closed"


async def test_circuit_opens_blocks_half_opens_and_closes(flaky: FlakyServer, base_url: str) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    flaky.reset(after=Step(503))
    sleeps = Sleeps()
    async with client(base_url, sleeps, attempts=3, breaker=breaker) as http:
        with pytest.raises(ExternalServiceError):
            await http.get("/down")
        assert flaky.hits == 3
        assert breaker.state == "open"

        # While open, nothing reaches the server.
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await http.get("/down")
        clock.now += 29.9
        with pytest.raises(CircuitOpenError):
            await http.get("/down")
        assert flaky.hits == 3

        # After the cool-down one trial call passes; its success closes the circuit.
        clock.now += 0.1
        assert breaker.state == "half_open"
        flaky.reset(after=Step(200))
        response = await http.get("/up")
        assert response.status_code == 200
        assert flaky.hits == 1
        assert breaker.state == "closed" and breaker.failures == 0

        await http.get("/up")
        assert flaky.hits == 2


async def test_failed_trial_reopens_the_circuit(flaky: FlakyServer, base_url: str) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    flaky.reset(after=Step(500))
    sleeps = Sleeps()
    async with client(base_url, sleeps, attempts=3, breaker=breaker) as http:
        with pytest.raises(CircuitOpenError):
            await http.get("/down")  # first failure opens; the retry is refused
        assert flaky.hits == 1

        clock.now += 30
        with pytest.raises(CircuitOpenError):
            await http.get("/down")  # the trial fails and the retry is refused again
        assert flaky.hits == 2
        assert breaker.state == "open"
        clock.now += 29
        assert breaker.state == "open"  # the cool-down restarted at the failed trial


async def test_throttled_trial_does_not_wedge_the_circuit(flaky: FlakyServer, base_url: str) -> None:
    # Regression: a 429 answering the half-open trial recorded neither success nor failure, so the trial slot
    # stayed taken and the circuit refused every call forever.
    clock = ManualClock()
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    flaky.reset(after=Step(503))
    sleeps = Sleeps()
    async with client(base_url, sleeps, attempts=1, breaker=breaker) as http:
        with pytest.raises(ExternalServiceError):
            await http.get("/down")
        clock.now += 30
        flaky.reset(Step(429), after=Step(200))
        with pytest.raises(ExternalServiceError, match="HTTP 429"):
            await http.get("/busy")
        response = await http.get("/up")
    assert response.status_code == 200
    assert breaker.state == "closed"


async def test_cancelled_trial_does_not_wedge_the_circuit(flaky: FlakyServer, base_url: str) -> None:
    # Regression: the same trial slot leaked when the caller was cancelled during the trial request.
    clock = ManualClock()
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    flaky.reset(after=Step(503))
    sleeps = Sleeps()
    async with client(base_url, sleeps, attempts=1, breaker=breaker) as http:
        with pytest.raises(ExternalServiceError):
            await http.get("/down")
        clock.now += 30
        flaky.reset(Step(200, delay=0.5), after=Step(200))
        trial = asyncio.create_task(http.get("/slow"))
        await asyncio.sleep(0.1)
        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial
        response = await http.get("/up")
    assert response.status_code == 200
    assert breaker.state == "closed"


async def test_backoff_grows_and_stays_under_max_delay(
    flaky: FlakyServer, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Full jitter draws from [0, ceiling]; pin the draw to the ceiling to see the ceiling itself.
    monkeypatch.setattr(kit_http.random, "uniform", lambda low, high: high)
    flaky.reset(after=Step(502))
    sleeps = Sleeps()
    breaker = CircuitBreaker(threshold=100)
    async with client(base_url, sleeps, attempts=6, base_delay=0.1, max_delay=0.5, breaker=breaker) as http:
        with pytest.raises(ExternalServiceError):
            await http.get("/down")
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_backoff_jitter_stays_within_its_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.25, max_delay=8.0)
    for attempt in range(1, 12):
        ceiling = min(8.0, 0.25 * 2 ** (attempt - 1))
        draws = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling / 2  # jittered across the range, not stuck near zero


def test_breakers_are_shared_per_host_and_port() -> None:
    # Two services on one machine (say two panels on one VPS) must not trip each other's circuit.
    a = HttpClient("http://10.0.0.1:8000", service="a").breaker
    assert HttpClient("http://10.0.0.1:8000/api", service="a2").breaker is a
    assert HttpClient("http://10.0.0.1:9000", service="b").breaker is not a
    assert breaker_for("10.0.0.1:8000") is a


async def test_logs_and_errors_never_carry_a_secret_path_whole(
    flaky: FlakyServer, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    flaky.reset(after=Step(503))
    token = "Zm9vYmFyLXN1YnNjcmlwdGlvbi10b2tlbg"
    async with client(base_url, Sleeps(), attempts=2) as http:
        with caplog.at_level("WARNING"), pytest.raises(ExternalServiceError) as caught:
            await http.get(f"/api/sub/{token}/info?key=also-secret")
    assert flaky.hits == 2 and "retrying" in caplog.text
    for text in (caplog.text, str(caught.value)):
        assert token not in text and "also-secret" not in text
        assert "/api/sub/…" in text
