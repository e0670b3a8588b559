"""The three lifecycles of issue 22 as signed provider bodies: one person each, six events.

- GitLeads lead 31: `lead.created` without email, then `lead.enriched` with it.
- A LeadShark profile visitor, who later gives an email (`email.captured`).
- LeadHub lead 4242, whose email changes in `lead.updated`.
"""

from __future__ import annotations

import json

# (source, body) in the order a provider would send them.
LIFECYCLES: dict[str, list[tuple[str, bytes]]] = {
    "gitleads": [
        (
            "gitleads",
            json.dumps(
                {
                    "event": "lead.created",
                    "timestamp": "2026-04-24T10:31:00Z",
                    "data": {
                        "id": "lead_31",
                        "signal_type": "stargazer",
                        "github_username": "ghuser31",
                        "name": "Gil Lead",
                    },
                }
            ).encode(),
        ),
        (
            "gitleads",
            json.dumps(
                {
                    "event": "lead.enriched",
                    "timestamp": "2026-04-24T11:31:00Z",
                    "data": {
                        "id": "lead_31",
                        "github_username": "ghuser31",
                        "name": "Gil Lead",
                        "email": "gl31@example.com",
                        "company": "Acme",
                    },
                }
            ).encode(),
        ),
    ],
    "leadshark": [
        (
            "leadshark",
            json.dumps(
                {
                    "event": "new.profile.visit",
                    "timestamp": "2026-04-24T10:00:00.000Z",
                    "data": {
                        "visitor": {
                            "name": "Vera Visitor",
                            "linkedin_url": "https://linkedin.com/in/vera-visitor",
                        },
                        "profile_owner": {"id": "ACoAAOWNER", "name": "Your Name"},
                    },
                },
                separators=(",", ":"),
            ).encode(),
        ),
        (
            "leadshark",
            json.dumps(
                {
                    "event": "email.captured",
                    "timestamp": "2026-04-24T12:00:00.000Z",
                    "data": {
                        "lead": {
                            "name": "Vera Visitor",
                            "email": "vera@example.com",
                            "linkedin_username": "vera-visitor",
                        },
                        "automation": {"id": "a-1", "name": "Guide"},
                    },
                },
                separators=(",", ":"),
            ).encode(),
        ),
    ],
    "leadhub": [
        (
            "leadhub",
            json.dumps(
                {
                    "event": "lead.created",
                    "occurred_at": "2026-04-29T10:30:00Z",
                    "lead": {
                        "id": 4242,
                        "first_name": "Ed",
                        "last_name": "Changer",
                        "email": "ed.old@example.com",
                    },
                }
            ).encode(),
        ),
        (
            "leadhub",
            json.dumps(
                {
                    "event": "lead.updated",
                    "occurred_at": "2026-04-29T11:30:00Z",
                    "lead": {
                        "id": 4242,
                        "first_name": "Ed",
                        "last_name": "Changer",
                        "email": "ed.new@example.com",
                    },
                }
            ).encode(),
        ),
    ],
}

# The key each person keeps: assigned at the first event.
PERSON_KEYS = {
    "gitleads": "github:ghuser31",
    "leadshark": "linkedin:vera-visitor",
    "leadhub": "email:ed.old@example.com",
}
