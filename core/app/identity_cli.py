"""`connectors identities show|merge` and `connectors forget`: the identity map by hand."""

from __future__ import annotations

import json

import click

from leadrelay.core.app.cli_common import CONFIG_OPTION, existing_store, load, log_options
from leadrelay.core.app.cli_output import json_default, print_rows
from leadrelay.core.store.store import Store, UnknownPerson


def _store(config_path: str | None) -> Store:
    return existing_store(load(config_path))


@click.group()
def identities() -> None:
    """The identity map: which emails, usernames and lead ids are one person."""


@identities.command("show")
@CONFIG_OPTION
@click.argument("who")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of tables.")
@log_options
def show(config_path: str | None, who: str, as_json: bool) -> None:
    """A person's identifiers, events and conflicts (WHO: lead key, email or identifier)."""
    store = _store(config_path)
    try:
        person = store.find_person(who)
    except UnknownPerson as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(person, default=json_default, indent=2))
        return
    click.echo(f"person {person['key']}")
    click.echo("identifiers:")
    print_rows(person["identifiers"], ["identifier", "first_seen_at"], False)
    click.echo("events:")
    print_rows(
        person["events"],
        ["event_id", "received_at", "source", "type", "provider_event"],
        False,
    )
    click.echo("conflicts:")
    print_rows(person["conflicts"], ["event_id", "identifier", "kept_key", "other_key"], False)


@identities.command("merge")
@CONFIG_OPTION
@click.argument("keep")
@click.argument("other")
@log_options
def merge(config_path: str | None, keep: str, other: str) -> None:
    """Make OTHER the same person as KEEP, which keeps its key.

    OTHER's identifiers and stored events take KEEP's key, so its later events and
    queued deliveries carry it. Records already written to destinations under
    OTHER's key stay there: merge them in the CRM too.
    """
    store = _store(config_path)
    try:
        merged = store.merge_persons(keep, other)
    except (UnknownPerson, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"merged into {keep}: {merged['identifiers']} identifier(s) and "
        f"{merged['events']} stored event(s) moved, "
        f"{merged['conflicts_settled']} conflict(s) settled"
    )


@click.command()
@CONFIG_OPTION
@click.argument("who")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@log_options
def forget(config_path: str | None, who: str, yes: bool) -> None:
    """Delete what leadrelay stores about a person (WHO: lead key, email or identifier).

    Removes the person's events (payloads), deliveries (pending ones too) with their
    attempts, identity entries and conflicts. Keeps the idempotency keys, which hold
    no personal data, so a provider retrying one of the events is still a duplicate.
    Destinations (CRMs, CSV files, webhooks) are not touched.
    """
    if not yes:
        click.confirm(f"Delete everything stored about {who}?", abort=True)
    store = _store(config_path)
    try:
        removed = store.forget_person(who)
    except UnknownPerson as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(
        f"forgot {removed['key']}: {removed['events']} event(s) with their payloads, "
        f"{removed['deliveries']} delivery(ies), {removed['attempts']} attempt(s), "
        f"{len(removed['identifiers'])} identifier(s), {removed['conflicts']} conflict(s)"
    )
    for identifier in removed["identifiers"]:
        click.echo(f"  identifier {identifier}")
    click.echo("kept: the idempotency keys (no personal data), so provider retries stay duplicates")
    click.echo(
        "not touched: destinations (HubSpot, Salesforce, CSV files, webhooks); delete the "
        "person there too"
    )
