"""The HubSpot connector: plans a batch, upserts contacts, adds notes, archives."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from leadrelay.connectors._http import chunks
from leadrelay.connectors.hubspot.batching import (
    BATCH_LIMIT,
    Settled,
    phases,
    read_batch_reply,
    settle,
)
from leadrelay.connectors.hubspot.client import (
    ARCHIVE_PATH,
    CONTACTS_PATH,
    NOTES_PATH,
    READ_PATH,
    UPSERT_PATH,
    HubSpotApi,
    Reply,
    StopSending,
)
from leadrelay.connectors.hubspot.mapping import (
    RECORD_ID,
    ArchivePlan,
    ContactInput,
    ContactMapper,
    Identity,
    NoteInput,
    Plan,
    UpsertPlan,
    match_keys,
    note_input,
)
from leadrelay.connectors.hubspot.options import HubSpotOptions
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


class HubSpotConnector(Connector[HubSpotOptions]):
    type_name: ClassVar[str] = "hubspot"
    options_model: ClassVar[type[HubSpotOptions]] = HubSpotOptions
    batch_size: ClassVar[int] = BATCH_LIMIT
    delivery_guarantee: ClassVar[str] = "once"

    def __init__(self, name: str, options: HubSpotOptions) -> None:
        super().__init__(name, options)
        self._mapper = ContactMapper(options)
        self._api = HubSpotApi(options)
        self.pacer = self._api.pacer

    # -- public contract ----------------------------------------------------------------

    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        plans = [self._mapper.plan(event) for event in batch]
        outcomes: dict[int, Outcome] = {
            index: plan for index, plan in enumerate(plans) if isinstance(plan, Skipped)
        }
        try:
            for kind, indices in phases(plans):
                if kind is UpsertPlan:
                    self._run_upserts(batch, plans, indices, outcomes)
                else:
                    self._run_archives(plans, indices, outcomes)
        except StopSending as stop:
            # Events settled before the stop keep their outcome; the rest share its fate.
            for index in range(len(batch)):
                outcomes.setdefault(index, stop.outcome)
        return [outcomes[index] for index in range(len(batch))]

    def preview(self, event: LeadEvent) -> dict[str, Any]:
        plan = self._mapper.plan(event)
        if isinstance(plan, Skipped):
            return {
                "connector": self.name,
                "type": self.type_name,
                "requests": [],
                "skipped": plan.message,
            }
        requests: list[dict[str, Any]] = []
        if isinstance(plan, ArchivePlan):
            requests.append(
                self._api.preview_request("POST", READ_PATH, self._api.read_body([plan.identity]))
            )
            requests.append(
                self._api.preview_request(
                    "POST",
                    ARCHIVE_PATH,
                    self._api.archive_body(["<id of the contact found by the read>"]),
                )
            )
        else:
            contact = ContactInput("0", plan.identity, plan.properties, [0])
            requests.append(
                self._api.preview_request("POST", UPSERT_PATH, self._api.upsert_body([contact]))
            )
            if event.activity is not None:
                note = note_input(0, event, "<id of the contact returned by the upsert>")
                requests.append(
                    self._api.preview_request("POST", NOTES_PATH, self._api.notes_body([note]))
                )
        return {"connector": self.name, "type": self.type_name, "requests": requests}

    def check_connection(self) -> None:
        """Read one contact (token and read scope), then send an empty batch upsert.

        The empty upsert writes nothing; HubSpot checks scopes before the body, so a 403
        there names a missing write scope. A 400 about the empty input means it got past it.
        """
        probes: list[tuple[str, Callable[[], Reply], set[int]]] = [
            (f"GET {CONTACTS_PATH}?limit=1", self._api.first_contact_page, set()),
            (
                f"POST {UPSERT_PATH} with no inputs",
                lambda: self._api.upsert([]),
                {400},  # refused for being empty: the token and its scopes passed
            ),
        ]
        for label, request, also_fine in probes:
            try:
                reply = request()
            except StopSending as stop:
                raise ConnectionCheckFailed(f"{label}: {stop.outcome.message}") from None
            if not reply.ok and reply.status not in also_fine:
                raise ConnectionCheckFailed(f"{label}: {self._api.failure(reply)}")

    def close(self) -> None:
        self._api.close()

    # -- upserts and notes ------------------------------------------------------------------

    def _run_upserts(
        self,
        batch: Sequence[LeadEvent],
        plans: Sequence[Plan],
        indices: list[int],
        outcomes: dict[int, Outcome],
    ) -> None:
        plans = self._found_by_earlier_emails(plans, indices)
        # One input per contact: HubSpot refuses a batch that names one id twice.
        inputs: dict[tuple[str, str], ContactInput] = {}
        for index in indices:
            plan = plans[index]
            assert isinstance(plan, UpsertPlan)
            key = (plan.identity.id_property, plan.identity.match_key)
            contact = inputs.get(key)
            if contact is None:
                contact = inputs[key] = ContactInput(str(len(inputs)), plan.identity, {})
            contact.properties.update(plan.properties)
            contact.event_indices.append(index)

        by_property: dict[str, list[ContactInput]] = {}
        for contact in inputs.values():
            by_property.setdefault(contact.identity.id_property, []).append(contact)

        settled: dict[str, Settled] = {}
        stopped: StopSending | None = None
        try:
            for id_property, group in by_property.items():
                write = self._api.update if id_property == RECORD_ID else self._api.upsert
                for chunk in chunks(group, BATCH_LIMIT):
                    reply = write(chunk)
                    settled.update(settle(self._api, chunk, reply, write, self._read_upserts))
        except StopSending as stop:
            stopped = stop

        notes: list[NoteInput] = []
        contact_results: dict[int, Settled] = {}
        for contact in inputs.values():
            result = settled.get(contact.trace)
            if result is None:
                continue
            for index in contact.event_indices:
                contact_results[index] = result
                activity = batch[index].activity
                if not isinstance(result.outcome, Delivered) or activity is None:
                    outcomes[index] = result.outcome
                elif result.record_id is None:
                    outcomes[index] = Retryable(
                        "HubSpot accepted the contact but did not return its id, so the "
                        "activity note could not be attached yet"
                    )
                else:
                    notes.append(note_input(index, batch[index], result.record_id))
        if stopped is not None:
            raise stopped

        for chunk in chunks(notes, BATCH_LIMIT):
            reply = self._api.create_notes(chunk)
            settled_notes = settle(
                self._api, chunk, reply, self._api.create_notes, self._read_notes
            )
            for note in chunk:
                note_result = settled_notes[note.trace]
                contact_outcome = contact_results[note.event_index].outcome
                assert isinstance(contact_outcome, Delivered)
                if isinstance(note_result.outcome, Delivered):
                    outcomes[note.event_index] = Delivered(
                        f"{contact_outcome.message}; {note_result.outcome.message}"
                    )
                elif isinstance(note_result.outcome, Permanent):
                    outcomes[note.event_index] = Permanent(
                        f"{contact_outcome.message}, but HubSpot refused the activity note: "
                        f"{note_result.outcome.message}"
                    )
                else:
                    outcomes[note.event_index] = note_result.outcome

    def _found_by_earlier_emails(self, plans: Sequence[Plan], indices: list[int]) -> list[Plan]:
        """`plans`, where a lead whose email changed is sent to the contact made under an
        earlier email (by its HubSpot id) when none has the current one yet.

        Upserting by the new email alone would make a second contact for the person.
        """
        changed = [
            i for i in indices if isinstance(plans[i], UpsertPlan) and plans[i].previous_emails
        ]
        if not changed:
            return list(plans)
        wanted: dict[str, Identity] = {}
        for index in changed:
            plan = plans[index]
            assert isinstance(plan, UpsertPlan)
            for email in (plan.identity.value, *plan.previous_emails):
                identity = Identity("email", email)
                wanted.setdefault(identity.match_key, identity)
        found: dict[tuple[str, str], str] = {}
        for chunk in chunks(list(wanted.values()), BATCH_LIMIT):
            found.update(self._find_contacts(chunk, {}))
        relinked = list(plans)
        for index in changed:
            plan = plans[index]
            assert isinstance(plan, UpsertPlan)
            if ("email", plan.identity.match_key) in found:
                continue
            earlier = (
                found.get(("email", Identity("email", e).match_key)) for e in plan.previous_emails
            )
            record_id = next((r for r in earlier if r is not None), None)
            if record_id is not None:
                relinked[index] = UpsertPlan(Identity(RECORD_ID, record_id), plan.properties)
        return relinked

    def _read_upserts(self, chunk: list[ContactInput], reply: Reply) -> dict[str, Settled]:
        by_trace = {contact.trace: contact for contact in chunk}
        by_id = {contact.identity.match_key: contact for contact in chunk}
        id_property = chunk[0].identity.id_property

        def find(result: Mapping[str, Any]) -> ContactInput | None:
            trace = str(result.get("objectWriteTraceId"))
            if trace in by_trace:
                return by_trace[trace]
            value = (result.get("properties") or {}).get(id_property)
            return by_id.get(Identity(id_property, value).match_key) if value else None

        def delivered(result: Mapping[str, Any]) -> Settled:
            record_id = str(result["id"]) if result.get("id") is not None else None
            created = result.get("new")
            verb = "created" if created else "updated" if created is False else "upserted"
            return Settled(Delivered(f"{verb} contact {record_id}"), record_id)

        return read_batch_reply(self._api, chunk, reply, find, delivered, by_id, id_property)

    def _read_notes(self, chunk: list[NoteInput], reply: Reply) -> dict[str, Settled]:
        by_trace = {note.trace: note for note in chunk}
        # HubSpot does not echo objectWriteTraceId on created records; a note is known by
        # its body and timestamp, which it returns as sent.
        by_content: dict[tuple[str, str], list[NoteInput]] = {}
        for note in chunk:
            content = (note.properties["hs_note_body"], note.properties["hs_timestamp"])
            by_content.setdefault(content, []).append(note)

        def find(result: Mapping[str, Any]) -> NoteInput | None:
            if str(result.get("objectWriteTraceId")) in by_trace:
                return by_trace[str(result.get("objectWriteTraceId"))]
            properties = result.get("properties") or {}
            same = by_content.get((properties.get("hs_note_body"), properties.get("hs_timestamp")))
            return same.pop(0) if same else None

        def delivered(result: Mapping[str, Any]) -> Settled:
            return Settled(Delivered(f"added note {result.get('id')}"), str(result.get("id")))

        return read_batch_reply(self._api, chunk, reply, find, delivered, {}, None)

    # -- archives ----------------------------------------------------------------------------

    def _run_archives(
        self, plans: Sequence[Plan], indices: list[int], outcomes: dict[int, Outcome]
    ) -> None:
        by_property: dict[str, dict[str, Identity]] = {}
        for index in indices:
            plan = plans[index]
            assert isinstance(plan, ArchivePlan)
            identity = plan.identity
            by_property.setdefault(identity.id_property, {}).setdefault(
                identity.match_key, identity
            )
        results: dict[tuple[str, str], Outcome] = {}

        def settle_events() -> None:
            for index in indices:
                plan = plans[index]
                assert isinstance(plan, ArchivePlan)
                key = (plan.identity.id_property, plan.identity.match_key)
                if key in results:
                    outcomes[index] = results[key]

        try:
            found: dict[tuple[str, str], str] = {}
            for identities in by_property.values():
                for chunk in chunks(list(identities.values()), BATCH_LIMIT):
                    found.update(self._find_contacts(chunk, results))
            for id_chunk in chunks(sorted(set(found.values())), BATCH_LIMIT):
                reply = self._api.archive(id_chunk)
                if not reply.ok:
                    self._api.stop_if_batch_wide(reply)
                for key, record_id in found.items():
                    if record_id in id_chunk:
                        results[key] = (
                            Delivered(f"archived contact {record_id}")
                            if reply.ok
                            else Permanent(self._api.failure(reply))
                        )
        finally:
            settle_events()

    def _find_contacts(
        self, chunk: list[Identity], results: dict[tuple[str, str], Outcome]
    ) -> dict[tuple[str, str], str]:
        """HubSpot ids of the contacts to archive; records an outcome for those not found."""
        id_property = chunk[0].id_property
        reply = self._api.read(chunk)
        keys = {(identity.id_property, identity.match_key) for identity in chunk}
        if not reply.ok:
            self._api.stop_if_batch_wide(reply)
            refusal = Permanent(self._api.failure(reply))
            results.update(dict.fromkeys(keys, refusal))
            return {}
        found: dict[tuple[str, str], str] = {}
        payload = reply.body if isinstance(reply.body, dict) else {}
        for result in payload.get("results") or []:
            value = (result.get("properties") or {}).get(id_property)
            if isinstance(value, str) and result.get("id") is not None:
                found[(id_property, Identity(id_property, value).match_key)] = str(result["id"])
        for error in payload.get("errors") or []:
            if error.get("category") == "OBJECT_NOT_FOUND":
                continue
            for key in match_keys(id_property, (error.get("context") or {}).get("ids") or []):
                results[(id_property, key)] = self._api.input_error(error)
        for key in keys - found.keys() - results.keys():
            results[key] = Delivered(
                f"no HubSpot contact with {id_property} {key[1]}: nothing to archive"
            )
        return found
