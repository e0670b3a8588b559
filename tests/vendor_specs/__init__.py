"""Vendors' published response schemas, vendored as JSON Schema (each file names its source).

`problems(file, definition, instance)` lists where `instance` breaks the named definition,
so a contract test can show every mismatch at once.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

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
