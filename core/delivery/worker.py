"""The delivery worker: lease due deliveries, send them, record typed outcomes.

One thread per connector, so a slow destination never delays another. A thread sleeps
until the store wakes it (`Store.subscribe`: new deliveries committed in this process or,
on PostgreSQL, in another), until its next scheduled retry is due, or for
`poll_interval` at most. Retention purging is not the worker's: see app/housekeeping.py.

Per lead, in order: the store hands a worker the head of each lead's line and what is
queued behind it, never a delivery of a lead another worker holds; the worker sends them in
id order and stops at the first sign of trouble, so what follows waits for the retry. An
event older than the newest one already delivered for its lead is skipped as superseded
where the connector says `on_stale: skip`.

Leases: a heartbeat renews the leases this worker holds every third of `lease`, and each
chunk's leases are checked just before it is sent, so a slow destination is not sent twice
and a lost lease is not sent at all. A worker that starts frees at once the leases of dead
processes on its host; other hosts' leases expire.

Delivery is still at-least-once: a worker that dies mid-send leaves its batch to be sent
again; connectors that can upsert or dedup make that effectively once.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from leadrelay.core import metrics
from leadrelay.core.delivery.contract import (
    Connector,
    ConnectorOptions,
    Delivered,
    Outcome,
    RateLimited,
    Retryable,
    Skipped,
)
from leadrelay.core.delivery.owner import dead_on_this_host, new_owner_id
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
    LeasedDelivery,
    NewestDelivered,
    Store,
    StoreUnavailable,
    UnloadableDelivery,
    utcnow,
)

log = logging.getLogger("leadrelay.worker")

Clock = Callable[[], datetime]
_DISABLED_CACHE_S = 2.0
# Connectors that send one event per call still claim and record several per transaction:
# two SQLite commits per event would otherwise cap delivery far below ingest. The heartbeat
# keeps the leases of a claim that takes longer than the lease to send.
_MIN_CLAIM = 10
# Under steady ingest every commit wakes the loop, and claiming the few deliveries of
# each commit costs a claim and a completion transaction per handful of rows, competing
# with ingest for the write lock and the GIL. So when a claim came back short of its
# limit but with more than one delivery (events arrive faster than one per claim), the
# next claim waits a little per extra delivery, up to a bound, and takes what gathered
# meanwhile: batches grow with the arrival rate, and a lone event is still claimed at once.
_GATHER_PER_DELIVERY_S = 0.01
_GATHER_MAX_S = 0.05
# Pauses between tries to record outcomes while the store is unavailable: about six
# seconds in all, inside the default lease (30 s), so the batch is not sent twice.
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
        self.worker_id = worker_id or new_owner_id()
        self.clock = clock
        self.rng = rng
        self._stopping = threading.Event()
        self._wake = {name: threading.Event() for name in self.connectors}
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._disabled: frozenset[str] = frozenset()
        self._disabled_read_at = float("-inf")
        # Deliveries this worker holds the lease of, and until when (by this worker's
        # clock, which wrote it): renewed by the heartbeat.
        self._held: dict[int, datetime] = {}
        self._held_lock = threading.Lock()
        self._heartbeat_stop = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None

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
        leased_ids = [d.id for d in leased]
        with self._held_lock:
            self._held.update(dict.fromkeys(leased_ids, now + self.config.delivery.lease))
        try:
            return self._process(connector, leased, now)
        finally:
            with self._held_lock:
                for delivery_id in leased_ids:
                    self._held.pop(delivery_id, None)

    def _process(self, connector: Connector, leased: list[LeasedDelivery], now: datetime) -> int:
        if self._stopping.is_set():
            self.store.release(self.worker_id, [c.id for c in leased])
            return 0
        self._dead_letter_unloadable([d for d in leased if isinstance(d, UnloadableDelivery)])
        claimed = [d for d in leased if isinstance(d, ClaimedDelivery)]
        if not claimed:
            return 0
        started_at = now
        sent, unsent = self._send_in_chunks(connector, claimed)
        if unsent:
            self.store.release(self.worker_id, [c.id for c in unsent])
        finished_at = self.clock()
        updates = [
            replace(
                decide(
                    outcome,
                    delivery,
                    now=finished_at,
                    started_at=started_at,
                    policy=self.config.delivery,
                    rng=self.rng,
                ),
                request=None
                if isinstance(outcome, Skipped)
                else _request_sent(connector, delivery, outcome),
            )
            for delivery, outcome in sent
        ]
        self._complete(updates, finished_at)
        for (delivery, outcome), upd in zip(sent, updates, strict=True):
            self._observe(connector.name, delivery, outcome, upd, finished_at)
        self._honour_disable_request(connector)
        return len(sent)

    def _send_in_chunks(
        self, connector: Connector, claimed: list[ClaimedDelivery]
    ) -> tuple[list[tuple[ClaimedDelivery, Outcome]], list[ClaimedDelivery]]:
        """Send claimed deliveries in the connector's batch size, in order; stop at the first
        sign of trouble (retry, rate limit, a disable request) or shutdown.

        Returns each finished delivery with its outcome, and the ones to give back unsent.
        Deliveries whose lease was lost are in neither: their new holder records them.
        """
        skip_stale = self.config.connectors[connector.name].on_stale == "skip"
        newest = (
            self.store.newest_delivered(
                connector.name, {d.lead_key for d in claimed if d.lead_key is not None}
            )
            if skip_stale
            else {}
        )
        finished: list[tuple[ClaimedDelivery, Outcome]] = []
        unsent: list[ClaimedDelivery] = []
        lost_leads: set[str | None] = set()
        size = connector.batch_size
        for start in range(0, len(claimed), size):
            if start and self._stopping.is_set():
                unsent += claimed[start:]
                break
            chunk = self._still_held(claimed[start : start + size], lost_leads)
            # A lead whose earlier delivery was lost must not have its later ones sent here.
            unsent += [d for d in chunk if d.lead_key in lost_leads and d.lead_key is not None]
            chunk = [d for d in chunk if d.lead_key not in lost_leads or d.lead_key is None]
            stale = _superseded(chunk, newest) if skip_stale else {}
            to_send = [d for d in chunk if d.id not in stale]
            outcomes = self._send(connector, to_send) if to_send else []
            results = dict(zip([d.id for d in to_send], outcomes, strict=True))
            for delivery in chunk:
                outcome = results.get(delivery.id)
                if outcome is None:
                    # Superseded: skipped once what supersedes it is delivered, else it goes
                    # back to wait for it.
                    superseder = stale[delivery.id]
                    by = results.get(superseder.delivery_id) if superseder.delivery_id else None
                    if superseder.delivery_id is None or isinstance(by, Delivered):
                        finished.append((delivery, Skipped(f"superseded by {superseder.event_id}")))
                    else:
                        unsent.append(delivery)
                    continue
                finished.append((delivery, outcome))
                if isinstance(outcome, Delivered):
                    _advance(newest, delivery)
            troubled = any(isinstance(o, Retryable | RateLimited) for o in results.values())
            if troubled or connector.disable_requested:
                unsent += claimed[start + size :]
                break
        return finished, unsent

    def _still_held(
        self, chunk: list[ClaimedDelivery], lost_leads: set[str | None]
    ) -> list[ClaimedDelivery]:
        """The chunk without deliveries whose lease this worker lost (checked just before the
        send, so a lease taken over is never sent by two workers).

        A lease that has not expired cannot have been taken: only those whose last claim or
        renewal is older than two thirds of the lease (the heartbeat did not get through)
        are read back from the store.
        """
        now = self.clock()
        safe_until = now + self.config.delivery.lease / 3
        with self._held_lock:
            doubtful = [d.id for d in chunk if self._held.get(d.id, now) <= safe_until]
        held = {d.id for d in chunk} - set(doubtful)
        if doubtful:
            held |= self.store.still_held(self.worker_id, doubtful, now)
        lost = [d for d in chunk if d.id not in held]
        if lost:
            lost_leads.update(d.lead_key for d in lost)
            log.warning(
                "lease lost before sending; another worker has these deliveries",
                extra=fields(worker=self.worker_id, deliveries=[d.id for d in lost]),
            )
        return [d for d in chunk if d.id in held]

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

    def heartbeat(self) -> None:
        """Renew the leases this worker holds (its heartbeat thread calls this)."""
        with self._held_lock:
            held = sorted(self._held)
        if not held:
            return
        now = self.clock()
        lease = self.config.delivery.lease
        try:
            renewed = self.store.renew(self.worker_id, held, now, lease)
        except StoreUnavailable as exc:
            log.warning("could not renew leases", extra=fields(error=str(exc)))
            return
        with self._held_lock:
            for delivery_id in renewed & self._held.keys():
                self._held[delivery_id] = now + lease

    def _heartbeat_loop(self) -> None:
        interval = self.config.delivery.lease.total_seconds() / 3
        while not self._heartbeat_stop.wait(interval):
            self.heartbeat()

    def reclaim_dead_leases(self) -> int:
        """Free the leases held by processes of this host that are gone (killed, crashed),
        so their deliveries go out now instead of when the leases expire."""
        try:
            owners = self.store.lease_owners(self.clock())
            dead = sorted(owner for owner in owners if dead_on_this_host(owner))
            released = self.store.release_owners(dead)
        except StoreUnavailable as exc:
            log.warning("could not reclaim dead workers' leases", extra=fields(error=str(exc)))
            return 0
        if released:
            log.warning(
                "reclaimed leases of dead workers on this host",
                extra=fields(owners=dead, deliveries=released),
            )
        return released

    def start(self) -> None:
        self.reclaim_dead_leases()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name="worker-heartbeat", daemon=True
        )
        self._heartbeat_thread.start()
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
        self._heartbeat_stop.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=timeout)
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
                if handled < max(self.connectors[name].batch_size, _MIN_CLAIM):
                    self._stopping.wait(min((handled - 1) * _GATHER_PER_DELIVERY_S, _GATHER_MAX_S))
                continue
            wake.wait(self._idle_timeout(name, poll))

    def _idle_timeout(self, name: str, poll: float) -> float:
        try:
            if not self.enabled(name):
                # Its deliveries may well be due; they wait for the connector, not the clock.
                return poll
            due = self.store.next_due_at(name, self.clock())
        except StoreUnavailable:
            return poll
        if due is None:
            return poll
        return min(poll, max((due - self.clock()).total_seconds(), 0.01))


class _Superseder:
    """What makes a claimed event stale: a newer event of its lead, delivered before
    (`delivery_id` None) or being sent in the same chunk."""

    def __init__(self, occurred_at: datetime, event_id: str, delivery_id: int | None) -> None:
        self.occurred_at = occurred_at
        self.event_id = event_id
        self.delivery_id = delivery_id


def _superseded(
    chunk: list[ClaimedDelivery], newest: Mapping[str, NewestDelivered]
) -> dict[int, _Superseder]:
    """Deliveries of the chunk whose event is older than one already delivered for its lead
    or than an earlier one of the chunk (coalesced writes apply in order: later wins)."""
    latest = {
        key: _Superseder(found.occurred_at, found.event_id, None) for key, found in newest.items()
    }
    stale: dict[int, _Superseder] = {}
    for delivery in chunk:
        key, occurred_at = delivery.lead_key, delivery.event.occurred_at
        if key is None or occurred_at is None:
            continue
        ahead = latest.get(key)
        if ahead is not None and occurred_at < ahead.occurred_at:
            stale[delivery.id] = ahead
        else:
            latest[key] = _Superseder(occurred_at, delivery.event_id, delivery.id)
    return stale


def _advance(newest: dict[str, NewestDelivered], delivery: ClaimedDelivery) -> None:
    key, occurred_at = delivery.lead_key, delivery.event.occurred_at
    if key is None or occurred_at is None:
        return
    if key not in newest or occurred_at >= newest[key].occurred_at:
        newest[key] = NewestDelivered(occurred_at, delivery.event_id)


# A request copy is for reading on the console, not for replaying: a huge one is cut.
_MAX_REQUEST_CHARS = 64 * 1024


def _request_sent(connector: Connector, delivery: ClaimedDelivery, outcome: Outcome) -> str | None:
    """The request the connector built for the event, as its preview shows it (the
    contract: exactly what `send` transmits, secrets masked), kept on the attempt: the
    one `send` handed back with its outcome, else the preview built again now."""
    preview = outcome.request if isinstance(outcome, Delivered) else None
    if preview is None:
        try:
            preview = connector.preview(delivery.event)
        except Exception:  # a copy for reading must never fail the delivery it describes
            log.exception("connector preview raised", extra=fields(connector=connector.name))
            return None
    return json.dumps(preview, ensure_ascii=False, default=str)[:_MAX_REQUEST_CHARS]
