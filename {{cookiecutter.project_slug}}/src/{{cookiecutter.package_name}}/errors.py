"""Every 503 the service sends carries ``Retry-After`` and the status page.

- ``Retry-After`` (RFC 9110, section 10.2.3): seconds, from ``RETRY_AFTER``.
- ``Link: <STATUS_PAGE_URL>; rel="status"`` (the ``status`` relation of RFC 8631).
- JSON bodies gain a ``status_page`` field.

The headers are added by a pure ASGI middleware, so they are present on any 503
whoever produced it; the exception handlers below shape the bodies. An outage is
expected: each 503 it causes logs one line (method, path, error and its cause),
not a traceback.

A 422 keeps FastAPI's error locations and messages, but quotes at most
``MAX_INPUT_EXCERPT`` characters of each rejected input: a client's 5 MB field
must not come back as a 5 MB error. What strict JSON in UTF-8 cannot carry is
spelled out as text (``json_safe``): a rejected ``NaN`` or a lone surrogate is
quoted back in a 422, never a 500 raised while encoding the 422.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .outages import reason

logger = logging.getLogger(__name__)


class DependencyUnavailable(Exception):
    """A dependency the request needs cannot answer: raised from a route, a 503.

    ``str()`` names the dependency (``redis``); the cause is the client's error.
    """


# Characters of a rejected input a 422 quotes back.
MAX_INPUT_EXCERPT = 64


def input_excerpt(value: Any) -> Any:
    """``value`` as a 422 may quote it: numbers, booleans and ``None`` as they are,
    anything else as text of at most ``MAX_INPUT_EXCERPT`` characters (``...`` marks a cut).
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(jsonable_encoder(value))
    if len(text) <= MAX_INPUT_EXCERPT:
        return text
    return text[:MAX_INPUT_EXCERPT] + "..."


def json_safe(value: Any) -> Any:
    """``value`` with what strict JSON in UTF-8 cannot carry spelled out as text.

    A non-finite float (a client's ``NaN``, ``Infinity`` or ``1e400``) becomes
    ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, a lone surrogate in a string its
    escape (``"\\ud800"``, six characters); lists, tuples and dicts (keys too) are
    rebuilt recursively, anything else is returned as it is.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's validation errors with each ``input`` and ``ctx`` value cut to an excerpt."""
    shortened = []
    for error in errors:
        item = dict(error)
        if "input" in item:
            item["input"] = input_excerpt(item["input"])
        if isinstance(item.get("ctx"), dict):
            item["ctx"] = {key: input_excerpt(value) for key, value in item["ctx"].items()}
        shortened.append(item)
    return shortened


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
    is_unavailable: Callable[[BaseException], bool],
) -> None:
    """Register the 503 middleware and handlers, and the short 422, on ``app``.

    Args:
        unavailable_errors: exception types that may mean a dependency is
            unavailable; raised from a route, those ``is_unavailable`` confirms
            become a 503 instead of a 500 (the others stay 500s, with their traceback).
            ``DependencyUnavailable`` is always a 503.
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
        if not is_unavailable(exc):
            raise exc
        # The message may name hosts or credentials: log it, never send it. One line:
        # an outage is expected, and a traceback per request would drown the logs.
        logger.warning(
            "dependency unavailable during %s %s: %s",
            request.method,
            request.url.path,
            reason(exc),
        )
        return JSONResponse(
            {"detail": "Service temporarily unavailable", "status_page": status_page_url},
            status_code=503,
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(
            {"detail": json_safe(jsonable_encoder(validation_errors(exc.errors())))},
            status_code=422,
        )

    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    for error_type in (*unavailable_errors, DependencyUnavailable):
        app.add_exception_handler(error_type, on_unavailable)
    app.add_middleware(
        ServiceUnavailableHeaders, status_page_url=status_page_url, retry_after=retry_after
    )
