"""How a batch of Salesforce writes is cut: one item per event, rounds per lead, chunks."""

from __future__ import annotations

from dataclasses import dataclass
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

    @property
    def update(self) -> dict[str, Any]:
        return self.record if self.update_record is None else self.update_record

    @property
    def identity_key(self) -> str:
        return self.identity.lower()  # Salesforce matches both case-insensitively


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
