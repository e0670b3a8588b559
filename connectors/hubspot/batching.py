"""Batches of HubSpot inputs: which events go together, and whose is each answer.

A 2xx batch answer (200, 201 or 207) is split back onto its inputs; an input the answer
leaves out is not counted delivered. A refused batch is halved until the refused input
is found, so one bad email does not dead-letter the other 99 leads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from leadrelay.connectors.hubspot.client import HubSpotApi, Reply
from leadrelay.connectors.hubspot.mapping import ContactInput, NoteInput, Plan, match_keys
from leadrelay.core.delivery.contract import Delivered, Outcome, Permanent, Retryable, Skipped

BATCH_LIMIT = 100  # HubSpot's limit for batch upsert, read, archive and create


# A refusal of one of these statuses may concern a single input of a batch, so the batch is
# split to find it; other 4xx (404, 405, ...) are about the request itself.
SPLITTABLE_STATUSES = frozenset({400, 409, 413, 422})

InputT = TypeVar("InputT", ContactInput, NoteInput)


@dataclass(frozen=True)
class Settled:
    """The fate of one batch input: the outcome and, when HubSpot said, the record id."""

    outcome: Outcome
    record_id: str | None = None


def phases(plans: Sequence[Plan]) -> Iterator[tuple[type, list[int]]]:
    """Runs of consecutive upserts or archives, so a delete and a re-create keep their order."""
    current: type | None = None
    indices: list[int] = []
    for index, plan in enumerate(plans):
        if isinstance(plan, Skipped):
            continue
        if type(plan) is not current and indices:
            assert current is not None
            yield current, indices
            indices = []
        current = type(plan)
        indices.append(index)
    if indices and current is not None:
        yield current, indices


def read_batch_reply(
    api: HubSpotApi,
    chunk: list[InputT],
    reply: Reply,
    find: Callable[[Mapping[str, Any]], InputT | None],
    delivered: Callable[[Mapping[str, Any]], Settled],
    by_id: Mapping[str, InputT],
    id_property: str | None,
) -> dict[str, Settled]:
    """Split a 2xx batch answer (200, 201 or 207) back onto its inputs."""
    body = reply.body if isinstance(reply.body, dict) else {}
    settled: dict[str, Settled] = {}
    unplaced_results = []
    for result in body.get("results") or []:
        if not isinstance(result, dict):
            continue
        target = find(result)
        if target is None:
            unplaced_results.append(result)
        else:
            settled[target.trace] = delivered(result)

    untied_errors: list[str] = []
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        context = error.get("context") or {}
        targets = [t for t in chunk if t.trace in (context.get("objectWriteTraceId") or [])]
        if not targets and id_property is not None:
            ids = context.get("ids") or []
            targets = [by_id[key] for key in match_keys(id_property, ids) if key in by_id]
        outcome = api.input_error(error)
        if targets:
            for target in targets:
                settled[target.trace] = Settled(outcome)
        else:
            untied_errors.append(outcome.message)

    missing = [item for item in chunk if item.trace not in settled]
    if len(missing) == len(unplaced_results) == 1 and not untied_errors:
        settled[missing[0].trace] = delivered(unplaced_results[0])
        missing = []
    said_nothing = "results" not in body and "errors" not in body
    if not untied_errors and (said_nothing or len(unplaced_results) == len(missing)):
        # A 2xx with no per-record answer, or one result per record without saying
        # which is whose: HubSpot took them all.
        for item in missing:
            settled[item.trace] = Settled(Delivered(f"HubSpot accepted it (HTTP {reply.status})"))
    else:
        reason = f"HubSpot answered {reply.status} without a result for this record" + (
            f"; errors it did not tie to a record: {'; '.join(untied_errors)}"
            if untied_errors
            else ""
        )
        for item in missing:
            settled[item.trace] = Settled(Retryable(api.clean(reason)))
    return settled


def settle(
    api: HubSpotApi,
    chunk: list[InputT],
    reply: Reply,
    post: Callable[[list[InputT]], Reply],
    read: Callable[[list[InputT], Reply], dict[str, Settled]],
) -> dict[str, Settled]:
    """Per-input results of one batch call; a refused batch is halved to find the culprit."""
    if reply.ok:
        return read(chunk, reply)
    api.stop_if_batch_wide(reply)
    refusal = Permanent(api.failure(reply))
    if reply.status not in SPLITTABLE_STATUSES or len(chunk) == 1:
        return {item.trace: Settled(refusal) for item in chunk}
    middle = len(chunk) // 2
    halves = [chunk[:middle], chunk[middle:]]
    replies = [post(half) for half in halves]
    if all(not r.ok and api.failure(r) == refusal.message for r in replies):
        # Both halves refused with the very same words: the refusal is about the
        # request as a whole (a property HubSpot does not have), not about one record.
        return {item.trace: Settled(refusal) for item in chunk}
    settled: dict[str, Settled] = {}
    for half, half_reply in zip(halves, replies, strict=True):
        settled.update(settle(api, half, half_reply, post, read))
    return settled
