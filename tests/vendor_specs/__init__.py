"""Vendors' published response schemas, vendored as JSON Schema (each file names its source).

`problems(file, definition, instance)` lists where `instance` breaks the named definition,
so a contract test can show every mismatch at once; `block_kit_problems(blocks)` lists what
slack_sdk's Block Kit models (their limits and required parts) refuse in a message's blocks.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

_HERE = Path(__file__).resolve().parent

HUBSPOT = "hubspot-crm-v3.schema.json"
SALESFORCE = "salesforce-rest.schema.json"
SLACK = "slack-web-api.schema.json"


@cache
def _document(file: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((_HERE / file).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(document)
    return document


def problems(file: str, definition: str, instance: Any) -> list[str]:
    document = _document(file)
    assert definition in document["$defs"], f"{file} has no definition {definition}"
    validator = Draft202012Validator({**document, "$ref": f"#/$defs/{definition}"})
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


def block_kit_problems(blocks: list[dict[str, Any]]) -> list[str]:
    found = []
    for index, block in enumerate(blocks):
        try:
            parsed = Block.parse(block)
            if parsed is None:
                found.append(f"blocks/{index}: not a block")
                continue
            parsed.validate_json()
        except SlackObjectFormationError as error:
            found.append(f"blocks/{index}: {error}")
    return found
