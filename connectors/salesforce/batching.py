"""How a batch of Salesforce writes is cut: one item per lead's run of updates, rounds per
lead, chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COLLECTION_LIMIT = 200  # sObject Collections accept at most 200 records per call
# Values per `IN (...)` lookup: keeps the query URL far below the REST API's 16 KB URI limit.
LOOKUP_CHUNK = 50


@dataclass
class Item:
    """One event on its way: where its outcome goes and what to send."""

    index: int
    record: dict[str, Any]
    identity: str  # matching value (external id or email), as sent
    archive: bool
    # `record` without the fallback values that only a create needs (None: the same).
    update_record: dict[str, Any] | None = None
    record_id: str | None = None  # once Salesforce has written it
    # Email mode: the person's earlier emails, newest first; a record found by one of
    # them (and none by the current email) is the person's and is updated.
    earlier: tuple[str, ...] = ()
    # Later events of the same lead written with this one (their values won).
    merged: list[int] = field(default_factory=list)

    @property
    def update(self) -> dict[str, Any]:
        return self.record if self.update_record is None else self.update_record

    @property
    def identity_key(self) -> str:
        return self.identity.lower()  # Salesforce matches both case-insensitively

    @property
    def indices(self) -> list[int]:
        """The events this write stands for, in order."""
        return [self.index, *self.merged]


def coalesce(items: list[Item]) -> list[Item]:
    """One write for a lead's consecutive events, in order (later values win); an archive
    stays a write of its own, between what came before and after it."""
    result: list[Item] = []
    latest: dict[str, Item] = {}
    for item in items:
        current = latest.get(item.identity_key)
        if current is not None and not current.archive and not item.archive:
            # As if written one after the other: a create takes the first event's record
            # (fallbacks included) and the later events' updates; an update takes them all.
            current.update_record = {**current.update, **item.update}
            current.record = {**current.record, **item.update}
            current.merged.append(item.index)
            continue
        result.append(item)
        latest[item.identity_key] = item
    return result


def rounds(items: list[Item]) -> list[list[Item]]:
    """Split items so no round holds two for the same lead; order per lead is kept."""
    result: list[list[Item]] = []
    seen: dict[str, int] = {}
    for item in items:
        position = seen.get(item.identity_key, 0)
        seen[item.identity_key] = position + 1
        if position == len(result):
            result.append([])
        result[position].append(item)
    return result
