"""The Salesforce connector: prepares each event's record, writes a batch, logs Tasks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from simple_salesforce import Salesforce, format_soql

from leadrelay.connectors._http import chunks
from leadrelay.connectors._mapping import clean_text, previous_emails, utf16_len
from leadrelay.connectors.salesforce.batching import (
    COLLECTION_LIMIT,
    LOOKUP_CHUNK,
    Item,
    coalesce,
    rounds,
)
from leadrelay.connectors.salesforce.client import BatchFailure, SalesforceSession
from leadrelay.connectors.salesforce.mapping import (
    FIELD_LENGTHS,
    build_record,
    build_records,
    task_record,
)
from leadrelay.connectors.salesforce.options import SalesforceOptions
from leadrelay.core.delivery.contract import (
    ConnectionCheckFailed,
    Connector,
    Delivered,
    Outcome,
    Permanent,
    Retryable,
    Skipped,
)
from leadrelay.core.schema import LeadEvent

COLLECTIONS_PATH = "composite/sobjects"


class SalesforceConnector(Connector[SalesforceOptions]):
    """Leads into Salesforce (Lead by default); see the package docstring for the rules."""

    type_name: ClassVar[str] = "salesforce"
    options_model: ClassVar[type[SalesforceOptions]] = SalesforceOptions
    batch_size: ClassVar[int] = COLLECTION_LIMIT

    def __init__(self, name: str, options: SalesforceOptions) -> None:
        super().__init__(name, options)
        self._session = SalesforceSession(options)

    # -- public API ---------------------------------------------------------------------

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        items: list[Item] = []
        for index, event in enumerate(batch):
            prepared = self._prepare(index, event)
            if isinstance(prepared, Item):
                items.append(prepared)
            else:
                outcomes[index] = prepared
        items = coalesce(items)
        if items:
            with self._session.lock:
                try:
                    for round_items in rounds(items):
                        for chunk in chunks(round_items, COLLECTION_LIMIT):
                            results = self._session.call(
                                lambda client, c=chunk: self._deliver(client, c)
                            )
                            for index, outcome in results.items():
                                outcomes[index] = outcome
                except BatchFailure as failure:
                    # Stop at the first call-wide failure: the next call would meet it too.
                    for item in items:
                        if outcomes[item.index] is None:
                            outcomes[item.index] = failure.outcome
                for item in items:
                    for index in item.merged:
                        outcomes[index] = outcomes[item.index]
                # Also after a failure: records written before it are Delivered and would
                # not be retried, so their Tasks are logged now (or their outcome becomes
                # the Task's failure, and the retry writes them again).
                self._log_tasks(batch, items, outcomes)
        return [
            outcome if outcome is not None else Retryable("no result from Salesforce")
            for outcome in outcomes
        ]

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        plan = self._record_plan(event)
        writes = plan["action"] not in ("skip", "archive")
        if event.activity is not None and writes and self._logs_tasks():
            written_id = f"<Id of the {self.options.object} written above>"
            plan["then_log_task"] = {
                "method": "POST",
                "path": self._api_path(COLLECTIONS_PATH),
                "body": self._collection_body([task_record(event, written_id)], "Task"),
            }
        return plan

    def _record_plan(self, event: LeadEvent) -> dict[str, Any]:
        prepared = self._prepare(0, event)
        if not isinstance(prepared, Item):
            return {"action": "skip", "reason": prepared.message}
        collections = self._api_path(COLLECTIONS_PATH)
        if self.options.external_id_field and not prepared.archive:
            path = f"{collections}/{self.options.object}/{self.options.external_id_field}"
            plan: dict[str, Any] = {
                "action": "upsert",
                "method": "PATCH",
                "path": path,
                "body": self._collection_body([prepared.update]),
            }
            if prepared.update != prepared.record:
                plan["if_new_record"] = {
                    "method": "PATCH",
                    "path": path,
                    "body": self._collection_body([prepared.record]),
                }
            return plan
        lookup = {
            "method": "GET",
            "path": self._api_path("query"),
            "q": self._lookup_soql([prepared]),
        }
        found_id = f"<Id of the {self.options.object} found>"
        if prepared.archive:
            return {
                "action": "archive",
                "lookup": lookup,
                "if_found": {
                    "method": "PATCH",
                    "path": collections,
                    "body": self._collection_body([self._archive_record(found_id)]),
                },
                "if_not_found": {"action": "skip"},
            }
        return {
            "action": "find_by_email",
            "lookup": lookup,
            "if_found": {
                "method": "PATCH",
                "path": collections,
                "body": self._collection_body([{**prepared.update, "id": found_id}]),
            },
            "if_not_found": {
                "method": "POST",
                "path": collections,
                "body": self._collection_body([prepared.record]),
            },
        }

    def check_connection(self) -> None:
        describe = self._describe(self.options.object)
        fields = {f["name"].lower(): f for f in describe.get("fields", [])}
        problems = []
        if not describe.get("createable") or not describe.get("updateable"):
            problems.append(f"this user cannot create and update {self.options.object} records")
        ext = self.options.external_id_field
        if ext:
            spec = fields.get(ext.lower())
            if spec is None:
                problems.append(f"{self.options.object} has no field {ext}")
            elif not spec.get("externalId"):
                problems.append(f"{ext} is not marked as an External ID field")
        mapped = [name for name, source in self.options.mapping().items() if source is not None]
        unknown = [name for name in mapped if name.lower() not in fields]
        if unknown:
            problems.append(
                f"{self.options.object} has no field(s) {', '.join(unknown)}; "
                "fix them or drop them with field_map: {Field: null}"
            )
        if self._logs_tasks() and not self._describe("Task").get("createable"):
            problems.append(
                "this user cannot create Task records, which activity events log; grant "
                "Create on Task or set activity_tasks: false"
            )
        if problems:
            raise ConnectionCheckFailed("; ".join(problems))

    def _describe(self, sobject: str) -> dict[str, Any]:
        path = f"sobjects/{sobject}/describe"
        with self._session.lock:
            try:
                return self._session.call(lambda client: client.restful(path)) or {}
            except BatchFailure as failure:
                raise ConnectionCheckFailed(failure.outcome.message) from None

    def close(self) -> None:
        self._session.close()

    # -- preparing records --------------------------------------------------------------

    def _prepare(self, index: int, event: LeadEvent) -> Item | Skipped:
        archive = event.type == "lead.deleted"
        if archive and self.options.on_delete != "archive":
            return Skipped("lead.deleted: CRM records are never deleted (on_delete: skip)")
        record, update = build_records(event, self.options)
        ext = self.options.external_id_field
        if ext:
            return Item(index, record, record[ext], archive, update)
        email = clean_text(event.lead.email)
        if not email:
            return Skipped("lead has no email to find it by; set external_id_field to upsert it")
        if utf16_len(email) > FIELD_LENGTHS["Email"]:
            return Skipped(
                "email is longer than Salesforce's 80-character Email field, so the lead "
                "cannot be found by it; set external_id_field to upsert it"
            )
        return Item(index, record, email, archive, update, earlier=previous_emails(event.lead))

    def build_record(self, event: LeadEvent) -> dict[str, Any]:
        """The field values sent for `event` (no `attributes`, no `id`)."""
        return build_record(event, self.options)

    def _archive_record(self, record_id: str) -> dict[str, Any]:
        return {"id": record_id, "Status": self.options.archive_status}

    def _api_path(self, path: str) -> str:
        return f"/services/data/v{self.options.api_version}/{path}"

    def _collection_body(
        self, records: Sequence[dict[str, Any]], sobject: str | None = None
    ) -> dict[str, Any]:
        kind = sobject or self.options.object
        typed = [{"attributes": {"type": kind}, **record} for record in records]
        return {"allOrNone": False, "records": typed}

    def _identity_field(self) -> str:
        return self.options.external_id_field or "Email"

    def _lookup_soql(self, items: Sequence[Item]) -> str:
        field_name = self._identity_field()
        converted = " AND IsConverted = false" if self.options.object == "Lead" else ""
        return format_soql(
            "SELECT Id, {field:literal} FROM {object:literal} "
            "WHERE {field:literal} IN {values}{converted:literal} "
            "ORDER BY LastModifiedDate DESC",
            field=field_name,
            object=self.options.object,
            values=sorted({value for item in items for value in (item.identity, *item.earlier)}),
            converted=converted,
        )

    # -- talking to Salesforce ----------------------------------------------------------

    def _deliver(self, client: Salesforce, chunk: Sequence[Item]) -> dict[int, Outcome]:
        """Send one chunk (≤ 200 items, one per lead); one outcome per item."""
        outcomes: dict[int, Outcome] = {}
        upserts: list[Item] = []
        matched: list[Item] = []  # found by a lookup first: Email mode, and archiving
        for item in chunk:
            upserting = self.options.external_id_field and not item.archive
            (upserts if upserting else matched).append(item)
        if upserts:
            outcomes.update(self._upsert(client, upserts))
        if not matched:
            return outcomes
        found = self._lookup(client, matched)
        updates: list[tuple[Item, dict[str, Any]]] = []
        creates: list[Item] = []
        for item in matched:
            record_id = found.get(item.identity_key) or next(
                (found[e.lower()] for e in item.earlier if e.lower() in found), None
            )
            if record_id is None and item.archive:
                outcomes[item.index] = Skipped(
                    f"no {self.options.object} with {self._identity_field()} "
                    f"{item.identity!r} in Salesforce; nothing to archive"
                )
            elif record_id is None:
                creates.append(item)
            elif item.archive:
                updates.append((item, self._archive_record(record_id)))
            else:
                updates.append((item, {**item.update, "id": record_id}))
        if updates:
            outcomes.update(
                self._collection(
                    client,
                    "PATCH",
                    COLLECTIONS_PATH,
                    [u[0] for u in updates],
                    [u[1] for u in updates],
                )
            )
        if creates:
            outcomes.update(
                self._collection(
                    client, "POST", COLLECTIONS_PATH, creates, [i.record for i in creates]
                )
            )
        return outcomes

    def _upsert(self, client: Salesforce, items: Sequence[Item]) -> dict[int, Outcome]:
        """Upsert without fallback values; records Salesforce had to create (and refused for
        a missing required field) are sent again with them."""
        path = f"{COLLECTIONS_PATH}/{self.options.object}/{self.options.external_id_field}"
        results = self._send_records(client, "PATCH", path, [i.update for i in items])
        outcomes: dict[int, Outcome] = {}
        new_records: list[Item] = []
        for item, result in zip(items, results, strict=True):
            if item.record != item.update and _missing_required_field(result):
                new_records.append(item)
            else:
                outcomes[item.index] = self._record_outcome(item, result, "PATCH")
        if new_records:
            outcomes.update(
                self._collection(
                    client, "PATCH", path, new_records, [i.record for i in new_records]
                )
            )
        return outcomes

    def _log_tasks(
        self, batch: Sequence[LeadEvent], items: Sequence[Item], outcomes: list[Outcome | None]
    ) -> None:
        """A completed Task on each written record whose event carries an activity.

        After the record, since the Task points at it. A Task cannot be upserted: if its
        creation fails the event's outcome is the Task's (a retry writes the record again,
        which is idempotent, and creates the Task), so a Task whose answer was lost after
        Salesforce stored it is created twice: at-least-once, like HubSpot's notes.
        """
        if not self._logs_tasks():
            return
        pending = [
            (item, index)
            for item in items
            for index in item.indices
            if item.record_id
            and not item.archive
            and batch[index].activity is not None
            and isinstance(outcomes[index], Delivered)
        ]
        for chunk in chunks(pending, COLLECTION_LIMIT):
            records = [task_record(batch[index], item.record_id or "") for item, index in chunk]
            results: Sequence[dict[str, Any] | Outcome]
            try:
                results = self._session.call(
                    lambda client, r=records: self._send_records(
                        client, "POST", COLLECTIONS_PATH, r, "Task"
                    )
                )
            except BatchFailure as failure:
                results = [failure.outcome] * len(chunk)
            for (_item, index), result in zip(chunk, results, strict=True):
                written = outcomes[index]
                assert isinstance(written, Delivered)
                outcomes[index] = self._with_task(written, result)

    def _logs_tasks(self) -> bool:
        return self.options.activity_tasks

    def _with_task(self, written: Delivered, result: dict[str, Any] | Outcome) -> Outcome:
        if isinstance(result, dict):
            if result.get("success"):
                return Delivered(f"{written.message}; logged Task {result.get('id')}")
            result = self._session.record_failure(result)
        if isinstance(result, Permanent):
            return Permanent(
                f"{written.message}, but Salesforce refused its Task: {result.message}"
            )
        return result

    def _lookup(self, client: Salesforce, items: Sequence[Item]) -> dict[str, str]:
        """Lower-cased identity -> Id of the matching record (most recently modified)."""
        field_name = self._identity_field().lower()
        found: dict[str, str] = {}
        for chunk in chunks(items, LOOKUP_CHUNK):
            result = client.query_all(self._lookup_soql(chunk))
            for row in result.get("records", []):
                value = next((v for k, v in row.items() if k.lower() == field_name), None)
                if isinstance(value, str):
                    found.setdefault(value.lower(), row["Id"])
        return found

    def _collection(
        self,
        client: Salesforce,
        method: str,
        path: str,
        items: Sequence[Item],
        records: Sequence[dict[str, Any]],
    ) -> dict[int, Outcome]:
        results = self._send_records(client, method, path, records)
        return {
            item.index: self._record_outcome(item, result, method)
            for item, result in zip(items, results, strict=True)
        }

    def _send_records(
        self,
        client: Salesforce,
        method: str,
        path: str,
        records: Sequence[dict[str, Any]],
        sobject: str | None = None,
    ) -> list[dict[str, Any]]:
        """One sObject Collections call; its per-record results, one per record."""
        body = json.dumps(self._collection_body(records, sobject))
        results = client.restful(path, method=method, data=body)
        if not isinstance(results, list) or len(results) != len(records):
            raise BatchFailure(
                Retryable(
                    f"Salesforce answered {path} with {len(results or [])} results "
                    f"for {len(records)} records"
                )
            )
        return results

    def _record_outcome(self, item: Item, result: dict[str, Any], method: str) -> Outcome:
        if result.get("success"):
            item.record_id = result.get("id")
            if item.archive:
                verb = "archived"
            elif "created" in result:
                verb = "created" if result["created"] else "updated"
            else:
                verb = "created" if method == "POST" else "updated"
            return Delivered(f"{verb} {self.options.object} {result.get('id')}")
        return self._session.record_failure(result)


def _missing_required_field(result: dict[str, Any]) -> bool:
    return not result.get("success") and any(
        error.get("statusCode") == "REQUIRED_FIELD_MISSING" for error in result.get("errors", [])
    )
