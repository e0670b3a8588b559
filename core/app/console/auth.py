"""Console sign-in: argon2 password hashes, signed session cookies, a failed-login limit.

Sessions are Flask's signed cookies (HttpOnly, SameSite=Strict, path /console, Secure
when the request came over HTTPS). A session names its user and carries a fingerprint of
that user's hash, so changing a password in the config ends the user's sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSessionInterface
from pydantic import SecretStr

from leadrelay.core.app.config import Config, ConfigError, ConsoleConfig

_HASHER = PasswordHasher()
# Checked when the user name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))
ONE_TIME_USER = "admin"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def with_one_time_password(config: Config, host: str) -> tuple[Config, str | None]:
    """`config` ready to serve on `host`, and the one-time password if one was made.

    A console without users is allowed on a loopback address only: it gets one user,
    `admin`, with a password made now and valid while this process runs.
    """
    console = config.console
    if console is None or console.users:
        return config, None
    if not is_loopback(host):
        raise ConfigError(
            config.path,
            "console.users",
            f"required when serving on {host} (a console without users is only for a "
            "loopback address); `connectors console hash-password` prints a hash",
        )
    password = secrets.token_urlsafe(12)
    users = {ONE_TIME_USER: SecretStr(hash_password(password))}
    return config.model_copy(update={"console": console.model_copy(update={"users": users})}), (
        password
    )


def _user_hashes(console: ConsoleConfig) -> dict[str, str]:
    return {name: hashed.get_secret_value() for name, hashed in console.users.items()}


def session_secret(console: ConsoleConfig) -> bytes:
    if console.secret_key is not None:
        return console.secret_key.get_secret_value().encode()
    material = "\n".join(f"{n}:{h}" for n, h in sorted(_user_hashes(console).items()))
    return hmac.new(b"leadrelay console session", material.encode(), hashlib.sha256).digest()


def _fingerprint(hashed: str) -> str:
    return hashlib.sha256(hashed.encode()).hexdigest()[:16]


class _ConsoleSessionInterface(SecureCookieSessionInterface):
    """Marks the cookie Secure exactly when the browser reached us over HTTPS."""

    def __init__(self, trust_proxy_headers: bool) -> None:
        self.trust_proxy_headers = trust_proxy_headers

    def get_cookie_secure(self, app: Flask) -> bool:
        return is_https(request, self.trust_proxy_headers)


def is_https(req: Request, trust_proxy_headers: bool) -> bool:
    if trust_proxy_headers:
        forwarded = req.headers.get("X-Forwarded-Proto", "")
        if forwarded:
            return forwarded.split(",")[0].strip().lower() == "https"
    return req.scheme == "https"


def client_address(req: Request, trust_proxy_headers: bool) -> str:
    """The client's address; behind a trusted proxy, the one the proxy saw (the last
    X-Forwarded-For entry: earlier ones are whatever the client sent)."""
    if trust_proxy_headers:
        forwarded = [part.strip() for part in req.headers.get("X-Forwarded-For", "").split(",")]
        if forwarded[-1]:
            return forwarded[-1]
    return req.remote_addr or "unknown"


def configure_sessions(app: Flask, console: ConsoleConfig) -> None:
    app.secret_key = session_secret(console)
    app.session_interface = _ConsoleSessionInterface(console.trust_proxy_headers)
    app.config.update(
        SESSION_COOKIE_NAME="leadrelay_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=int(console.session_hours * 3600),
        WTF_CSRF_TIME_LIMIT=int(console.session_hours * 3600),
    )


class Users:
    def __init__(self, console: ConsoleConfig) -> None:
        self._hashes = _user_hashes(console)
        self._lifetime_s = console.session_hours * 3600

    def check(self, name: str, password: str) -> bool:
        hashed = self._hashes.get(name)
        try:
            return _HASHER.verify(hashed or _DUMMY_HASH, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    def start_session(self, name: str) -> None:
        session.clear()
        session.permanent = True
        session["user"] = name
        session["since"] = int(time.time())
        session["hash"] = _fingerprint(self._hashes[name])

    def current_user(self) -> str | None:
        name = session.get("user")
        hashed = self._hashes.get(name) if isinstance(name, str) else None
        if hashed is None or session.get("hash") != _fingerprint(hashed):
            return None
        since = session.get("since")
        if not isinstance(since, int) or time.time() - since > self._lifetime_s:
            return None
        return name


@dataclass
class LoginLimiter:
    """At most `max_failures` failed logins per client in `window_s` (per process)."""

    max_failures: int = 5
    window_s: float = 15 * 60
    max_clients: int = 10_000
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(client, now)
            if len(recent) < self.max_failures:
                return 0
            return max(1, int(recent[0] + self.window_s - now) + 1)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.max_clients:
                self._forget_idle(now)
            self._recent(client, now).append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(client, deque(maxlen=self.max_failures))
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        return recent

    def _forget_idle(self, now: float) -> None:
        idle = [c for c, t in self._failures.items() if not t or t[-1] <= now - self.window_s]
        for client in idle:
            del self._failures[client]
        if len(self._failures) >= self.max_clients:
            # Still full of active clients: drop the oldest so memory stays bounded.
            oldest = min(self._failures, key=lambda c: self._failures[c][-1])
            del self._failures[oldest]
