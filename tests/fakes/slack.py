"""A fake Slack: Web API (chat.postMessage, auth.test, conversations.info) and an incoming
webhook, answering the way real Slack does.

Shapes follow Slack's documentation and observed answers:

- Web API answers HTTP 200 with `{"ok": false, "error": "<code>"}` for almost every error
  (auth, channel, scope, blocks); `missing_scope` adds `needed`/`provided`;
  `invalid_blocks` adds `errors` and `response_metadata.messages`. Rate limits are HTTP 429
  with `Retry-After` and `{"ok": false, "error": "ratelimited"}`. Every answer to a known
  token carries `X-OAuth-Scopes`.
- Incoming webhooks answer `ok` (text/plain) on success and a plain-text code with a
  meaningful status otherwise: 400 invalid_payload / no_text / invalid_blocks,
  403 invalid_token / action_prohibited, 404 no_service, 410 channel_is_archived,
  429 rate_limited, 500 rollup_error.

Tests script failures with `fail_next`, `rate_limit_next`, `server_error_next` and
`slow_next`; scripted answers are used, in order, by the next requests to any endpoint.
Slow answers wait on an event that `release()` sets, so teardown never waits them out.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request

FAKE_TOKEN = "xoxb-fake-0000-token"
FAKE_WEBHOOK_SECRET = "hookSECRETvalue0123456789"
WEBHOOK_TEAM = "T0FAKETEAM"
WEBHOOK_BOT = "B0FAKEHOOK"

# Block Kit limits the fake enforces (docs.slack.dev, Block Kit reference).
MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_MESSAGE_TEXT = 40_000
MAX_BLOCK_ID = 255
BOT_ID = "B0FAKEBOT1"
BOT_USER_ID = "U0FAKEBOT1"

_WEBHOOK_STATUS = {
    "invalid_payload": 400,
    "no_text": 400,
    "missing_text_or_fallback_or_attachments": 400,
    "invalid_blocks": 400,
    "user_not_found": 400,
    "invalid_token": 403,
    "action_prohibited": 403,
    "posting_to_general_channel_denied": 403,
    "no_service": 404,
    "channel_not_found": 404,
    "channel_is_archived": 410,
    "rollup_error": 500,
}


@dataclass
class FakeChannel:
    id: str
    name: str
    is_private: bool = False
    is_archived: bool = False
    is_member: bool = True


@dataclass
class ScriptedAnswer:
    status: int = 200
    error: str | None = None  # Web API `error` code, or the webhook's plain-text body
    extra: dict[str, Any] = field(default_factory=dict)
    body: str | None = None  # a raw body, for 5xx pages
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeSlack:
    """State and behaviour; serve `fake.app` with tests.fakes.server.serve."""

    def __init__(
        self,
        *,
        token: str = FAKE_TOKEN,
        scopes: tuple[str, ...] = ("chat:write", "channels:read", "groups:read"),
        webhook_secret: str = FAKE_WEBHOOK_SECRET,
    ) -> None:
        self.token = token
        self.webhook_path = f"/services/{WEBHOOK_TEAM}/{WEBHOOK_BOT}/{webhook_secret}"
        self.webhook_secret = webhook_secret
        self._initial_scopes = tuple(scopes)
        self._lock = threading.Lock()
        self.reset()
        self.app = self._build_app()

    def reset(self) -> None:
        """Back to a fresh workspace, so one served fake can be shared by many tests."""
        self.scopes = list(self._initial_scopes)
        self.channels: dict[str, FakeChannel] = {}
        self.add_channel("C0LEADS01", "leads")
        self.webhook_channel = "C0LEADS01"
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[RecordedRequest] = []
        self._script: deque[ScriptedAnswer] = deque()
        self._released = threading.Event()
        self._ts = 1777000000

    # -- test controls

    def add_channel(self, channel_id: str, name: str, **flags: bool) -> FakeChannel:
        channel = FakeChannel(channel_id, name, **flags)
        self.channels[channel_id] = channel
        return channel

    def fail_next(self, error: str, *, status: int | None = None, **extra: Any) -> None:
        """Next answer: Web API `{"ok": false, "error": error, **extra}` (HTTP 200), or on
        the webhook the plain-text `error` with its usual status."""
        self._script.append(ScriptedAnswer(status=status or 0, error=error, extra=extra))

    def rate_limit_next(self, retry_after: int = 30) -> None:
        self._script.append(ScriptedAnswer(status=429, retry_after=retry_after))

    def server_error_next(self, status: int = 503, body: str | None = None) -> None:
        self._script.append(ScriptedAnswer(status=status, body=body))

    def slow_next(self, seconds: float = 30.0) -> None:
        """Next answer waits up to `seconds` (or until `release()`) before answering."""
        self._script.append(ScriptedAnswer(delay=seconds))

    def release(self) -> None:
        self._released.set()

    def all_messages(self) -> list[dict[str, Any]]:
        return [m for msgs in self.messages.values() for m in msgs]

    # -- helpers

    def _next_scripted(self) -> ScriptedAnswer | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _record(self) -> None:
        self.requests.append(
            RecordedRequest(request.path, dict(request.headers), request.get_data())
        )

    def _api(self, payload: dict[str, Any], status: int = 200, **headers: str) -> Response:
        response = Response(json.dumps(payload), status=status, mimetype="application/json")
        if self._authenticated_token() == self.token:
            response.headers["X-OAuth-Scopes"] = ",".join(self.scopes)
        for name, value in headers.items():
            response.headers[name.replace("_", "-")] = value
        return response

    def _authenticated_token(self) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth.removeprefix("Bearer ").strip()
        return request.form.get("token") or None

    def _api_params(self) -> dict[str, Any]:
        if request.is_json:
            body = request.get_json(silent=True)
            return body if isinstance(body, dict) else {}
        params: dict[str, Any] = dict(request.form.items())
        params.update(request.args.items())
        if isinstance(params.get("blocks"), str):
            params["blocks"] = json.loads(params["blocks"])
        return params

    def _scripted_api_answer(self, scripted: ScriptedAnswer) -> Response | None:
        if scripted.delay:
            self._released.wait(scripted.delay)
            return None
        if scripted.status == 429:
            return self._api(
                {"ok": False, "error": "ratelimited"},
                429,
                Retry_After=str(scripted.retry_after),
            )
        if scripted.status >= 500 and scripted.error is None:
            return Response(
                scripted.body or "<html><body>Service Unavailable</body></html>",
                status=scripted.status,
                mimetype="text/html",
            )
        return self._api(
            {"ok": False, "error": scripted.error, **scripted.extra}, scripted.status or 200
        )

    def _resolve_channel(self, value: str) -> FakeChannel | None:
        if value in self.channels:
            return self.channels[value]
        name = value.removeprefix("#")
        return next((c for c in self.channels.values() if c.name == name), None)

    def _next_ts(self) -> str:
        with self._lock:
            self._ts += 1
            return f"{self._ts}.000100"

    # -- routes

    def _build_app(self) -> Flask:
        app = Flask("fake-slack")

        @app.post("/api/<method>")
        def web_api(method: str) -> Response:
            self._record()
            scripted = self._next_scripted()
            if scripted is not None:
                answer = self._scripted_api_answer(scripted)
                if answer is not None:
                    return answer
            token = self._authenticated_token()
            if not token:
                return self._api({"ok": False, "error": "not_authed"})
            if token != self.token:
                return self._api({"ok": False, "error": "invalid_auth"})
            handler = {
                "auth.test": self._auth_test,
                "chat.postMessage": self._post_message,
                "conversations.info": self._conversations_info,
            }.get(method)
            if handler is None:
                return self._api({"ok": False, "error": "unknown_method"}, 404)
            return handler(self._api_params())

        @app.post("/services/<team>/<bot>/<secret>")
        def incoming_webhook(team: str, bot: str, secret: str) -> Response:
            self._record()
            scripted = self._next_scripted()
            if scripted is not None and scripted.delay:
                self._released.wait(scripted.delay)
                scripted = None
            if scripted is not None:
                return self._scripted_webhook_answer(scripted)
            if (team, bot) != (WEBHOOK_TEAM, WEBHOOK_BOT):
                return _plain("no_service", 404)
            if secret != self.webhook_secret:
                return _plain("invalid_token", 403)
            return self._webhook_post()

        return app

    def _scripted_webhook_answer(self, scripted: ScriptedAnswer) -> Response:
        if scripted.status == 429:
            response = _plain("rate_limited", 429)
            response.headers["Retry-After"] = str(scripted.retry_after)
            return response
        if scripted.status >= 500 and scripted.error is None:
            return _plain(scripted.body or "rollup_error", scripted.status)
        code = scripted.error or "invalid_payload"
        return _plain(code, scripted.status or _WEBHOOK_STATUS.get(code, 400))

    def _webhook_post(self) -> Response:
        try:
            payload = json.loads(request.get_data() or b"")
        except ValueError:
            return _plain("invalid_payload", 400)
        if not isinstance(payload, dict):
            return _plain("invalid_payload", 400)
        problem = _message_problem(payload)
        if problem is not None:
            return _plain(problem[0], 400)
        channel = self.channels[self.webhook_channel]
        if channel.is_archived:
            return _plain("channel_is_archived", 410)
        self._store(channel.id, payload)
        return _plain("ok", 200)

    def _auth_test(self, params: dict[str, Any]) -> Response:
        return self._api(
            {
                "ok": True,
                "url": "https://fake-workspace.slack.com/",
                "team": "Fake Workspace",
                "user": "leadrelay",
                "team_id": WEBHOOK_TEAM,
                "user_id": "U0LEADBOT",
                "bot_id": "B0LEADBOT",
            }
        )

    def _conversations_info(self, params: dict[str, Any]) -> Response:
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            return self._api({"ok": False, "error": "channel_not_found"})
        needed = "groups:read" if channel.is_private else "channels:read"
        if needed not in self.scopes:
            return self._missing_scope(needed)
        return self._api(
            {
                "ok": True,
                "channel": {
                    "id": channel.id,
                    "name": channel.name,
                    "is_channel": True,
                    "is_private": channel.is_private,
                    "is_archived": channel.is_archived,
                    "is_member": channel.is_member,
                },
            }
        )

    def _missing_scope(self, needed: str) -> Response:
        return self._api(
            {
                "ok": False,
                "error": "missing_scope",
                "needed": needed,
                "provided": ",".join(self.scopes),
            }
        )

    def _post_message(self, params: dict[str, Any]) -> Response:
        if "chat:write" not in self.scopes:
            return self._missing_scope("chat:write")
        channel = self._resolve_channel(str(params.get("channel") or ""))
        if channel is None:
            return self._api({"ok": False, "error": "channel_not_found"})
        if channel.is_archived:
            return self._api({"ok": False, "error": "is_archived"})
        if not channel.is_member and (channel.is_private or "chat:write.public" not in self.scopes):
            return self._api({"ok": False, "error": "not_in_channel"})
        problem = _message_problem(params)
        if problem is not None:
            code, detail = problem
            answer: dict[str, Any] = {"ok": False, "error": code}
            if detail:
                answer["errors"] = [detail]
                answer["response_metadata"] = {"messages": [f"[ERROR] {detail}"]}
            return self._api(answer)
        message = self._store(channel.id, params)
        # The answer's message is the spec's message object: what Slack stored, nothing else.
        posted = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "text": message["text"],
            "ts": message["ts"],
            "blocks": message["blocks"],
        }
        return self._api(
            {"ok": True, "channel": channel.id, "ts": message["ts"], "message": posted}
        )

    def _store(self, channel_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        message = {
            "type": "message",
            "ts": self._next_ts(),
            "text": payload.get("text", ""),
            "blocks": payload.get("blocks", []),
            "payload": payload,
        }
        self.messages.setdefault(channel_id, []).append(message)
        return message


def _plain(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/plain")


# Keys a text object may carry, by type (Block Kit reference, "Text object").
_TEXT_OBJECT_KEYS = {
    "plain_text": {"type", "text", "emoji"},
    "mrkdwn": {"type", "text", "verbatim"},
}


def _text_problem(obj: Any, pointer: str, limit: int, kind: str | None = None) -> str | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return f"must provide an object [json-pointer:{pointer}]"
    if kind is not None and obj.get("type") != kind:
        return f"must be a {kind} text object [json-pointer:{pointer}/type]"
    if obj.get("type") not in _TEXT_OBJECT_KEYS:
        return f"must be a valid enum value [json-pointer:{pointer}/type]"
    extra = sorted(set(obj) - _TEXT_OBJECT_KEYS[obj["type"]])
    if extra:
        return f"unsupported attribute {extra[0]!r} [json-pointer:{pointer}/{extra[0]}]"
    for flag in ("emoji", "verbatim"):
        if flag in obj and not isinstance(obj[flag], bool):
            return f"must be a boolean [json-pointer:{pointer}/{flag}]"
    text = obj["text"]
    if not text:
        return f"must be more than 0 characters [json-pointer:{pointer}/text]"
    if len(text) > limit:
        return f"must be less than {limit + 1} characters [json-pointer:{pointer}/text]"
    return None


def _block_problem(block: Any, pointer: str) -> str | None:
    if not isinstance(block, dict):
        return f"must provide an object [json-pointer:{pointer}]"
    kind = block.get("type")
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID):
        return f"must be less than {MAX_BLOCK_ID + 1} characters [json-pointer:{pointer}/block_id]"
    if kind == "header":
        return _text_problem(block.get("text"), f"{pointer}/text", MAX_HEADER, "plain_text")
    if kind == "divider":
        return None
    if kind == "section":
        if "text" not in block and "fields" not in block:
            return f"must provide either text or fields [json-pointer:{pointer}]"
        if "text" in block:
            problem = _text_problem(block["text"], f"{pointer}/text", MAX_SECTION_TEXT)
            if problem:
                return problem
        fields = block.get("fields", [])
        if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
            return f"must provide no more than {MAX_FIELDS} items [json-pointer:{pointer}/fields]"
        if "fields" in block and not fields:
            return f"must provide at least 1 item [json-pointer:{pointer}/fields]"
        for i, item in enumerate(fields):
            problem = _text_problem(item, f"{pointer}/fields/{i}", MAX_FIELD_TEXT)
            if problem:
                return problem
        return None
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 0 < len(elements) <= MAX_CONTEXT_ELEMENTS:
            return (
                f"must provide 1 to {MAX_CONTEXT_ELEMENTS} items [json-pointer:{pointer}/elements]"
            )
        for i, item in enumerate(elements):
            problem = _text_problem(item, f"{pointer}/elements/{i}", MAX_SECTION_TEXT)
            if problem:
                return problem
        return None
    return f"unsupported type: {kind} [json-pointer:{pointer}/type]"


def _message_problem(payload: dict[str, Any]) -> tuple[str, str | None] | None:
    """(error code, detail) when Slack would refuse this message, else None."""
    text = payload.get("text")
    blocks = payload.get("blocks")
    if not text and not blocks:
        return ("no_text", None)
    if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
        return ("msg_too_long", None)
    if blocks is None:
        return None
    if not isinstance(blocks, list):
        return ("invalid_blocks_format", None)
    if len(blocks) > MAX_BLOCKS:
        return ("invalid_blocks", f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        problem = _block_problem(block, f"/blocks/{i}")
        if problem:
            return ("invalid_blocks", problem)
    return None
