"""HubSpot: every lead becomes a contact (batch upsert), every activity a note on it.

Built on the official `hubspot-api-client` SDK: its models build the request bodies, its
API classes send them (`client.py`). Two of the SDK's defaults are wrong for a delivery engine, so:

* urllib3's default `Retry` re-sends on connect errors but never a POST after a read error;
  the SDK gets `retries=False` and leadrelay's engine owns every retry and its schedule.
* The SDK deserializes only the status codes listed in its spec and returns `None` for any
  other 2xx (and raises on a body missing a field it thinks required). Responses are read
  raw (`_preload_content=False`) and parsed here, so a 201 instead of a 200 loses nothing.

What lands in HubSpot
---------------------
Lead fields go to contact properties through `DEFAULT_PROPERTY_MAP`, changed by the
`properties` option (lead field -> HubSpot property; `null` drops a default; `extra.<name>`
reads a provider field kept in `lead.extra`). A field the lead lacks is not sent, so a later,
thinner event never blanks what an earlier one filled. Derived values: `first_name`/`last_name`
from `full_name` when both are missing, `linkedin_url` from `linkedin_username`.
`location` is not mapped by default: providers send free text ("Berlin", "Remote 🌍"), and
pasted into HubSpot's structured `city` it would spoil territory reports; map it yourself
(`properties: {location: city}`) if your leads' locations are clean.

Identity: contacts are upserted by `id_property` (default `email`, matched case-insensitively
as HubSpot does). A lead without that value is upserted by `key_property` (a unique custom
property you create in HubSpot) holding `lead.key`, or skipped with the reason recorded.
`key_property`, when set, is written on every contact. A lead's key changes once it gains an
email (`github:jdoe` -> `email:...`), so a lead first seen without an email and later with
one becomes two contacts; HubSpot's merge joins them.
Two events for the same contact in one batch become one upsert input (later values win), as
HubSpot refuses a batch that names one id twice.

Activities (`lead.activity`, or any event that carries one) become a note associated with
the contact (`HUBSPOT_DEFINED` type 202, note to contact), created after the upsert. Notes
cannot be upserted: a note whose creation timed out after HubSpot stored it is created again
on retry. Contacts themselves are effectively once.

`lead.deleted` is skipped unless `on_delete: archive`, which archives the contact found by
its id property (a contact that is not there is reported delivered: nothing to archive).

Scopes: `crm.objects.contacts.write` (upserts, archives, notes) and
`crm.objects.contacts.read` (`check_connection`, finding contacts to archive).

Outcomes: 2xx per contact (a 207 is split by `objectWriteTraceId`); 429 waits as HubSpot's
`Retry-After` or `X-HubSpot-RateLimit-*` headers say; 423 (records locked) and 477
(account migrating) are waits too; 401 and 403 are permanent and say whether the token or
which scope is wrong; a 400 for a multi-contact batch is split in halves until the contact
HubSpot refuses is found, so one bad email does not dead-letter the other 99 leads.
"""

from leadrelay.connectors.hubspot.connector import HubSpotConnector
from leadrelay.connectors.hubspot.options import HubSpotOptions

__all__ = ["HubSpotConnector", "HubSpotOptions"]
