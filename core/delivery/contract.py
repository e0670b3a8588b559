"""The connector contract: options, one `send` per batch, typed outcomes.

Connectors know the lead schema and their own options, never the receiver, the store or
Flask. The delivery engine calls `send(batch)` and gets exactly one outcome per event,
in order; it decides what each outcome means for the schedule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadrelay.core.schema import LEAD_EVENT_TYPES, EventType, Lead, LeadEvent

# -- outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """The destination has the event (created, updated, or already had it).

    `request`: what `send` transmitted for this event, as `preview` shows it, when the
    connector has it at hand. The worker keeps it on the attempt; without it the worker
    builds the preview a second time (on the CSV sink that was 12% of its GIL-held time).
    """

    message: str = ""
    request: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Retryable:
    """A transient failure (network, timeout, 5xx, 408): try again on the backoff schedule."""

    message: str


@dataclass(frozen=True)
class RateLimited:
    """The destination asked us to slow down; retry after `retry_after` seconds.

    Not counted as a spent attempt.
    """

    message: str
    retry_after: float


@dataclass(frozen=True)
class Permanent:
    """The destination refused this event for good (validation, auth, other 4xx)."""

    message: str


@dataclass(frozen=True)
class Skipped:
    """Deliberately not sent (e.g. `lead.deleted` to a CRM, no usable identity)."""

    message: str


Outcome = Delivered | Retryable | RateLimited | Permanent | Skipped


class ConnectionCheckFailed(Exception):
    """`check_connection` could not reach or authenticate with the destination."""


# -- options ------------------------------------------------------------------------------


class ConnectorOptions(BaseModel):
    """Options every connector has; subclasses add their own fields.

    Secrets are `SecretStr`, so printing or logging options shows `**********`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    enabled: bool = True
    events: list[EventType] = Field(default_factory=lambda: list(LEAD_EVENT_TYPES))
    sources: list[str] | None = None
    require: list[str] = Field(default_factory=list)
    # Name of another connector (typically Slack) told when a delivery goes dead.
    on_dead: str | None = None
    # An event older (`occurred_at`) than the newest one delivered for its lead: `skip`
    # records it as superseded, `deliver` sends it anyway. Logs (CSV, Slack, webhooks)
    # want every event; CRMs want the newest state.
    on_stale: Literal["skip", "deliver"] = "deliver"

    @field_validator("require")
    @classmethod
    def _require_names_lead_fields(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in Lead.model_fields]
        if unknown:
            raise ValueError(f"unknown lead field(s) {', '.join(unknown)} in require")
        return value


class CrmOptions(ConnectorOptions):
    """CRMs never delete on their own (`on_delete: archive` opts in to archiving) and never
    overwrite a lead with an older event than they were sent (`on_stale: deliver` does)."""

    on_delete: Literal["skip", "archive"] = "skip"
    on_stale: Literal["skip", "deliver"] = "skip"


OptionsT = TypeVar("OptionsT", bound=ConnectorOptions)


# -- connector ----------------------------------------------------------------------------


class Connector(ABC, Generic[OptionsT]):
    """A destination. Subclasses declare `type_name`, `options_model` and `batch_size`.

    `send` must return one outcome per event, in order, and must not raise for anything
    the destination or the network did: those become Retryable/RateLimited/Permanent.
    """

    type_name: ClassVar[str]
    options_model: ClassVar[type[ConnectorOptions]]
    batch_size: ClassVar[int] = 1
    # "once" where the destination can upsert or dedup, else "at-least-once".
    delivery_guarantee: ClassVar[str] = "at-least-once"

    def __init__(self, name: str, options: OptionsT) -> None:
        self.name = name
        self.options = options
        # Set to a reason when the destination asked not to be called again (410 Gone).
        # After each `send` the engine reads it, persists `enabled: false` with the
        # reason, and sets it back to None.
        self.disable_requested: str | None = None

    @abstractmethod
    def send(self, batch: Sequence[LeadEvent]) -> list[Outcome]:
        """Deliver the batch; one outcome per event, in the same order."""

    @abstractmethod
    def preview(self, event: LeadEvent) -> dict[str, Any]:
        """Exactly what `send` would transmit for this event, with no network access."""

    def check_connection(self) -> None:
        """Raise ConnectionCheckFailed with a precise reason if the destination is unusable."""

    def close(self) -> None:
        """Release sockets and file handles."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.options!r}>"
