"""HTTP guard for the app: refuse cross-origin writes (POST, PUT, PATCH, DELETE).

Gradio's CORS middleware leaves out the ``Access-Control-Allow-Origin`` header for a foreign
origin, so a browser cannot *read* the answer — but it still runs the request. A "simple"
cross-site request (an HTML form posting ``multipart/form-data`` to ``/gradio_api/upload``, or
a page with ``Origin: null`` from a sandboxed frame or a local file) needs no preflight, so any
web page a user visits could write files into the app's upload cache. This middleware answers
such requests with 403 before Gradio sees them.

A write is allowed when it carries no ``Origin`` header (``gradio_client``, curl, notebooks:
not a browser acting for someone else) or when the Origin's host name is the host the request
was sent to (``Host``, or ``X-Forwarded-Host`` behind a proxy such as a Hugging Face Space).
``$PLAYGROUND_ALLOWED_ORIGINS`` (comma-separated host names) allows more, e.g. a site that
embeds the app.
"""
from __future__ import annotations

import os
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # reads, and CORS preflights
ALLOWED_ORIGINS_ENV = "PLAYGROUND_ALLOWED_ORIGINS"


def _hostname(value: str) -> str | None:
    """``"https://Example.org:8443"`` or ``"example.org:8443"`` → ``"example.org"``."""
    value = value.strip()
    if not value:
        return None
    if "://" not in value:
        value = "//" + value
    try:
        return urlsplit(value).hostname  # lower-cased, port and brackets removed
    except ValueError:
        return None


def origin_allowed(method: str, origin: str | None, hosts: list[str]) -> bool:
    """Whether a request may pass: a safe method, no Origin, or an Origin on one of `hosts`
    (the request's Host / X-Forwarded-Host values) or on ``$PLAYGROUND_ALLOWED_ORIGINS``."""
    if method.upper() in SAFE_METHODS or origin is None:
        return True
    origin_host = _hostname(origin)  # "null" → None: sandboxed frames and local files
    if origin_host is None:
        return False
    extra = [h for h in os.environ.get(ALLOWED_ORIGINS_ENV, "").split(",") if h.strip()]
    allowed = {_hostname(h) for h in [*hosts, *extra]} - {None}
    return origin_host in allowed


class CrossOriginWriteGuard:
    """ASGI middleware: 403 for a write whose Origin is another site (see the module doc)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {}
            for key, value in scope.get("headers", []):
                headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
            hosts = [headers.get("host", ""),
                     *headers.get("x-forwarded-host", "").split(",")]
            if not origin_allowed(scope["method"], headers.get("origin"), hosts):
                body = b"Cross-origin request refused: this app accepts writes only from its own pages."
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
