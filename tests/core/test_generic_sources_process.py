"""Generic sources end to end: a real `connectors serve` process, signed requests, and the
leads it writes through the CSV sink; replay after a fixed mapping; `connectors trigger`
and a bad expression at startup."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from leadrelay.core.store.store import EventFilter, Store
from tests.process import ServeProcess, killed_after, run_connectors, write_config

TIMEOUT_S = 10
DELIVERY_TIMEOUT_S = 30
FORMS_SECRET = "forms-process-secret"
SIGNUPS_SECRET = "whsec_" + base64.b64encode(b"signups-process-secret-32-bytes!").decode()
EMAIL_ANSWER = "form_response.answers[?type=='email'].email | [0]"


def forms_source(email: str = EMAIL_ANSWER) -> dict[str, Any]:
    return {
        "provider": "hmac",
        "secrets": [FORMS_SECRET],
        "signature": {
            "header": "X-Forms-Signature",
            "encoding": "base64",
            "prefix": "sha256=",
            "timestamp_header": "X-Forms-Timestamp",
            "tolerance": "5m",
        },
        "event_id": "event_id",
        "event": "event_type",
        "occurred_at": "form_response.submitted_at",
        "types": {"form_response": "lead.created", "form_deleted": None},
        "lead": {
            "email": email,
            "company": "form_response.hidden.company",
            "first_name": "form_response.hidden.first_name",
        },
    }


def signups_source() -> dict[str, Any]:
    return {
        "provider": "standard-webhooks",
        "secrets": [SIGNUPS_SECRET],
        "types": {"user.created": "lead.created"},
        "lead": {
            "email": "data.email_addresses[0].email_address",
            "first_name": "data.first_name",
        },
    }


def serve_config(directory: Path, forms: dict[str, Any]) -> Path:
    return write_config(
        directory / "connectors.yaml",
        {
            "store": f"sqlite:///{directory / 'leadrelay.db'}",
            "sources": {"forms": forms, "signups": signups_source()},
            "connectors": {"archive": {"type": "csv", "path": str(directory / "leads.csv")}},
        },
    )


def form(n: int, *, event_type: str = "form_response", **response: Any) -> bytes:
    payload = {
        "event_id": f"evt_{n}",
        "event_type": event_type,
        "form_response": {
            "submitted_at": "2026-05-01T09:30:00Z",
            "answers": [
                {"type": "text", "text": "hello"},
                {"type": "email", "email": f"person{n}@example.com"},
            ],
            "hidden": {"company": "Acme", "first_name": f"Person{n}"},
            **response,
        },
    }
    return json.dumps(payload).encode()


def forms_headers(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(FORMS_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Forms-Timestamp": stamp,
        "X-Forms-Signature": "sha256=" + base64.b64encode(digest.digest()).decode(),
    }


def signup(email: str) -> bytes:
    return json.dumps(
        {
            "type": "user.created",
            "timestamp": "2026-05-01T10:00:00Z",
            "data": {"first_name": "Grace", "email_addresses": [{"email_address": email}]},
        }
    ).encode()


def signups_headers(body: bytes, msg_id: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SIGNUPS_SECRET).sign(msg_id, now, body.decode()),
    }


def post(server: ServeProcess, source: str, body: bytes, headers: dict[str, str]) -> Any:
    response = requests.post(
        server.url(f"/webhooks/{source}"), data=body, headers=headers, timeout=TIMEOUT_S
    )
    return response.status_code, response.json()


def csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def wait_for_row(path: Path, email: str) -> dict[str, str]:
    """The CSV row of `email`, once the worker has written it (bounded wait)."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        rows = [row for row in csv_rows(path) if row["email"] == email]
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(f"no CSV row for {email} within {DELIVERY_TIMEOUT_S}s: {csv_rows(path)}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Path]]:
    directory = tmp_path_factory.mktemp("generic")
    with killed_after(ServeProcess(serve_config(directory, forms_source()))) as server:
        yield server, directory


def test_an_hmac_source_delivers_its_mapped_lead_to_the_csv_sink(
    served: tuple[ServeProcess, Path],
) -> None:
    server, directory = served
    body = form(1)
    status, answer = post(server, "forms", body, forms_headers(body))
    assert (status, answer["status"]) == (200, "accepted")
    row = wait_for_row(directory / "leads.csv", "person1@example.com")
    assert (row["source"], row["provider"], row["type"]) == ("forms", "hmac", "lead.created")
    assert (row["first_name"], row["company"]) == ("Person1", "Acme")
    assert row["occurred_at"].startswith("2026-05-01T09:30:00")

    again = post(server, "forms", body, forms_headers(body))
    assert again == (200, {"status": "duplicate", "event_id": answer["event_id"]})


def test_a_missing_path_leaves_the_field_empty(served: tuple[ServeProcess, Path]) -> None:
    server, directory = served
    body = form(2, hidden={})
    status, answer = post(server, "forms", body, forms_headers(body))
    assert (status, answer["status"]) == (200, "accepted")
    row = wait_for_row(directory / "leads.csv", "person2@example.com")
    assert (row["company"], row["first_name"]) == ("", "")


def test_types_route_events_and_ignore_the_others(served: tuple[ServeProcess, Path]) -> None:
    server, _directory = served
    for n, event_type in ((3, "form_deleted"), (4, "form_viewed")):
        body = form(n, event_type=event_type)
        assert post(server, "forms", body, forms_headers(body))[1]["status"] == "ignored"


def test_a_wrong_type_is_quarantined_never_a_500(served: tuple[ServeProcess, Path]) -> None:
    server, _directory = served
    body = form(5, hidden={"company": {"name": "Acme"}})
    status, answer = post(server, "forms", body, forms_headers(body))
    assert (status, answer["status"]) == (202, "quarantined")
    assert "lead.company (form_response.hidden.company): expected a string" in answer["reason"]


def test_an_unsigned_or_stale_request_is_refused(served: tuple[ServeProcess, Path]) -> None:
    server, _directory = served
    body = form(6)
    headers = forms_headers(body)
    headers["X-Forms-Timestamp"] = str(int(time.time()) - 3600)
    assert post(server, "forms", body, headers)[0] == 401
    assert post(server, "forms", body, {"Content-Type": "application/json"})[0] == 401


def test_a_standard_webhooks_source_dedups_on_webhook_id(
    served: tuple[ServeProcess, Path],
) -> None:
    server, directory = served
    body = signup("grace@example.com")
    first = post(server, "signups", body, signups_headers(body, "msg_grace"))
    retry = post(server, "signups", body, signups_headers(body, "msg_grace"))
    assert first[1]["status"] == "accepted"
    assert retry == (200, {"status": "duplicate", "event_id": first[1]["event_id"]})
    row = wait_for_row(directory / "leads.csv", "grace@example.com")
    assert (row["provider"], row["first_name"]) == ("standard-webhooks", "Grace")


def test_connectors_trigger_signs_a_payload_file_for_generic_sources(
    served: tuple[ServeProcess, Path],
) -> None:
    server, directory = served
    config = str(directory / "connectors.yaml")
    payloads = {"forms": form(7), "signups": signup("trigger@example.com")}
    for source, body in payloads.items():
        payload_file = directory / f"{source}.payload.json"
        payload_file.write_bytes(body)
        result = run_connectors(
            ["trigger", "--config", config, source, "--payload", str(payload_file),
             "--url", server.base_url]
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert '"status":"accepted"' in result.stdout
    wait_for_row(directory / "leads.csv", "person7@example.com")
    wait_for_row(directory / "leads.csv", "trigger@example.com")


def test_a_quarantined_event_is_delivered_after_the_mapping_is_fixed(tmp_path: Path) -> None:
    # The mapping forgot `| [0]`: every form is quarantined with a reason saying so.
    config = serve_config(tmp_path, forms_source(email=EMAIL_ANSWER.removesuffix(" | [0]")))
    body = form(8)
    with killed_after(ServeProcess(config)) as server:
        status, answer = post(server, "forms", body, forms_headers(body))
    assert (status, answer["status"]) == (202, "quarantined")
    assert "| [0]" in answer["reason"]

    serve_config(tmp_path, forms_source())
    replay = run_connectors(["replay", "--config", str(config), "--event", answer["event_id"]])
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "now accepted" in replay.stdout
    with killed_after(ServeProcess(config)):
        row = wait_for_row(tmp_path / "leads.csv", "person8@example.com")
    assert row["source"] == "forms"
    store = Store(f"sqlite:///{tmp_path / 'leadrelay.db'}")
    try:
        assert store.get_event(answer["event_id"])["status"] == "replayed"
        assert len(store.list_events(EventFilter(status="accepted"))) == 1
    finally:
        store.close()


def test_a_bad_expression_stops_serve_at_startup_naming_the_key(tmp_path: Path) -> None:
    config = serve_config(tmp_path, forms_source(email="form_response.answers[?type=='email'"))
    result = run_connectors(["serve", "--config", str(config), "--port", "1"])
    assert result.returncode != 0
    assert "sources.forms.lead.email: " in result.stderr
    assert "not a valid JMESPath expression" in result.stderr
    assert "Traceback" not in result.stderr
