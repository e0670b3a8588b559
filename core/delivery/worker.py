"""The delivery worker: lease due deliveries, send them, record typed outcomes.

One thread per connector, so a slow destination never delays another. A thread sleeps
until the store wakes it (`Store.subscribe`: new deliveries committed in this process or,
on PostgreSQL, in another), until its next scheduled retry is due, or for
`poll_interval` at most. Retention purging is not the worker's: see app/housekeeping.py.

Delivery is at-least-once: a worker that dies mid-batch leaves its lease to expire and
another worker sends the batch again; connectors that can upsert or dedup make that
effectively once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from leadrelay.core import metrics
from leadrelay.core.delivery.contract import (
    Connector,
    ConnectorOptions,
    Outcome,
    RateLimited,
    Retryable,
)
from leadrelay.core.delivery.policy import (
    DeliveryPolicy,
    decide,
    decide_unloadable,
    outcome_label,
)
from leadrelay.core.delivery.registry import connector_class
from leadrelay.core.logs import fields
from leadrelay.core.schema import Activity, LeadEvent
from leadrelay.core.store.store import (
    ClaimedDelivery,
    DeliveryUpdate,
    Store,
    StoreUnavailable,
    UnloadableDelivery,
    utcnow,
)

log = logging.getLogger("leadrelay.worker")

Clock = Callable[[], datetime]
_DISABLED_CACHE_S = 2.0
# Connectors that send one event per call still claim and record several per transaction:
# two SQLite commits per event would otherwise cap delivery far below ingest. Small enough
# that even slow destinations finish a claim well inside the lease.
_MIN_CLAIM = 10
_MAX_WORKER_ID_CHARS = 64  # deliveries.lease_owner, attempts.worker
# Pauses between tries to record outcomes while the store is unavailable: about six
# seconds in all, well inside a lease (minutes), so the batch is not sent twice.
COMPLETE_RETRY_PAUSES_S = (0.2, 0.4, 0.8, 1.6, 3.2)


class WorkerConfig(Protocol):
    """The parts of the configuration the worker reads (the app's `Config` has them)."""

    @property
    def connectors(self) -> Mapping[str, ConnectorOptions]: ...

    @property
    def delivery(self) -> DeliveryPolicy: ...


def build_connectors(config: WorkerConfig) -> dict[str, Connector]:
    return {
        name: connector_class(options.type)(name, options)
        for name, options in config.connectors.items()
    }


def default_worker_id() -> str:
    """`host:pid:random`, cut to fit the 64-character lease and attempt columns.

    The host part is what gets shortened (pod and cloud host names can be long); the pid
    and random suffix keep two workers on one host apart.
    """
    suffix = f":{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return socket.gethostname()[: _MAX_WORKER_ID_CHARS - len(suffix)] + suffix


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        store: Store,
        connectors: Mapping[str, Connector] | None = None,
        *,
        worker_id: str | None = None,
        clock: Clock = utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.store = store
        self.connectors = dict(connectors) if connectors is not None else build_connectors(config)
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.rng = rng
        self._stopping = threading.Event()
        self._wake = {name: threading.Event() for name in self.connectors}
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._disabled: frozenset[str] = frozenset()
        self._disabled_read_at = float("-inf")

    # -- one batch, the unit the tests drive ---------------------------------------------

    def enabled(self, name: str) -> bool:
        """Enabled in YAML and not disabled at run time (re-read at most every few seconds)."""
        if not self.config.connectors[name].enabled:
            return False
        now = time.monotonic()
        if now - self._disabled_read_at > _DISABLED_CACHE_S:
            self._disabled = frozenset(self.store.disabled_connectors())
            self._disabled_read_at = now
        return name not in self._disabled

    def run_once(self, name: str) -> int:
        """Claim and process one batch of `name`; returns how many deliveries it handled."""
        connector = self.connectors[name]
        if not self.enabled(name):
            return 0
        now = self.clock()
        leased = self.store.claim(
            name,
            self.worker_id,
            max(connector.batch_size, _MIN_CLAIM),
            now,
            self.config.delivery.lease,
        )
        if not leased:
            return 0
        if self._stopping.is_set():
            self.store.release(self.worker_id, [c.id for c in leased])
            return 0
        self._dead_letter_unloadable([d for d in leased if isinstance(d, UnloadableDelivery)])
        claimed = [d for d in leased if isinstance(d, ClaimedDelivery)]
        if not claimed:
            return 0
        started_at = now
        batch, outcomes = self._send_in_chunks(connector, claimed)
        unsent = claimed[len(batch) :]
        if unsent:
            self.store.release(self.worker_id, [c.id for c in unsent])
        finished_at = self.clock()
        updates = [
            decide(
                outcome,
                delivery,
                now=finished_at,
                started_at=started_at,
                policy=self.config.delivery,
                rng=self.rng,
            )
            for delivery, outcome in zip(batch, outcomes, strict=True)
        ]
        self._complete(updates, finished_at)
        for delivery, outcome, upd in zip(batch, outcomes, updates, strict=True):
            self._observe(name, delivery, outcome, upd, finished_at)
        self._honour_disable_request(connector)
        return len(batch)

    def _send_in_chunks(
        self, connector: Connector, claimed: list[ClaimedDelivery]
    ) -> tuple[list[ClaimedDelivery], list[Outcome]]:
        """Send claimed deliveries in the connector's batch size; stop at the first sign of
        trouble (retry, rate limit, a disable request) or shutdown. Returns what was sent."""
        sent: list[ClaimedDelivery] = []
        outcomes: list[Outcome] = []
        size = connector.batch_size
        for start in range(0, len(claimed), size):
            if start and self._stopping.is_set():
                break
            chunk = claimed[start : start + size]
            chunk_outcomes = self._send(connector, chunk)
            sent += chunk
            outcomes += chunk_outcomes
            troubled = any(isinstance(o, Retryable | RateLimited) for o in chunk_outcomes)
            if troubled or connector.disable_requested:
                break
        return sent, outcomes

    def _send(self, connector: Connector, batch: Sequence[ClaimedDelivery]) -> list[Outcome]:
        try:
            outcomes = list(connector.send([c.event for c in batch]))
        except Exception as exc:
            # A connector bug must not take the worker down; the batch is retried.
            log.exception(
                "connector raised instead of returning outcomes",
                extra=fields(connector=connector.name),
            )
            return [Retryable(f"connector error: {type(exc).__name__}")] * len(batch)
        if len(outcomes) != len(batch):
            error = f"connector returned {len(outcomes)} outcomes for {len(batch)} events"
            return [Retryable(error)] * len(batch)
        return outcomes

    def _dead_letter_unloadable(self, unloadable: list[UnloadableDelivery]) -> None:
        if not unloadable:
            return
        now = self.clock()
        log.error(
            "dead-lettered deliveries whose stored event cannot be loaded",
            extra=fields(deliveries=[u.id for u in unloadable]),
        )
        self._complete(
            [decide_unloadable(u, now=now, policy=self.config.delivery) for u in unloadable], now
        )

    def _complete(self, updates: list[DeliveryUpdate], now: datetime) -> None:
        # If the store is briefly down, keep trying while our lease holds; after that
        # another worker will take the batch again (at-least-once).
        for pause in (*COMPLETE_RETRY_PAUSES_S, None):
            try:
                self.store.complete(self.worker_id, updates, now)
                return
            except StoreUnavailable:
                if pause is None or self._stopping.wait(pause):
                    break
        log.error(
            "could not record delivery outcomes; they will be retried after the lease expires",
            extra=fields(deliveries=[u.id for u in updates]),
        )

    def _observe(
        self,
        name: str,
        claimed: ClaimedDelivery,
        outcome: Outcome,
        update: DeliveryUpdate,
        now: datetime,
    ) -> None:
        metrics.DELIVERY_ATTEMPTS.labels(name, update.outcome).inc()
        if update.status == "delivered":
            metrics.DELIVERY_LATENCY.labels(name).observe(
                max((now - claimed.event.received_at).total_seconds(), 0.0)
            )
        level = logging.WARNING if update.status == "dead" else logging.INFO
        log.log(
            level,
            "delivery %s",
            update.status,
            extra=fields(
                event_id=claimed.event_id,
                source=claimed.event.source,
                connector=name,
                outcome=update.outcome,
                status=update.status,
                attempt=update.attempt_number,
                next_attempt_at=update.next_attempt_at.isoformat()
                if update.status == "pending"
                else None,
                error=update.last_error,
            ),
        )
        if update.status == "dead":
            self._notify_dead(name, claimed.event, update.last_error or "")

    def _notify_dead(self, name: str, event: LeadEvent, error: str) -> None:
        """Best effort: tell the connector named in `on_dead` (e.g. Slack) what died."""
        target = self.config.connectors[name].on_dead
        notifier = self.connectors.get(target) if target else None
        if notifier is None:
            return
        notice = event.model_copy(
            update={
                "activity": Activity(
                    kind="delivery_dead",
                    text=f"Delivery to {name} failed for good: {error}",
                    context={"connector": name, "event_id": event.event_id},
                )
            }
        )
        try:
            outcome = notifier.send([notice])[0]
        except Exception:
            log.exception("on_dead notification raised", extra=fields(connector=target))
            return
        log.info(
            "on_dead notification %s",
            outcome_label(outcome),
            extra=fields(connector=target, event_id=event.event_id, dead_connector=name),
        )

    def _honour_disable_request(self, connector: Connector) -> None:
        # A destination that said 410 Gone asks not to be called again (Standard Webhooks).
        reason = connector.disable_requested
        if reason:
            self.store.set_connector_disabled(connector.name, reason)
            self._disabled_read_at = float("-inf")
            log.warning(
                "connector disabled at the destination's request; `connectors enable %s` "
                "resumes it",
                connector.name,
                extra=fields(connector=connector.name, reason=reason),
            )
            connector.disable_requested = None

    # -- running --------------------------------------------------------------------------

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    def drain(self, name: str | None = None, max_batches: int = 10_000) -> int:
        """Process every due delivery now (tests and `connectors test --live`)."""
        names = [name] if name else list(self.connectors)
        total = 0
        for _ in range(max_batches):
            handled = sum(self.run_once(n) for n in names)
            total += handled
            if not handled:
                break
        return total

    def start(self) -> None:
        for name in self.connectors:
            thread = threading.Thread(
                target=self._loop, args=(name,), name=f"worker-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._unsubscribe = self.store.subscribe(self.wake)
        log.info(
            "worker started",
            extra=fields(worker=self.worker_id, connectors=sorted(self.connectors)),
        )

    def request_stop(self) -> None:
        """Ask the loops to stop after their current batch; safe from a signal handler."""
        self._stopping.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, let in-flight batches finish and record their outcomes."""
        self._stopping.set()
        log.info(
            "worker stopping: finishing in-flight batches", extra=fields(worker=self.worker_id)
        )
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.wake()
        for thread in self._threads:
            thread.join(timeout=timeout)
        for connector in self.connectors.values():
            connector.close()
        log.info("worker stopped", extra=fields(worker=self.worker_id))

    def wait(self) -> None:
        """Block until `stop` is called (by a signal handler)."""
        while not self._stopping.wait(3600):
            pass

    def _loop(self, name: str) -> None:
        poll = self.config.delivery.poll_interval.total_seconds()
        wake = self._wake[name]
        while not self._stopping.is_set():
            wake.clear()
            try:
                handled = self.run_once(name)
            except StoreUnavailable as exc:
                log.warning("store unavailable", extra=fields(connector=name, error=str(exc)))
                handled = 0
            except Exception:
                log.exception("worker loop error", extra=fields(connector=name))
                handled = 0
            if handled:
                continue
            wake.wait(self._idle_timeout(name, poll))

    def _idle_timeout(self, name: str, poll: float) -> float:
        try:
            if not self.enabled(name):
                # Its deliveries may well be due; they wait for the connector, not the clock.
                return poll
            due = self.store.next_due_at(name)
        except StoreUnavailable:
            return poll
        if due is None:
            return poll
        return min(poll, max((due - self.clock()).total_seconds(), 0.01))
