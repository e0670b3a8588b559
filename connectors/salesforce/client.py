"""Talking to Salesforce: the HTTP session, logins, and what each error means.

The connector logs in itself and hands simple-salesforce a ready session id and instance
(the package docstring says why); every call runs through `SalesforceSession.call`, which
turns whatever went wrong into one outcome for the whole call (`BatchFailure`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jwt
import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
)
from simple_salesforce.login import token_login

from leadrelay.connectors._http import (
    Failure,
    failure_outcome,
    parse_retry_after,
    scrub,
    status_failure,
)
from leadrelay.connectors.salesforce.options import SalesforceOptions
from leadrelay.core.delivery.contract import Outcome, Permanent, Retryable

RATE_LIMIT_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED"})
RETRYABLE_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "SERVER_UNAVAILABLE",
        "REQUEST_RUNNING_TOO_LONG",
        "QUERY_TIMEOUT",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    }
)

T = TypeVar("T")


class BatchFailure(Exception):
    """A failure that applies to a whole call, hence to every event it carried."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class _SalesforceAdapter(HTTPAdapter):
    """Applies the connector's timeout and CA bundle to every request, logins included.

    simple-salesforce's login helpers post without a timeout, and requests lets the
    REQUESTS_CA_BUNDLE environment variable override `Session.verify`; both are settled here.
    """

    def __init__(self, timeout: float, verify: bool | str) -> None:
        super().__init__(max_retries=0)  # retries belong to the delivery engine
        self._timeout = timeout
        self._verify = verify

    def send(self, request: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        if self._verify is not True:
            kwargs["verify"] = self._verify
        return super().send(request, **kwargs)


@dataclass
class ErrorDetail:
    code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def text(self) -> str:
        suffix = f" (fields: {', '.join(self.fields)})" if self.fields else ""
        return f"Salesforce {self.code}: {self.message}{suffix}"


def error_details(content: Any) -> ErrorDetail:
    """The first error of a REST error body (`[{"errorCode", "message", "fields"}]`)."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        content = content[0]
    if isinstance(content, dict):
        code = content.get("errorCode") or content.get("statusCode") or content.get("error")
        message = content.get("message") or content.get("error_description") or ""
        fields = content.get("fields") or []
        return ErrorDetail(str(code or "UNKNOWN_ERROR"), str(message), [str(f) for f in fields])
    return ErrorDetail("UNKNOWN_ERROR", str(content)[:500])


class SalesforceSession:
    """One connector's HTTP session and Salesforce login; one call at a time."""

    def __init__(self, options: SalesforceOptions) -> None:
        self.options = options
        self._http = requests.Session()
        self._http.mount("https://", _SalesforceAdapter(options.timeout, options.verify))
        self._http.hooks["response"].append(self._remember_response)
        self._last_retry_after: str | None = None
        self._last_status: int | None = None
        self._client: Salesforce | None = None
        self._session_id: str | None = None
        self.lock = threading.Lock()  # one login and one batch at a time per connector

    def close(self) -> None:
        self._http.close()

    def outcome_for(self, detail: ErrorDetail, status: int | None) -> Outcome:
        """The outcome of an error: its code first, then (for a whole call) its HTTP status.

        `status` is None for a record Salesforce refused inside a 2xx answer.
        """
        text = self.scrub_text(
            detail.text() if status is None else f"HTTP {status}: {detail.text()}"
        )
        if detail.code in RATE_LIMIT_CODES:
            failure = Failure.RATE_LIMITED
        elif detail.code in RETRYABLE_CODES:
            failure = Failure.RETRY
        elif status is None:
            failure = Failure.PERMANENT
        else:
            failure = status_failure(status)
        retry_after = parse_retry_after(self._last_retry_after, self.options.rate_limit_delay)
        return failure_outcome(failure, text, retry_after=retry_after)

    def record_failure(self, result: dict[str, Any]) -> Outcome:
        """The outcome of a record Salesforce refused, from its first error."""
        errors = result.get("errors") or [{}]
        return self.outcome_for(error_details(errors[0]), status=None)

    def call(self, operation: Callable[[Salesforce], T]) -> T:
        """Run `operation` with a session; on INVALID_SESSION_ID log in again once."""
        try:
            try:
                return operation(self._logged_in())
            except SalesforceExpiredSession as expired:
                detail = error_details(expired.content)
                if self.options.auth_mode == "session":
                    raise BatchFailure(
                        Permanent(
                            self.scrub_text(
                                f"session expired: {detail.code}: {detail.message}; a session_id "
                                "cannot be renewed: configure a new one, or username/password "
                                "or JWT"
                            )
                        )
                    ) from None
                self._client = None
                client = self._logged_in()
                try:
                    return operation(client)
                except SalesforceExpiredSession as again:
                    detail = error_details(again.content)
                    raise BatchFailure(
                        Permanent(
                            self.scrub_text(
                                "login failed: Salesforce refused the new session too: "
                                f"{detail.code}: {detail.message}"
                            )
                        )
                    ) from None
        except SalesforceError as exc:
            raise BatchFailure(self.outcome_for(error_details(exc.content), exc.status)) from None
        except requests.exceptions.InvalidJSONError as exc:  # a 2xx that is not the promised JSON
            raise BatchFailure(
                Retryable(self.scrub_text(f"unreadable Salesforce answer: {exc}"))
            ) from None
        except requests.Timeout as exc:
            raise BatchFailure(
                Retryable(self.scrub_text(f"timeout after {self.options.timeout:g}s: {exc}"))
            ) from None
        except requests.RequestException as exc:
            raise BatchFailure(
                Retryable(self.scrub_text(f"cannot reach Salesforce: {exc}"))
            ) from None

    def _logged_in(self) -> Salesforce:
        if self._client is not None:
            return self._client
        options = self.options
        if options.auth_mode == "session":
            assert options.session_id is not None
            assert options.instance_url is not None
            session_id = options.session_id.get_secret_value()
            client = Salesforce(
                instance_url=options.instance_url,
                session_id=session_id,
                session=self._http,
                version=options.api_version,
            )
        else:
            session_id, instance = self._login()
            client = Salesforce(
                instance=instance,
                session_id=session_id,
                session=self._http,
                version=options.api_version,
            )
        self._session_id = session_id
        self._client = client
        return client

    def _login(self) -> tuple[str, str]:
        """(session id, instance host) from a fresh login; BatchFailure if refused."""
        try:
            if self.options.auth_mode == "password":
                return self._soap_login()
            return self._jwt_login()
        except SalesforceAuthenticationFailed as exc:
            code, message = exc.code, exc.auth_message
            status = self._last_status
            text = self.scrub_text(f"login failed: {code or status}: {message.strip()[:500]}")
            # SOAP faults (INVALID_LOGIN too) arrive as HTTP 500, so the status alone says
            # nothing; without a fault code, a 5xx/408 is an outage rather than a refusal.
            has_fault_code = isinstance(code, str) and code not in RETRYABLE_CODES
            if (
                not has_fault_code
                and status is not None
                and status_failure(status) is Failure.RETRY
            ):
                raise BatchFailure(Retryable(text)) from None
            raise BatchFailure(Permanent(text)) from None

    def _soap_login(self) -> tuple[str, str]:
        options = self.options
        token = options.security_token.get_secret_value() if options.security_token else ""
        assert options.password is not None
        session_id, instance = SalesforceLogin(
            username=options.username,
            password=options.password.get_secret_value(),
            security_token=token,
            sf_version=options.api_version,
            session=self._http,
            domain=options.domain,
            scratch_url=options.effective_login_url,
        )
        return session_id, instance

    def _jwt_login(self) -> tuple[str, str]:
        # simple-salesforce would post to https://<domain>.salesforce.com only; building the
        # assertion here lets `login_url` name a My Domain host. The audience stays the
        # login/test host, as Salesforce requires for the JWT bearer flow.
        options = self.options
        assert options.private_key_file is not None
        assert options.consumer_key is not None
        audience = (
            "https://test.salesforce.com"
            if options.domain == "test"
            else "https://login.salesforce.com"
        )
        try:
            key = Path(options.private_key_file).read_bytes()
        except OSError as exc:
            raise BatchFailure(
                Permanent(f"login failed: cannot read private_key_file: {exc.strerror}")
            ) from None
        claims = {
            "iss": options.consumer_key,
            "sub": options.username,
            "aud": audience,
            "exp": int(time.time()) + 180,
        }
        try:
            assertion = jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError):
            raise BatchFailure(
                Permanent("login failed: private_key_file is not a usable RSA private key (PEM)")
            ) from None
        return token_login(
            f"{options.effective_login_url}/services/oauth2/token",
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
            options.domain,
            options.consumer_key,
            None,
            None,
            self._http,
        )

    def _remember_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        # The SDK's exceptions keep neither headers nor (for logins) the status code.
        self._last_status = response.status_code
        self._last_retry_after = response.headers.get("Retry-After")

    def scrub_text(self, text: str) -> str:
        """`text` without this connector's secrets (session id, password, token)."""
        options = self.options
        secrets: list[str | SecretStr | None] = [
            options.session_id,
            options.password,
            options.security_token,
            self._session_id,
        ]
        if options.password and options.security_token:
            secrets.append(
                options.password.get_secret_value() + options.security_token.get_secret_value()
            )
        return scrub(text, *secrets)
