"""Looking up, merging and forgetting persons of the identity map (`Store` inherits these).

Ingest-time resolution is in `identity_map.py`; this is the operator's side, used by
`connectors identities show|merge` and `connectors forget`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, exists, func, or_, select, update

from leadrelay.core.store.tables import (
    attempts,
    deliveries,
    events,
    identities,
    identity_conflicts,
    lead_progress,
    persons,
)


def _merge_progress(conn: Connection, keep_key: str, other_key: str) -> None:
    """Per connector, the merged person's newest delivered event is the newer of the two,
    so `on_stale` keeps judging late events against everything either one received."""
    others = conn.execute(select(lead_progress).where(lead_progress.c.lead_key == other_key))
    for other in others.all():
        kept = conn.execute(
            select(lead_progress.c.occurred_at).where(
                lead_progress.c.connector == other.connector,
                lead_progress.c.lead_key == keep_key,
            )
        ).scalar()
        if kept is None or other.occurred_at > kept:
            conn.execute(
                delete(lead_progress).where(
                    lead_progress.c.connector == other.connector,
                    lead_progress.c.lead_key == keep_key,
                )
            )
            conn.execute(
                update(lead_progress)
                .where(
                    lead_progress.c.connector == other.connector,
                    lead_progress.c.lead_key == other_key,
                )
                .values(lead_key=keep_key)
            )
    conn.execute(delete(lead_progress).where(lead_progress.c.lead_key == other_key))


class UnknownPerson(LookupError):
    """No person has this key or identifier."""


class IdentityAdmin(ABC):
    @abstractmethod
    def _read(self) -> AbstractContextManager[Connection]: ...

    @abstractmethod
    def _write(self) -> AbstractContextManager[Connection]: ...

    @abstractmethod
    def settle(self, *, max_moves: int = ...) -> bool:
        """Move journaled events into the tables (the person's newest ones included)."""

    def find_person(self, who: str) -> dict[str, Any]:
        """A person (by key, identifier or bare email): identifiers, events, conflicts."""
        with self._read() as conn:
            key = _person_key(conn, who)
            person = conn.execute(select(persons).where(persons.c.person_key == key)).one()
            found = conn.execute(
                select(identities.c.identifier, identities.c.first_seen_at)
                .where(identities.c.person_key == key)
                .order_by(identities.c.first_seen_at, identities.c.identifier)
            )
            stored = conn.execute(
                select(
                    events.c.event_id,
                    events.c.received_at,
                    events.c.source,
                    events.c.type,
                    events.c.provider_event,
                )
                .where(events.c.lead_key == key)
                .order_by(events.c.received_at, events.c.event_id)
            )
            conflicts = conn.execute(
                select(identity_conflicts)
                .where(
                    or_(identity_conflicts.c.kept_key == key, identity_conflicts.c.other_key == key)
                )
                .order_by(identity_conflicts.c.recorded_at, identity_conflicts.c.event_id)
            )
            return {
                "key": key,
                "created_at": person.created_at,
                "last_event_at": person.last_event_at,
                "identifiers": [dict(row._mapping) for row in found],
                "events": [dict(row._mapping) for row in stored],
                "conflicts": [dict(row._mapping) for row in conflicts],
            }

    def merge_persons(self, keep: str, other: str) -> dict[str, int]:
        """Make `other` (key or identifier) part of `keep`: its identifiers and stored
        events take `keep`'s key, and their conflicts are settled. `other`'s key ends."""
        self.settle()
        with self._write() as conn:
            keep_key, other_key = _person_key(conn, keep), _person_key(conn, other)
            if keep_key == other_key:
                raise ValueError(f"{keep} and {other} are already one person ({keep_key})")
            moved = conn.execute(
                update(identities)
                .where(identities.c.person_key == other_key)
                .values(person_key=keep_key)
            ).rowcount
            rekeyed = conn.execute(
                update(events).where(events.c.lead_key == other_key).values(lead_key=keep_key)
            ).rowcount
            # One person, one delivery line: `other`'s queued deliveries join `keep`'s.
            relined = conn.execute(
                update(deliveries)
                .where(deliveries.c.lead_key == other_key)
                .values(lead_key=keep_key)
            ).rowcount
            _merge_progress(conn, keep_key, other_key)
            for column in (identity_conflicts.c.kept_key, identity_conflicts.c.other_key):
                conn.execute(
                    update(identity_conflicts)
                    .where(column == other_key)
                    .values({column.name: keep_key})
                )
            settled = conn.execute(
                delete(identity_conflicts).where(
                    identity_conflicts.c.kept_key == identity_conflicts.c.other_key
                )
            ).rowcount
            last = conn.execute(
                select(func.max(persons.c.last_event_at)).where(
                    persons.c.person_key.in_([keep_key, other_key])
                )
            ).scalar_one()
            conn.execute(
                update(persons).where(persons.c.person_key == keep_key).values(last_event_at=last)
            )
            conn.execute(delete(persons).where(persons.c.person_key == other_key))
        return {
            "identifiers": moved,
            "events": rekeyed,
            "deliveries": relined,
            "conflicts_settled": settled,
        }

    def forget_person(self, who: str) -> dict[str, Any]:
        """Delete everything stored about a person but the idempotency keys.

        Its events (payloads and normalized forms), their deliveries (pending ones too:
        they would send the person's data) and attempts, its identity entries and
        conflicts. The dedup keys hold no personal data and stay, so a provider retrying
        one of the person's events is still answered `duplicate`.
        """
        self.settle()
        with self._write() as conn:
            key = _person_key(conn, who)
            names = [
                row[0]
                for row in conn.execute(
                    select(identities.c.identifier).where(identities.c.person_key == key)
                )
            ]
            own_events = select(events.c.event_id).where(events.c.lead_key == key)
            own_deliveries = select(deliveries.c.id).where(deliveries.c.event_id.in_(own_events))
            removed = {
                "key": key,
                "identifiers": names,
                "attempts": conn.execute(
                    delete(attempts).where(attempts.c.delivery_id.in_(own_deliveries))
                ).rowcount,
                "deliveries": conn.execute(
                    delete(deliveries).where(deliveries.c.event_id.in_(own_events))
                ).rowcount,
                "conflicts": conn.execute(
                    delete(identity_conflicts).where(
                        or_(
                            identity_conflicts.c.kept_key == key,
                            identity_conflicts.c.other_key == key,
                        )
                    )
                ).rowcount,
            }
            removed["events"] = conn.execute(
                delete(events).where(events.c.lead_key == key)
            ).rowcount
            conn.execute(delete(identities).where(identities.c.person_key == key))
            conn.execute(delete(persons).where(persons.c.person_key == key))
            # The newest delivered event per connector: a returning person must not have
            # new events judged stale against what was forgotten.
            conn.execute(delete(lead_progress).where(lead_progress.c.lead_key == key))
        return removed


def purge_identities(conn: Connection, now: datetime, dedup_retention: timedelta) -> int:
    """Delete the persons whose last event is older than `dedup_retention`, with their
    identifiers; returns how many identifiers went.

    A person with an event still stored (a delivery pending that long) stays: its
    deliveries still carry the key, and its next event must get the same one.
    """
    expired = select(persons.c.person_key).where(
        persons.c.last_event_at < now - dedup_retention,
        ~exists().where(events.c.lead_key == persons.c.person_key),
    )
    gone = list(conn.execute(expired).scalars())
    n_identities = 0
    for start in range(0, len(gone), 500):
        chunk = gone[start : start + 500]
        n_identities += conn.execute(
            delete(identities).where(identities.c.person_key.in_(chunk))
        ).rowcount
        conn.execute(delete(persons).where(persons.c.person_key.in_(chunk)))
    return n_identities


def _person_key(conn: Connection, who: str) -> str:
    text = who.strip()
    candidates = [text]
    if ":" not in text and "@" in text:
        candidates.append(f"email:{text.lower()}")
    kind, _, rest = text.partition(":")
    if kind in ("email", "linkedin", "github"):
        candidates.append(f"{kind}:{rest.lower()}")
    for candidate in candidates:
        known = select(persons.c.person_key).where(persons.c.person_key == candidate)
        if conn.execute(known).first():
            return candidate
        owner = conn.execute(
            select(identities.c.person_key).where(identities.c.identifier == candidate)
        ).scalar()
        if owner is not None:
            return str(owner)
    raise UnknownPerson(f"no person has the key or identifier {who!r}")
