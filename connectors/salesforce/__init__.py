"""Salesforce connector: leads into Salesforce Lead records, on `simple-salesforce`.

Authentication (choose one; README "Connectors"):

- `instance_url` + `session_id`: a session obtained elsewhere. It cannot be renewed here, so
  when Salesforce answers INVALID_SESSION_ID the events fail as Permanent "session expired".
- `username` + `password` + `security_token` (+ `domain: login|test`): SOAP login.
  `security_token` may be left out when the org trusts the worker's IP range.
- `consumer_key` + `private_key_file` + `username` (+ `domain`): OAuth 2.0 JWT bearer flow.

The two login modes log in lazily (on the first send that has something to send) and, when
the session has expired (HTTP 401 INVALID_SESSION_ID), log in again once and repeat the
call; if that login is refused, or the fresh session is refused too, the events fail as
Permanent "login failed: ...". `login_url` (default `https://<domain>.salesforce.com`)
points both logins at a My Domain login host or at a test double. The connector logs in
itself (the SDK's own retry-on-401 loop is unbounded for sObject calls and cannot be given
a login URL) and hands simple-salesforce a ready session id and instance.

Writes:

- With `external_id_field` (a Text field marked External ID on the object): sObject
  Collections upsert, up to 200 records per call, keyed by the lead's stable `key`
  (`email:jane@example.com`, `github:jdoe`, ...). Retries update the same record: effectively
  once.
- Without it: the Lead is looked up by Email (SOQL, values escaped with
  `simple_salesforce.format_soql`; converted leads are ignored, the most recently modified
  match wins), then updated, or created when none exists, again through sObject Collections
  (200 per call). Leads without an email cannot be matched and are Skipped with a reason.
  The engine never has two deliveries of one lead in flight at once (per-lead order), so
  two workers cannot both create a Lead for one new email.
- Several events for the same lead in one batch become one write, in order (later values
  win); a `lead.deleted` among them stays a write of its own, in its place. So a batch
  never creates the same lead twice.

Field mapping (Salesforce field -> lead field; `field_map` adds or overrides entries, a
`null` value drops a default): FirstName, LastName, Company, Title, Email, Phone,
City <- location, Website, LeadSource <- lead_source, Description <- `profile_summary`
(bio, LinkedIn and GitHub links, tags). Sources may also be `extra.<key>`,
`activity.<field>` and `event.<source|provider|type|provider_event|occurred_at>`.
Empty values are not sent, so an event never blanks a field another event filled.

Only the Lead object is supported (`object` is refused otherwise at config time): the
default map, the fallbacks and archiving are the Lead's, and on a Contact (no Company, City,
Website) every record would fail with INVALID_FIELD.

Salesforce requires LastName and Company to create a Lead; when the lead lacks them they are
filled from documented fallbacks (unless `field_map` sets them to null). Fallbacks are sent
only to create: an update leaves them out, so they never overwrite a record's real values
(with `external_id_field`, the upsert goes without them and a record Salesforce would have to
create, answered REQUIRED_FIELD_MISSING, is sent again with them):

- LastName: `last_name`; else `full_name` (without a leading `first_name`; a one-word name
  becomes the LastName and FirstName is left out); else the email's local part; else the
  GitHub username; else the LinkedIn username; else `fallback_last_name`.
- Company: `company`; else the email's domain unless it is a free-mail or no-reply domain
  (gmail.com, outlook.com, users.noreply.github.com, ...); else `fallback_company`.

Text values are cut to Salesforce's standard field lengths (FirstName 40, LastName 80,
Company 255, Title 128, Phone 40, City 40, Website 255, Description 32000, ...), counted in
UTF-16 code units as Salesforce counts them, never splitting a character. Email is never
cut (a cut address is a different address): one longer than 80 characters is left out of
Email and noted in Description. Custom fields are not cut; Salesforce's STRING_TOO_LONG
comes back as a Permanent outcome.

Activities (`lead.activity`, or any event that carries one) also log a completed Task on the
written Lead (`Task.WhoId`), after the record:
Subject = what the lead did ("Starred a repository"), Description = the activity's text,
URL and campaign, ActivityDate = when it happened. `activity_tasks: false` turns this off.
A Task cannot be upserted, so one whose creation succeeded but whose answer was lost is
logged again on retry (at-least-once, like HubSpot's notes); a refused Task makes the event
Permanent with the record's own result in the message.

`lead.deleted` is Skipped unless `on_delete: archive`; archiving never deletes: the matching
record (by external id or Email) gets `Status = archive_status` (default
"Closed - Not Converted", a standard Lead status); when there is no such record the event is
Skipped.

Outcomes: REQUEST_LIMIT_EXCEEDED (and HTTP 429) -> RateLimited after Retry-After or
`rate_limit_delay` seconds; UNABLE_TO_LOCK_ROW, SERVER_UNAVAILABLE, other 5xx, 408, network
errors and timeouts -> Retryable; every other error code (REQUIRED_FIELD_MISSING,
STRING_TOO_LONG, INVALID_FIELD, DUPLICATES_DETECTED, MALFORMED_ID, INVALID_TYPE, ...) ->
Permanent with Salesforce's own code and message. No secret (session id, password, security
token) appears in any outcome or repr.
"""

from leadrelay.connectors.salesforce.connector import SalesforceConnector
from leadrelay.connectors.salesforce.options import SalesforceOptions

__all__ = ["SalesforceConnector", "SalesforceOptions"]
