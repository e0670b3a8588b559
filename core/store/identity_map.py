"""Which person each event is about: the identity map, resolved in the group commit.

An event's identifiers (`schema.lead_identifiers`) are looked up; if any is known, the
event gets that person's key and its other identifiers join the person; otherwise the
event's own key starts a new person. Events of one group resolve in order, so a
person's first event and a later one committed together agree.

Concurrency: on SQLite the transaction holds the only write lock, so what the lookup
finds is what is there at commit. On PostgreSQL another transaction may add the same
identifier meanwhile: identifiers are inserted `ON CONFLICT DO NOTHING`, in sorted order
(so two transactions lock them in one order and cannot deadlock), and a lost identifier
is re-read and the group resolved again with it. The primary key on `identifier` makes
each identifier one person's, whoever commits first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, update

from leadrelay.core.store.bulk_insert import MAX_PARAMETERS, BulkInsert, driver_execute
from leadrelay.core.store.tables import identities, identity_conflicts, persons

# A person's last-event time is a retention clock counted in days: refreshing it once a
# day per person keeps the common case (a known person's next event) free of a write.
_TOUCH_EVERY = timedelta(days=1)
_IN_CHUNK = MAX_PARAMETERS - 2


class Claim(NamedTuple):
    """One stored event asking for its person (in the group's order)."""

    event_id: str
    proposed_key: str
    identifiers: tuple[str, ...]  # strongest match first
    received_at: datetime


class Resolved(NamedTuple):
    key: str
    # The person's identifiers as of this event, oldest first, as the events column holds.
    identities_json: str


class Resolution(NamedTuple):
    resolved: list[Resolved]
    # (event_id, identifier, kept_key, other_key) rows, recorded once the events exist.
    conflicts: list[tuple[Any, ...]]


class _Plan(NamedTuple):
    keys: list[str]
    joins: dict[str, str]  # identifier new to the store -> person key
    new_persons: dict[str, str]  # new person key -> the identifier to fall back on
    conflicts: list[tuple[str, str, str, str]]


class IdentityMap:
    def __init__(self, dialect: Any) -> None:
        self._placeholder = "?" if dialect.paramstyle == "qmark" else "%s"
        # On SQLite the transaction holds the only write lock: what a lookup finds absent
        # stays absent until the commit, so inserts need no RETURNING to learn what they
        # stored. SQLite steps a RETURNING statement once per row, and the driver gives
        # up the GIL at every step while the group's leader holds the write lock.
        self._exclusive_writer = dialect.name == "sqlite"
        returning = "" if self._exclusive_writer else " RETURNING {}"
        self._insert_identities = BulkInsert(
            identities,
            ("identifier", "person_key", "first_seen_at"),
            dialect,
            suffix="ON CONFLICT DO NOTHING" + returning.format("identifier"),
        )
        self._insert_persons = BulkInsert(
            persons,
            ("person_key", "created_at", "last_event_at"),
            dialect,
            suffix="ON CONFLICT DO NOTHING" + returning.format("person_key"),
        )
        self._insert_conflicts = BulkInsert(
            identity_conflicts,
            ("event_id", "identifier", "kept_key", "other_key", "recorded_at"),
            dialect,
            suffix="ON CONFLICT DO NOTHING",
        )

    def resolve(self, conn: Connection, claims: Sequence[Claim], now: datetime) -> Resolution:
        """Each claim's person key and identities, in `conn`'s transaction."""
        first_seen: dict[str, datetime] = {}
        for claim in claims:
            for identifier in claim.identifiers:
                first_seen.setdefault(identifier, claim.received_at)
        wanted = sorted(first_seen)
        known = self._owners(conn, wanted)
        inserted: dict[str, str] = {}
        # Each round that loses an identifier to another transaction learns its owner,
        # so rounds are bounded by the number of identifiers.
        for _ in range(len(wanted) + 1):
            plan = _plan(claims, known)
            self._remap(conn, {i: k for i, k in plan.joins.items() if inserted.get(i, k) != k})
            inserted.update({i: k for i, k in plan.joins.items() if i in inserted})
            fresh = sorted((i, k) for i, k in plan.joins.items() if i not in inserted)
            won = self._inserted(
                conn,
                self._insert_identities,
                [self._insert_identities.bind((i, k, first_seen[i])) for i, k in fresh],
            )
            inserted.update({i: k for i, k in fresh if i in won})
            lost = [i for i, _k in fresh if i not in won]
            if not lost:
                break
            known.update(self._owners(conn, lost))
        else:  # pragma: no cover - each round adds to `known`
            raise RuntimeError("identity resolution did not settle")
        keys = self._create_persons(conn, plan, claims, now)
        self._touch(conn, sorted({k for k in keys if k not in plan.new_persons}), now)
        resolved = self._with_identities(conn, claims, keys, plan)
        conflicts = [(e, i, _renamed(kept, keys, plan), o, now) for e, i, kept, o in plan.conflicts]
        return Resolution(resolved, [self._insert_conflicts.bind(row) for row in conflicts])

    def _inserted(
        self, conn: Connection, insert: BulkInsert, rows: Sequence[tuple[Any, ...]]
    ) -> set[Any]:
        """Insert `rows` (`ON CONFLICT DO NOTHING`); the first column of those stored."""
        if self._exclusive_writer:
            # Every row was looked up as absent in this transaction (see __init__).
            insert.execute(conn, rows)
            return {row[0] for row in rows}
        return {row[0] for row in insert.execute(conn, rows)}

    def _existing_persons(self, conn: Connection, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = tuple(keys[start : start + _IN_CHUNK])
            sql = (
                "SELECT person_key FROM persons "  # noqa: S608
                f"WHERE person_key IN ({', '.join([self._placeholder] * len(chunk))})"
            )
            found.update(row[0] for row in driver_execute(conn, sql, chunk))
        return found

    def record_conflicts(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            self._insert_conflicts.execute(conn, rows)

    def _owners(self, conn: Connection, identifiers: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(identifiers), _IN_CHUNK):
            chunk = tuple(identifiers[start : start + _IN_CHUNK])
            sql = (
                "SELECT identifier, person_key FROM identities "  # noqa: S608
                f"WHERE identifier IN ({', '.join([self._placeholder] * len(chunk))})"
            )
            found.update((row[0], row[1]) for row in driver_execute(conn, sql, chunk))
        return found

    def _remap(self, conn: Connection, moves: dict[str, str]) -> None:
        """Give identifiers this transaction inserted to another person (PostgreSQL, after
        another transaction was first to one of the event's identifiers)."""
        for identifier, key in sorted(moves.items()):
            conn.execute(
                update(identities)
                .where(identities.c.identifier == identifier)
                .values(person_key=key)
            )

    def _create_persons(
        self, conn: Connection, plan: _Plan, claims: Sequence[Claim], now: datetime
    ) -> list[str]:
        """Insert the group's new persons; the claims' keys, after any rename.

        A key made from a provider lead id (`leadhub:4242`) can already be another
        person's (the same id at another source of that provider): that person keeps it
        and the new one is keyed by its source-qualified identifier instead.
        """
        if not plan.new_persons:
            return plan.keys
        candidates = sorted(plan.new_persons)
        if self._exclusive_writer:
            # Identifiers were looked up, persons were not: a new key can be an existing
            # person's (see above), which the plain insert would skip.
            taken = self._existing_persons(conn, candidates)
            candidates = [k for k in candidates if k not in taken]
        rows = [self._insert_persons.bind((k, now, now)) for k in candidates]
        won = self._inserted(conn, self._insert_persons, rows)
        renames = {k: plan.new_persons[k] for k in plan.new_persons if k not in won}
        for old, new in sorted(renames.items()):
            conn.execute(
                update(identities)
                .where(
                    identities.c.person_key == old,
                    identities.c.identifier.in_([i for i, k in plan.joins.items() if k == old]),
                )
                .values(person_key=new)
            )
            self._insert_persons.execute(conn, [self._insert_persons.bind((new, now, now))])
            plan.new_persons[new] = new
            for identifier, key in list(plan.joins.items()):
                if key == old:
                    plan.joins[identifier] = new
        return [renames.get(k, k) for k in plan.keys]

    def _touch(self, conn: Connection, keys: Sequence[str], now: datetime) -> None:
        if keys:
            conn.execute(
                _TOUCH, {"b_keys": list(keys), "b_now": now, "b_stale": now - _TOUCH_EVERY}
            )

    def _with_identities(
        self, conn: Connection, claims: Sequence[Claim], keys: Sequence[str], plan: _Plan
    ) -> list[Resolved]:
        earlier = sorted({k for k in keys if k not in plan.new_persons})
        held: dict[str, list[str]] = {k: [] for k in keys}
        for start in range(0, len(earlier), _IN_CHUNK):
            chunk = tuple(earlier[start : start + _IN_CHUNK])
            sql = (
                "SELECT person_key, identifier FROM identities "  # noqa: S608
                f"WHERE person_key IN ({', '.join([self._placeholder] * len(chunk))}) "
                "ORDER BY first_seen_at, identifier"
            )
            for key, identifier in driver_execute(conn, sql, chunk):
                if identifier not in plan.joins:
                    held[key].append(identifier)
        out = []
        for claim, key in zip(claims, keys, strict=True):
            # Oldest first, and within one event by name, as `find_person` lists them.
            held[key].extend(
                sorted(
                    i for i in claim.identifiers if plan.joins.get(i) == key and i not in held[key]
                )
            )
            out.append(Resolved(key, json.dumps(held[key])))
        return out


def _plan(claims: Sequence[Claim], known: dict[str, str]) -> _Plan:
    owner = dict(known)
    keys: list[str] = []
    joins: dict[str, str] = {}
    new_persons: dict[str, str] = {}
    conflicts: list[tuple[str, str, str, str]] = []
    taken = set(known.values())
    for claim in claims:
        matches = [(i, owner[i]) for i in claim.identifiers if i in owner]
        if matches:
            key = matches[0][1]
            conflicts.extend(
                (claim.event_id, i, key, other) for i, other in matches[1:] if other != key
            )
        else:
            key = claim.proposed_key
            if key in taken:
                key = claim.identifiers[0]
            new_persons[key] = claim.identifiers[0]
            taken.add(key)
        for identifier in claim.identifiers:
            if identifier not in owner:
                owner[identifier] = joins[identifier] = key
        keys.append(key)
    return _Plan(keys, joins, new_persons, conflicts)


def _renamed(key: str, keys: Sequence[str], plan: _Plan) -> str:
    """`key` after `_create_persons` (a plan key, or the renamed one)."""
    for planned, final in zip(plan.keys, keys, strict=True):
        if planned == key:
            return final
    return key


_TOUCH = (
    update(persons)
    .where(
        persons.c.person_key.in_(bindparam("b_keys", expanding=True)),
        persons.c.last_event_at < bindparam("b_stale"),
    )
    .values(last_event_at=bindparam("b_now"))
)
