"""HTTP guard for the app: at most `max_in_flight` requests joining the queue at once.

Gradio bounds its queue (``max_size``): a request that finds it full is answered 503 at once.
But an event with a ``validator=`` (every event that checks its fields in place) runs the
validator *between* that check and adding the event, so requests arriving together all pass
the check before any of them is added: 40 simultaneous calls on a queue of 4 were all accepted
(the load test's busy check). This middleware restores the bound: while `max_in_flight`
joins are being admitted, the next one is answered 503 "Queue is full" — what Gradio answers
when its own check catches it — so the queue holds at most ``max_size`` + `max_in_flight`
events whatever arrives at once.
"""
from __future__ import annotations

import json

JOIN_PATHS = ("/queue/join", "/call/")  # the browser's join, and the REST API's /call/<name>


def is_join(method: str, path: str) -> bool:
    """A POST that asks the queue to take an event."""
    return method.upper() == "POST" and any(p in path for p in JOIN_PATHS)


class JoinLimiter:
    """ASGI middleware: 503 for a queue join while `max_in_flight` others are being admitted."""

    def __init__(self, app, max_in_flight: int):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.app, self.max_in_flight, self.in_flight = app, max_in_flight, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not is_join(scope["method"], scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:  # one event loop: no lock needed
            body = json.dumps({"detail": f"Queue is full: {self.in_flight} requests are being "
                                         "admitted already; try again in a moment."}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
