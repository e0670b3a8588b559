"""The options of a `type: salesforce` connector (what they mean: the package docstring)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator

from leadrelay.connectors._mapping import path_is_known
from leadrelay.core.delivery.contract import CrmOptions

DEFAULT_API_VERSION = "59.0"

PROFILE_SUMMARY = "profile_summary"
DEFAULT_FIELD_MAP: dict[str, str] = {
    "FirstName": "first_name",
    "LastName": "last_name",
    "Company": "company",
    "Title": "title",
    "Email": "email",
    "Phone": "phone",
    "City": "location",
    "Website": "website",
    "LeadSource": "lead_source",
    "Description": PROFILE_SUMMARY,
}


_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
SOURCE_SCOPES = frozenset({"extra", "activity", "event"})
EVENT_SOURCES = frozenset({"source", "provider", "type", "provider_event", "occurred_at"})


def _valid_source(source: str) -> bool:
    return source == PROFILE_SUMMARY or path_is_known(
        source, scopes=SOURCE_SCOPES, event_fields=EVENT_SOURCES
    )


class SalesforceOptions(CrmOptions):
    """Options of a `type: salesforce` connector (see the package docstring)."""

    type: str = "salesforce"
    # auth: session
    instance_url: str | None = None
    session_id: SecretStr | None = None
    # auth: username/password (SOAP) and JWT
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    consumer_key: str | None = None
    private_key_file: FilePath | None = None
    domain: str = Field(default="login", pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    login_url: str | None = None
    # what to write
    object: str = "Lead"
    external_id_field: str | None = None
    api_version: str = DEFAULT_API_VERSION
    field_map: dict[str, str | None] = Field(default_factory=dict)
    fallback_last_name: str = Field(default="[not provided]", min_length=1)
    fallback_company: str = Field(default="[not provided]", min_length=1)
    archive_status: str = Field(default="Closed - Not Converted", min_length=1)
    # Activity events also log a completed Task on the Lead or Contact (Task.WhoId).
    activity_tasks: bool = True
    # transport
    verify: bool | str = True  # CA bundle path, or False (never in production)
    # Inside the default delivery lease (30 s) with its margin.
    timeout: float = Field(default=20.0, gt=0)
    rate_limit_delay: float = Field(default=60.0, ge=0)

    @field_validator("object", "external_id_field")
    @classmethod
    def _api_name(cls, value: str | None) -> str | None:
        if value is not None and not _API_NAME.match(value):
            raise ValueError(f"{value!r} is not a Salesforce API name")
        return value

    @field_validator("object")
    @classmethod
    def _supported_object(cls, value: str) -> str:
        # The default field map, the Company fallback, the IsConverted lookup and archiving
        # (Status) are the Lead object's: on a Contact or an Account the call would fail
        # with INVALID_FIELD for every record, so such a configuration is refused up front.
        if value != "Lead":
            raise ValueError(
                f"object {value!r} is not supported: the connector writes Lead records only "
                "(its fields, fallbacks and archiving are the Lead object's)"
            )
        return value

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.removeprefix("v")
        if not re.fullmatch(r"\d{2,3}\.0", value):
            raise ValueError(f"{value!r} is not an API version like 59.0")
        return value

    @field_validator("instance_url", "login_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        # simple-salesforce only speaks HTTPS: an http:// URL would be silently upgraded.
        if value is not None:
            if not re.fullmatch(r"https://[^/\s?#]+/?", value):
                raise ValueError(
                    "must be an https:// URL with no path, like https://acme.my.salesforce.com"
                )
            value = value.rstrip("/")
        return value

    @field_validator("verify")
    @classmethod
    def _ca_bundle_exists(cls, value: bool | str) -> bool | str:
        # requests raises OSError (not a RequestException) for a missing bundle: refuse early.
        if isinstance(value, str) and not Path(value).exists():
            raise ValueError(f"CA bundle {value!r} does not exist")
        return value

    @field_validator("field_map")
    @classmethod
    def _field_map(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for sf_field, source in value.items():
            if not _API_NAME.match(sf_field):
                raise ValueError(f"{sf_field!r} is not a Salesforce field API name")
            if source is not None and not _valid_source(source):
                raise ValueError(
                    f"{sf_field}: {source!r} is not a lead field, {PROFILE_SUMMARY}, "
                    "extra.<key>, activity.<field> or event.<field>"
                )
        return value

    @model_validator(mode="after")
    def _one_auth_mode(self) -> SalesforceOptions:
        modes = []
        if self.session_id is not None or self.instance_url is not None:
            modes.append("session")
        if self.password is not None or self.security_token is not None:
            modes.append("password")
        if self.consumer_key is not None or self.private_key_file is not None:
            modes.append("jwt")
        if len(modes) != 1:
            raise ValueError(
                "choose exactly one way to authenticate: instance_url + session_id, "
                "or username + password + security_token, "
                "or consumer_key + private_key_file + username"
            )
        required = {
            "session": ("instance_url", "session_id"),
            "password": ("username", "password"),
            "jwt": ("consumer_key", "private_key_file", "username"),
        }[modes[0]]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{modes[0]} authentication also needs: {', '.join(missing)}")
        if modes[0] == "session" and self.username is not None:
            raise ValueError("username is not used with session_id; remove one of them")
        return self

    @property
    def auth_mode(self) -> Literal["session", "password", "jwt"]:
        if self.session_id is not None:
            return "session"
        return "password" if self.password is not None else "jwt"

    @property
    def effective_login_url(self) -> str:
        return self.login_url or f"https://{self.domain}.salesforce.com"

    def mapping(self) -> dict[str, str | None]:
        return {**DEFAULT_FIELD_MAP, **self.field_map}
