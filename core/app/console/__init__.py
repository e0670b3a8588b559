"""The operator console at /console/: find a lead's events, see every delivery attempt,
replay, re-parse quarantined payloads, enable or disable connectors.

Server-rendered (Jinja templates, one CSS file, a few lines of JS); loaded only when the
config has a `console:` section (`Runtime.build` registers it). Every page needs a
session; every POST needs a CSRF token; pages are never cached and run under a
restrictive Content-Security-Policy.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError, ValidationError, generate_csrf, validate_csrf
from werkzeug.exceptions import HTTPException

from leadrelay.core.app.config import Config
from leadrelay.core.app.console.auth import (
    Users,
    client_address,
    configure_sessions,
    with_one_time_password,
)
from leadrelay.core.app.console.state import EXTENSION, ConsoleState, config_secrets, state
from leadrelay.core.ingest.receiver import error_response
from leadrelay.core.logs import fields
from leadrelay.core.store.store import Store, StoreUnavailable

__all__ = ["register_console", "with_one_time_password"]

log = logging.getLogger("leadrelay.console")

console = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_OPEN_ENDPOINTS = {"console.login", "console.static"}


def register_console(app: Flask, config: Config, store: Store) -> None:
    """Serve the console from `app`. The config must name its users by now (a loopback
    `connectors serve` adds the one-time user with `with_one_time_password` first)."""
    from leadrelay.core.app.console import actions, pages  # noqa: F401 - they add routes

    console_config = config.console
    if console_config is None:
        raise ValueError("the config has no console section")
    if not console_config.users:
        from leadrelay.core.app.config import ConfigError

        raise ConfigError(
            config.path,
            "console.users",
            "required here: only `connectors serve` on a loopback address makes a "
            "one-time password (`connectors console hash-password` prints a hash)",
        )
    configure_sessions(app, console_config)
    app.extensions[EXTENSION] = ConsoleState(
        config=config,
        store=store,
        users=Users(console_config),
        secrets=config_secrets(config),
    )
    app.register_blueprint(console)


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def safe_next(target: str | None, default: str) -> str:
    """A redirect target within the console, never another site (`//evil`, `https:`)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/"):
        return default
    return target


@console.app_template_global()
def csrf_token() -> str:
    return generate_csrf()


@console.before_request
def _require_session_and_csrf() -> Response | None:
    g.console_user = state().users.current_user()
    if request.endpoint not in _OPEN_ENDPOINTS and g.console_user is None:
        if wants_json():
            return error_response(401, "unauthorized", "log in to the console first")
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as exc:
            raise CSRFError(str(exc)) from None
    return None


@console.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@console.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError) -> tuple[str, int]:
    log.warning("console request refused: bad CSRF token", extra=fields(path=request.path))
    return render_template("console/error.html", code=400, message=exc.description), 400


@console.errorhandler(StoreUnavailable)
def _store_down(exc: StoreUnavailable) -> tuple[str, int]:
    message = f"The store is unavailable: {state().redact(str(exc))}. Try again shortly."
    return render_template("console/error.html", code=503, message=message), 503


@console.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response | tuple[str, int]:
    code = exc.code or 500
    if wants_json():
        return error_response(code, "http_error", exc.description or "")
    return render_template("console/error.html", code=code, message=exc.description), code


@console.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    current = state()
    target = safe_next(request.values.get("next"), url_for("console.overview"))
    if request.method == "GET":
        if g.console_user is not None:
            return redirect(target)
        return render_template("console/login.html", next=target), 200
    console_config = current.config.console
    trust_proxy = bool(console_config and console_config.trust_proxy_headers)
    client = client_address(request, trust_proxy)
    name = request.form.get("username", "")[:64]
    wait = current.limiter.retry_after(client)
    if wait:
        log.warning("console login refused: too many failures", extra=fields(client=client))
        message = f"Too many failed logins. Try again in {wait} seconds."
        page = render_template("console/login.html", next=target, error=message)
        return Response(page, status=429, headers={"Retry-After": str(wait)})
    if not current.users.check(name, request.form.get("password", "")):
        current.limiter.failed(client)
        log.warning("console login failed", extra=fields(user=name, client=client))
        error = "Wrong user name or password."
        return render_template("console/login.html", next=target, error=error), 401
    current.limiter.succeeded(client)
    current.users.start_session(name)
    log.info("console login", extra=fields(user=name, client=client))
    return redirect(target)


@console.post("/logout")
def logout() -> Response:
    log.info("console logout", extra=fields(user=g.console_user))
    session.clear()
    flash("Logged out.")
    return redirect(url_for("console.login"))
