"""Every 503 the service sends carries ``Retry-After`` and the status page.

- ``Retry-After`` (RFC 9110, section 10.2.3): seconds, from ``RETRY_AFTER``.
- ``Link: <STATUS_PAGE_URL>; rel="status"`` (the ``status`` relation of RFC 8631).
- JSON bodies gain a ``status_page`` field.

The headers are added by a pure ASGI middleware, so they are present on any 503
whoever produced it; the exception handlers below shape the bodies.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


class ServiceUnavailableHeaders:
    """ASGI middleware adding ``Retry-After`` and ``Link`` to every 503 lacking them."""

    def __init__(self, app: ASGIApp, *, status_page_url: str, retry_after: int) -> None:
        self.app = app
        self.link = f'<{status_page_url}>; rel="status"'.encode("latin-1")
        self.retry_after = str(retry_after).encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"retry-after" not in names:
                    headers.append((b"retry-after", self.retry_after))
                if b"link" not in names:
                    headers.append((b"link", self.link))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_error_handlers(
    app: FastAPI,
    *,
    status_page_url: str,
    retry_after: int,
    unavailable_errors: tuple[type[Exception], ...],
) -> None:
    """Register the 503 middleware and handlers on ``app``.

    Args:
        unavailable_errors: exception types meaning a dependency is unreachable;
            raised from a route they become a 503 instead of a 500.
    """

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code != 503:
            return await http_exception_handler(request, exc)
        return JSONResponse(
            {"detail": exc.detail, "status_page": status_page_url},
            status_code=503,
            headers=exc.headers,
        )

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        # The message may name hosts or credentials: log it, never send it.
        logger.warning(
            "dependency unavailable during %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc_info=exc,
        )
        return JSONResponse(
            {"detail": "Service temporarily unavailable", "status_page": status_page_url},
            status_code=503,
        )

    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    for error_type in unavailable_errors:
        app.add_exception_handler(error_type, on_unavailable)
    app.add_middleware(
        ServiceUnavailableHeaders, status_page_url=status_page_url, retry_after=retry_after
    )
