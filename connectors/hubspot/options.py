"""The options of a `type: hubspot` connector (what they mean: the package docstring)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from leadrelay.connectors._mapping import LEAD_FIELDS, path_is_known
from leadrelay.core.delivery.contract import CrmOptions

DEFAULT_BASE_URL = "https://api.hubapi.com"

# Lead field -> HubSpot contact property (all HubSpot default properties).
DEFAULT_PROPERTY_MAP: dict[str, str] = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "title": "jobtitle",
    "company": "company",
    "phone": "phone",
    "website": "website",
    "linkedin_url": "hs_linkedin_url",
}


PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Where a property's value may come from: a lead field or a provider field in `lead.extra`.
SOURCE_SCOPES = frozenset({"extra"})


class HubSpotOptions(CrmOptions):
    """Options of a `type: hubspot` connector (see the package docstring)."""

    type: Literal["hubspot"] = "hubspot"
    access_token: SecretStr
    base_url: str = DEFAULT_BASE_URL
    id_property: str = "email"
    key_property: str | None = None
    properties: dict[str, str | None] = Field(default_factory=dict)
    timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a local test server)")
        return value.rstrip("/")

    @field_validator("id_property", "key_property")
    @classmethod
    def _property_name(cls, value: str | None) -> str | None:
        if value is not None and not PROPERTY_NAME.match(value):
            raise ValueError(f"{value!r} is not a HubSpot internal property name (a-z, 0-9, _)")
        return value

    @field_validator("properties")
    @classmethod
    def _property_map(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        targets: dict[str, str] = {}
        for lead_field, prop in value.items():
            if not path_is_known(lead_field, scopes=SOURCE_SCOPES):
                raise ValueError(
                    f"{lead_field!r} is not a lead field; use one of "
                    f"{', '.join(sorted(LEAD_FIELDS))} or extra.<name>"
                )
            if prop is None:
                continue
            if not PROPERTY_NAME.match(prop):
                raise ValueError(f"{prop!r} is not a HubSpot internal property name (a-z, 0-9, _)")
            if prop in targets:
                raise ValueError(f"{targets[prop]!r} and {lead_field!r} both map to {prop!r}")
            targets[prop] = lead_field
        return value

    @model_validator(mode="after")
    def _id_property_is_filled(self) -> HubSpotOptions:
        if self.id_property != self.key_property and self.id_property not in self.property_map():
            raise ValueError(
                f"id_property {self.id_property!r} is not filled by any lead field: map one to it "
                "in `properties`, or set key_property to the same property"
            )
        return self

    def property_map(self) -> dict[str, str]:
        """HubSpot property -> lead field, defaults overridden by `properties`."""
        claimed = {prop for prop in self.properties.values() if prop is not None}
        result = {
            prop: lead_field
            for lead_field, prop in DEFAULT_PROPERTY_MAP.items()
            if lead_field not in self.properties and prop not in claimed
        }
        result.update({prop: f for f, prop in self.properties.items() if prop is not None})
        return result
