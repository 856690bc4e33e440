"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from files inside the package, no CDN.

FastAPI's own pages load Swagger UI and ReDoc from cdn.jsdelivr.net: in an air-gapped
cluster, or on a laptop offline, they are blank. The same pages here load the
JavaScript and CSS that the ``fastapi-offline`` package ships (Swagger UI 5 and
ReDoc 2), served by the app under ``/static-offline-docs``; ReDoc's Google Fonts
are left out, Swagger UI's validator badge (a request to validator.swagger.io) is
off, and a Content-Security-Policy keeps each page to its own origin, so not even
ReDoc's attribution logo (cdn.redoc.ly) is fetched. ``create_app`` adds them when ``API_DOCS_ENABLED`` (``serve_api_docs``)
says so, after turning FastAPI's CDN pages off (``docs_url=None``, ``redoc_url=None``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/static-offline-docs"
# FastAPI's CDN pages off; /openapi.json stays on.
CDN_DOCS_OFF = {"docs_url": None, "redoc_url": None}
# The pages load from their own origin only. Swagger UI starts from an inline script
# and both style inline; ReDoc runs its search index in a blob: worker.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:"
)
# No validator badge: it sends the schema's URL to validator.swagger.io.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


def assets_directory() -> Path:
    """The folder of ``fastapi-offline``'s ``swagger-ui-bundle.js``, ``swagger-ui.css``,
    ``redoc.standalone.js`` and ``favicon.png``."""
    return Path(str(files("fastapi_offline") / "static"))


def add_offline_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/docs/oauth2-redirect`` and ``/redoc`` on ``app`` from the
    package's assets, with ``app.openapi_url`` as their schema."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS_URL, StaticFiles(directory=assets_directory()), name="offline-docs")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{DOCS_URL}/oauth2-redirect",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )
        page.headers["Content-Security-Policy"] = PAGE_POLICY
        return page

    @app.get(f"{DOCS_URL}/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = PAGE_POLICY
        return page
