"""The retry schedule, driven through the worker with an injected clock: no sleeping."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from leadrelay.core.delivery.contract import Delivered, Permanent, RateLimited, Retryable, Skipped
from leadrelay.core.delivery.policy import DeliveryPolicy, decide
from leadrelay.core.delivery.worker import Worker
from leadrelay.core.store.store import ClaimedDelivery, DeliveryFilter, utcnow
from tests.conftest import gitleads_body, make_config, migrated_store, request_record
from tests.factories import make_event
from tests.recording import RecordingConnector

BACKOFF = ["30s", "2m", "10m"]


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


class Harness:
    """One store, one worker on a fake clock, one recording connector named `rec`."""

    def __init__(self, url: str, *, rng_value: float = 0.0, **delivery: Any) -> None:
        policy = {"max_attempts": 3, "backoff": BACKOFF, "jitter": 0}
        policy.update(delivery)
        self.config = make_config(url, delivery=policy)
        self.store = migrated_store(url)
        # Deliveries are due from the (real) time they were created; start the clock there.
        self.clock = FakeClock(utcnow() + timedelta(seconds=1))
        self.worker = Worker(
            self.config, self.store, worker_id="w1", clock=self.clock, rng=lambda: rng_value
        )

    def ingest(self, n: int = 1) -> str:
        record = request_record(self.config, "gitleads", gitleads_body(n))
        return self.store.submit_many([record])[0].event_id

    def delivery(self, event_id: str) -> dict[str, Any]:
        [row] = self.store.list_deliveries(DeliveryFilter(event_id=event_id))
        return row

    def attempts(self, event_id: str) -> list[tuple[int, str, str | None]]:
        return [
            (a["number"], a["outcome"], a["error"])
            for a in self.store.attempts_of(self.delivery(event_id)["id"])
        ]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def harness(store_url: str) -> Any:
    made: list[Harness] = []

    def build(**kwargs: Any) -> Harness:
        made.append(Harness(store_url, **kwargs))
        return made[-1]

    yield build
    for h in made:
        h.close()


def script(*outcomes: Any) -> None:
    RecordingConnector.scripts["rec"] = list(outcomes)


def test_retryable_follows_the_backoff_schedule(harness: Any) -> None:
    h = harness()
    event_id = h.ingest()
    script(Retryable("503 Service Unavailable"), Retryable("connection reset"), Delivered())
    t0 = h.clock()

    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["next_attempt_at"] == t0 + timedelta(seconds=30)
    assert row["last_error"] == "503 Service Unavailable"

    h.clock.advance(timedelta(seconds=29))
    assert h.worker.run_once("rec") == 0  # not due yet
    h.clock.advance(timedelta(seconds=1))
    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"]) == ("pending", 2)
    assert row["next_attempt_at"] == t0 + timedelta(seconds=30) + timedelta(minutes=2)

    h.clock.advance(timedelta(minutes=2))
    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, None)
    assert row["finished_at"] == h.clock()
    assert [e.event_id for e in RecordingConnector.sent["rec"]] == [event_id]
    assert h.attempts(event_id) == [
        (1, "retryable", "503 Service Unavailable"),
        (2, "retryable", "connection reset"),
        (3, "delivered", None),
    ]


def test_the_last_backoff_step_repeats(harness: Any) -> None:
    h = harness(max_attempts=6)
    event_id = h.ingest()
    script(*[Retryable("502 Bad Gateway")] * 5)
    delays = []
    for _ in range(5):
        assert h.worker.run_once("rec") == 1
        due = h.delivery(event_id)["next_attempt_at"]
        delays.append(due - h.clock())
        h.clock.now = due
    assert delays == [
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(minutes=10),
        timedelta(minutes=10),
        timedelta(minutes=10),
    ]


def test_jitter_adds_a_bounded_random_share_of_the_delay(harness: Any) -> None:
    h = harness(jitter=0.2, rng_value=0.5)
    event_id = h.ingest()
    script(Retryable("timeout"))
    assert h.worker.run_once("rec") == 1
    # 30 s plus half of the 20 % jitter.
    assert h.delivery(event_id)["next_attempt_at"] == h.clock() + timedelta(seconds=33)


@pytest.mark.parametrize(
    ("rng_value", "expected"),
    [(0.0, timedelta(minutes=2)), (0.999, timedelta(minutes=2) * (1 + 0.25 * 0.999))],
)
def test_jitter_bounds(rng_value: float, expected: timedelta) -> None:
    policy = DeliveryPolicy(backoff=["30s", "2m"], jitter=0.25, max_attempts=5)
    now = utcnow()
    update = decide(
        Retryable("503"),
        claimed_with_attempts(1),
        now=now,
        started_at=now,
        policy=policy,
        rng=lambda: rng_value,
    )
    assert update.next_attempt_at - now == expected
    assert timedelta(minutes=2) <= expected < timedelta(minutes=2) * 1.25


def claimed_with_attempts(spent: int) -> ClaimedDelivery:
    event = make_event()
    return ClaimedDelivery(
        id=1,
        event_id=event.event_id,
        connector="rec",
        attempts=spent,
        created_at=event.received_at,
        event=event,
    )


def test_rate_limited_waits_retry_after_and_spends_no_attempt(harness: Any) -> None:
    h = harness()
    event_id = h.ingest()
    script(RateLimited("429 Too Many Requests", retry_after=90), Delivered())
    t0 = h.clock()

    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert row["next_attempt_at"] == t0 + timedelta(seconds=90)
    assert row["last_error"] == "429 Too Many Requests"

    h.clock.advance(timedelta(seconds=89))
    assert h.worker.run_once("rec") == 0
    h.clock.advance(timedelta(seconds=1))
    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"]) == ("delivered", 1)
    assert [(n, outcome) for n, outcome, _ in h.attempts(event_id)] == [
        (1, "rate_limited"),
        (1, "delivered"),
    ]


def test_rate_limits_never_exhaust_the_attempts(harness: Any) -> None:
    h = harness(max_attempts=2)
    event_id = h.ingest()
    script(*[RateLimited("429", retry_after=5)] * 6)
    for _ in range(6):
        assert h.worker.run_once("rec") == 1
        h.clock.advance(timedelta(seconds=5))
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert len(h.attempts(event_id)) == 6


def test_an_outlandish_retry_after_is_capped(harness: Any) -> None:
    h = harness(max_retry_after="15m")
    event_id = h.ingest()
    script(RateLimited("429", retry_after=10 * 86400))
    assert h.worker.run_once("rec") == 1
    assert h.delivery(event_id)["next_attempt_at"] == h.clock() + timedelta(minutes=15)


def test_permanent_is_dead_at_once_with_the_destinations_text(harness: Any) -> None:
    h = harness()
    event_id = h.ingest()
    error = '400 Bad Request: {"message":"Property values were not valid: email"}'
    script(Permanent(error))

    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("dead", 1, error)
    assert row["finished_at"] == h.clock()
    assert h.attempts(event_id) == [(1, "permanent", error)]
    h.clock.advance(timedelta(days=2))
    assert h.worker.run_once("rec") == 0
    assert RecordingConnector.calls["rec"] == 1


def test_exhausted_retries_are_dead_lettered(harness: Any) -> None:
    h = harness(max_attempts=3)
    event_id = h.ingest()
    script(Retryable("503 one"), Retryable("503 two"), Retryable("503 three"))
    for _ in range(3):
        assert h.worker.run_once("rec") == 1
        h.clock.now = max(h.clock.now, h.delivery(event_id)["next_attempt_at"])
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"]) == ("dead", 3)
    assert row["last_error"] == "gave up after 3 attempts: 503 three"
    assert [(n, outcome) for n, outcome, _ in h.attempts(event_id)] == [
        (1, "retryable"),
        (2, "retryable"),
        (3, "retryable"),
    ]
    h.clock.advance(timedelta(days=2))
    assert h.worker.run_once("rec") == 0


@pytest.mark.parametrize(
    ("outcome", "status", "error", "answer"),
    [
        # A delivered try has no error; its attempt keeps what the destination wrote.
        (Delivered("contact 123 updated"), "delivered", None, "contact 123 updated"),
        (
            Skipped("lead.deleted is not sent"),
            "skipped",
            "lead.deleted is not sent",
            "lead.deleted is not sent",
        ),
    ],
)
def test_delivered_and_skipped_are_terminal(
    harness: Any, outcome: Any, status: str, error: str | None, answer: str
) -> None:
    h = harness()
    event_id = h.ingest()
    script(outcome)
    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"], row["last_error"]) == (status, 1, error)
    h.clock.advance(timedelta(days=2))
    assert h.worker.run_once("rec") == 0
    assert RecordingConnector.calls["rec"] == 1
    assert h.attempts(event_id) == [(1, status, answer)]


def test_each_event_of_a_batch_gets_its_own_outcome(harness: Any) -> None:
    h = harness()
    ids = [h.ingest(n) for n in range(4)]
    script(Delivered(), Retryable("503"), Permanent("422 invalid email"), Skipped("no identity"))
    assert h.worker.run_once("rec") == 4
    assert [h.delivery(i)["status"] for i in ids] == ["delivered", "pending", "dead", "skipped"]


def test_a_connector_that_raises_is_retried_not_fatal(harness: Any) -> None:
    h = harness()
    event_id = h.ingest()

    def explode(_event: Any) -> Any:
        raise RuntimeError("bug in the connector, token=abc123")

    script(explode)
    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    # The exception type only: its message could carry a secret.
    assert row["last_error"] == "connector error: RuntimeError"


def test_connector_returning_the_wrong_number_of_outcomes_is_retried(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness()
    event_id = h.ingest()
    monkeypatch.setattr(RecordingConnector, "send", lambda self, batch: [])
    assert h.worker.run_once("rec") == 1
    row = h.delivery(event_id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_error"] == "connector returned 0 outcomes for 1 events"


def test_attempts_record_the_worker_clock(harness: Any) -> None:
    # The attempt's timestamps are the worker's clock, not the database's.
    h = harness()
    event_id = h.ingest()
    h.clock.advance(timedelta(hours=5))
    assert h.worker.run_once("rec") == 1
    [attempt] = h.store.attempts_of(h.delivery(event_id)["id"])
    assert attempt["started_at"] == h.clock()
    assert attempt["finished_at"] == h.clock()
    assert attempt["worker"] == "w1"
