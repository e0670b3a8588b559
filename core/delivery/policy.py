"""The retry policy: what one try's outcome means for a delivery's schedule.

Delivered, skipped and permanent outcomes finish a delivery; a rate limit reschedules it
without spending an attempt; anything retryable backs off until `max_attempts` is spent,
then the delivery is dead-lettered. This is the only place that decides a delivery dies.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from leadrelay.core.delivery.contract import (
    Delivered,
    Outcome,
    Permanent,
    RateLimited,
    Retryable,
    Skipped,
)
from leadrelay.core.durations import Duration, parse_duration
from leadrelay.core.store.store import DeliveryUpdate, LeasedDelivery, UnloadableDelivery

_MAX_ERROR_CHARS = 2000


class DeliveryPolicy(BaseModel):
    """The `delivery:` section of the YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff: list[Duration] = Field(
        default_factory=lambda: [
            parse_duration(d) for d in ("30s", "2m", "10m", "1h", "6h", "24h")
        ],
        min_length=1,
    )
    # Fraction of each delay added at random, so a burst of failures does not retry in step.
    jitter: float = Field(default=0.1, ge=0, le=1)
    # How long a claimed delivery stays with its worker without a renewal; the worker's
    # heartbeat renews it every third of this while it works.
    lease: Duration = Field(default=timedelta(seconds=30))
    poll_interval: Duration = Field(default=timedelta(seconds=2))
    # A Retry-After longer than this is capped, so one odd header cannot park a lead for days.
    max_retry_after: Duration = Field(default=timedelta(hours=1))

    def delay_after(self, attempt: int) -> timedelta:
        """Delay before attempt `attempt + 1`, the last step repeating."""
        return self.backoff[min(attempt - 1, len(self.backoff) - 1)]


def outcome_label(outcome: Outcome) -> str:
    return {
        Delivered: "delivered",
        Skipped: "skipped",
        Retryable: "retryable",
        RateLimited: "rate_limited",
        Permanent: "permanent",
    }[type(outcome)]


def decide(
    outcome: Outcome,
    claimed: LeasedDelivery,
    *,
    now: datetime,
    started_at: datetime,
    policy: DeliveryPolicy,
    rng: Callable[[], float] = random.random,
) -> DeliveryUpdate:
    """The next state of a delivery after one try: the retry policy in one place."""
    spent = claimed.attempts + 1

    def update(
        status: str, next_at: datetime, error: str | None, attempts: int = spent
    ) -> DeliveryUpdate:
        return DeliveryUpdate(
            id=claimed.id,
            status=status,
            attempts=attempts,
            next_attempt_at=next_at,
            last_error=error[:_MAX_ERROR_CHARS] if error is not None else None,
            outcome=outcome_label(outcome),
            started_at=started_at,
            attempt_number=spent,
            answer=(error if error is not None else outcome.message)[:_MAX_ERROR_CHARS] or None,
        )

    if isinstance(outcome, Delivered):
        return update("delivered", now, None)
    if isinstance(outcome, Skipped):
        return update("skipped", now, outcome.message)
    if isinstance(outcome, Permanent):
        return update("dead", now, outcome.message)
    if isinstance(outcome, RateLimited):
        # Not a spent attempt: the destination is healthy, just asking us to pace.
        delay = min(timedelta(seconds=max(outcome.retry_after, 0.0)), policy.max_retry_after)
        return update("pending", now + delay, outcome.message, attempts=claimed.attempts)
    if spent >= policy.max_attempts:
        return update("dead", now, f"gave up after {spent} attempts: {outcome.message}")
    delay = policy.delay_after(spent) * (1 + policy.jitter * rng())
    return update("pending", now + delay, outcome.message)


def decide_unloadable(
    delivery: UnloadableDelivery, *, now: datetime, policy: DeliveryPolicy
) -> DeliveryUpdate:
    """A stored event this code cannot load (e.g. after a downgrade) is dead at once.

    It would fail the same way on every retry, and being due first it would block its
    connector's queue meanwhile; dead-lettered, it can be replayed after an upgrade.
    """
    error = f"stored event cannot be loaded: {delivery.error}"
    return decide(Permanent(error), delivery, now=now, started_at=now, policy=policy)
