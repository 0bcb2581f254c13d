"""The server's guard and limits: a Host-header allowlist against DNS rebinding (Ollama's
CVE-2024-28224: a name that resolves to 127.0.0.1 must not reach the API), an optional API key
compared in constant time, a cap on the request body, and every refusal in the OpenAI error
shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from fastapi.responses import JSONResponse

__all__ = ["PUBLIC", "Guard", "ServeSettings", "error_body", "error_response", "host_allowed"]

PUBLIC = ("/", "/health", "/favicon.ico")  # no API key needed (the page asks for it itself)


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits and guards.

    Attributes:
        api_key: the key every API request must bear (``Authorization: Bearer``), or None.
        allow_hosts: host names the Host header may carry besides localhost and IP addresses.
        cors_origins: origins that browsers may call from (none: CORS off).
        max_body: the largest request body, bytes.
        max_prompt_tokens: the longest prompt, tokens.
        max_tokens: the most tokens one request may ask to write.
        max_n: the most choices one request may ask for.
        max_prompts: the most prompts one completion request may list.
    """

    api_key: str | None = None
    allow_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body: int = 1 << 20
    max_prompt_tokens: int = 4096
    max_tokens: int = 1024
    max_n: int = 8
    max_prompts: int = 16


def error_body(
    message: str,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    kind = {
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_error",
        503: "server_busy",
        500: "server_error",
    }.get(status, "invalid_request_error")
    return JSONResponse(error_body(message, kind, code, param), status, headers=headers)


def host_allowed(host_header: str, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header names this machine safely: localhost, an IP address (a DNS
    rebinding attack needs a name), or one of ``allowed``."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost") or host in allowed:
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class Guard:
    """ASGI middleware in front of everything: refuses a foreign Host header (403), a missing
    or wrong API key (401), and a body over ``max_body`` bytes (413), before the app reads it."""

    def __init__(self, app, settings: ServeSettings) -> None:
        self.app, self.settings = app, settings
        self.key = settings.api_key.encode() if settings.api_key else None
        self.allowed = tuple(h.lower() for h in settings.allow_hosts)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope.get("path", "")
        if not host_allowed(headers.get("host", ""), self.allowed):
            return await error_response(
                403,
                f"Host {headers.get('host', '')!r} is not allowed: this server answers to "
                "localhost and IP addresses, and to the names given with --allow-host",
                "invalid_host",
            )(scope, receive, send)
        if self.key and path not in PUBLIC and not path.startswith("/static/"):
            if scope.get("method") != "OPTIONS" and not self._key_ok(headers):
                return await error_response(
                    401,
                    "a valid API key is needed: send the header 'Authorization: Bearer KEY'",
                    "invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )(scope, receive, send)
        limit = self.settings.max_body
        declared = headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > limit:
            return await self._too_large(scope, receive, send, limit)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return await self._too_large(scope, receive, send, limit)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # afterwards: wait for the client to go away

        return await self.app(scope, replay, send)

    def _key_ok(self, headers: dict) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key)

    async def _too_large(self, scope, receive, send, limit: int) -> None:
        await error_response(
            413,
            f"the request body is over this server's limit of {limit:,} bytes (--max-body)",
            "body_too_large",
        )(scope, receive, send)
