"""Shared by the console's HTTP and browser tests: a console config, logging in."""

from __future__ import annotations

import re
from typing import Any

from argon2 import PasswordHasher

from leadrelay.core.app.config import Config
from tests.conftest import make_config

PASSWORD = "correct horse battery"
# One hash for the whole session: argon2 is slow on purpose.
PASSWORD_HASH = PasswordHasher().hash(PASSWORD)

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_config(
    store_url: str, *, console: dict[str, Any] | None = None, **overrides: Any
) -> Config:
    settings = {"users": {"admin": PASSWORD_HASH}}
    settings.update(console or {})
    return make_config(store_url, console=settings, **overrides)


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def log_in(client: Any, user: str = "admin", password: str = PASSWORD, **request: Any) -> Any:
    """Log in through the form (`request`: more test-client arguments, e.g. base_url)."""
    token = csrf_from(client.get("/console/login", **request).get_data(as_text=True))
    return client.post(
        "/console/login",
        data={"csrf_token": token, "username": user, "password": password},
        **request,
    )


def page_token(client: Any, path: str = "/console/connectors") -> str:
    """A CSRF token of the logged-in session (from any page with a form)."""
    return csrf_from(client.get(path).get_data(as_text=True))
