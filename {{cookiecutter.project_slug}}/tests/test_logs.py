"""Logs: JSON lines outside development, text in development, a request ID on every line.

The in-process tests serve the app with a real uvicorn server (so its access log
is part of what is checked); the process tests start ``python -m`` and ``uvicorn``
as an operator would and read what they write.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.logs import (
    FORCED_EXIT,
    REQUEST_CANCELLED,
    build_handler,
    configure_logging,
    uses_json,
)
from {{ cookiecutter.package_name }}.main import (
    REQUEST_ID_HEADER,
    create_app,
)
from {{ cookiecutter.package_name }}.scheduling import JobRegistry
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import make_settings

route_logger = logging.getLogger("tests.logs.route")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put back the root and uvicorn loggers that ``configure_logging`` changes."""
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    saved = [(logging.getLogger(name), list(logging.getLogger(name).handlers)) for name in names]
    levels = [(logger, logger.level, logger.propagate) for logger, _ in saved]
    yield
    for logger, handlers in saved:
        logger.handlers[:] = handlers
    for logger, level, propagate in levels:
        logger.setLevel(level)
        logger.propagate = propagate


def logging_app(settings: Settings) -> FastAPI:
    """The service's app, with no jobs, plus a route that logs one line."""
    app = create_app(settings, jobs=JobRegistry("test-logs"))

    @app.get("/log-something")
    async def log_something() -> dict[str, str]:
        route_logger.info("handling the request")
        return {"status": "logged"}

    return app


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="info"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn stopped during start-up"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed as one JSON object (a line that is not fails the test)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
async def test_every_line_of_a_request_carries_the_id_returned_in_x_request_id(
    tmp_path: Path,
) -> None:
    stream = io.StringIO()
    settings = make_settings(
        f"sqlite:///{tmp_path}/logs.db", log_format="json", scheduler_enabled=False
    )
    configure_logging(settings, stream)
    async with served(logging_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        first = await http.get("/log-something")
        second = await http.get("/log-something")

    assert first.status_code == second.status_code == 200
    request_ids = [first.headers[REQUEST_ID_HEADER], second.headers[REQUEST_ID_HEADER]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in request_ids), request_ids
    assert request_ids[0] != request_ids[1]

    lines = json_lines(stream.getvalue())
    for request_id in request_ids:
        own = [line for line in lines if line["request_id"] == request_id]
        # The route's own line and uvicorn's access line, both carrying the ID.
        assert [line["logger"] for line in own] == ["tests.logs.route", "uvicorn.access"], lines
        assert own[0]["message"] == "handling the request"
        assert '"GET /log-something HTTP/1.1" 200' in own[1]["message"]
    # Start-up and shutdown lines belong to no request.
    outside = [line for line in lines if line["request_id"] not in request_ids]
    assert outside, lines
    assert all(line["request_id"] is None for line in outside), outside
    assert {"timestamp", "level", "logger", "message", "request_id"} <= set(lines[0])


@pytest.mark.usefixtures("restore_logging")
async def test_a_request_id_from_the_caller_is_kept(tmp_path: Path) -> None:
    stream = io.StringIO()
    settings = make_settings(
        f"sqlite:///{tmp_path}/logs.db", log_format="text", scheduler_enabled=False
    )
    configure_logging(settings, stream)
    given = uuid.uuid4().hex
    async with served(logging_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/log-something", headers={REQUEST_ID_HEADER: given})

    assert response.headers[REQUEST_ID_HEADER] == given
    request_lines = [line for line in stream.getvalue().splitlines() if f"[{given}]" in line]
    assert len(request_lines) == 2, stream.getvalue()
    assert "tests.logs.route" in request_lines[0]
    assert "handling the request" in request_lines[0]
    assert "uvicorn.access" in request_lines[1]
    # Text, not JSON, and lines outside a request show "-" for the ID.
    assert not stream.getvalue().lstrip().startswith("{")
    assert any(" [-] " in line for line in stream.getvalue().splitlines())


def production_settings(**overrides: object) -> Settings:
    # make_settings also sets what production requires besides DATABASE_URL (REDIS_URL).
    values: dict[str, object] = {"environment": "production", **overrides}
    return make_settings("postgresql://service@db.internal:5432/service", **values)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, True),
        ({"log_format": "text"}, False),
        ({"environment": "staging"}, True),
    ],
    ids=["production-auto", "production-text", "staging-auto"],
)
def test_auto_means_json_outside_development(overrides: dict[str, object], expected: bool) -> None:
    assert uses_json(production_settings(**overrides)) is expected
    assert uses_json(make_settings("sqlite:///dev.db")) is False
    assert uses_json(make_settings("sqlite:///dev.db", log_format="json")) is True


def test_production_lines_are_one_json_object_each_even_with_a_traceback() -> None:
    stream = io.StringIO()
    handler = build_handler(production_settings(), stream)
    logger = logging.getLogger("tests.logs.production")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("slow check", extra={"check": "database", "seconds": 1.5})
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            logger.exception("job failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    warning, failure = json_lines(stream.getvalue())
    assert warning["level"] == "WARNING"
    assert warning["logger"] == "tests.logs.production"
    assert warning["message"] == "slow check"
    assert (warning["check"], warning["seconds"]) == ("database", 1.5)
    assert warning["request_id"] is None
    assert failure["level"] == "ERROR"
    assert "RuntimeError: boom" in failure["exc_info"]


def test_a_cut_short_shutdown_logs_one_line_per_cancellation_not_a_traceback() -> None:
    """What uvicorn logs when it cancels a request and the lifespan (a forced exit)."""
    stream = io.StringIO()
    handler = configure_logging(make_settings("sqlite:///dev.db", log_format="json"), stream)
    logger = logging.getLogger("uvicorn.error")
    try:
        try:
            raise asyncio.CancelledError
        except asyncio.CancelledError as error:
            logger.error("Exception in ASGI application\n", exc_info=error)
            # Starlette's lifespan.shutdown.failed message: the formatted traceback.
            logger.error(
                "Traceback (most recent call last):\n  ...\nasyncio.exceptions.CancelledError\n"
            )
        logger.error("Exception in ASGI application\n", exc_info=RuntimeError("boom"))
    finally:
        logging.getLogger().removeHandler(handler)

    request, lifespan, other = json_lines(stream.getvalue())
    assert (request["level"], request["message"]) == ("ERROR", REQUEST_CANCELLED)
    assert "exc_info" not in request
    assert (lifespan["level"], lifespan["message"]) == ("WARNING", FORCED_EXIT)
    assert "RuntimeError: boom" in other["exc_info"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get_when_up(url: str, headers: dict[str, str]) -> httpx.Response:
    """GET ``url`` once the server answers (retrying refused connections for 20 s)."""
    async with httpx.AsyncClient() as http:
        for _ in range(400):
            try:
                return await http.get(url, headers=headers)
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
    pytest.fail(f"nothing answered at {url}")


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "{{ cookiecutter.package_name }}", "serve"],
        ["-m", "uvicorn", "{{ cookiecutter.package_name }}.main:app"],
    ],
    ids=["python-m", "uvicorn"],
)
async def test_both_ways_to_serve_write_json_lines_with_the_request_id(
    command: list[str], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        "DATABASE_URL": f"sqlite:///{tmp_path}/serve.db",
        "SCHEDULER_ENABLED": "false",
        "SECRETS_DIR": str(tmp_path / "none"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS_PORT": "0",
        "FORWARDED_ALLOW_IPS": "10.1.2.3",
    }
    argv = [*command, "--port", str(port)] if "uvicorn" in command else command
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    given = uuid.uuid4().hex
    try:
        # A client naming itself: believed only from FORWARDED_ALLOW_IPS, not from us.
        response = await get_when_up(
            f"http://127.0.0.1:{port}/health/live",
            {REQUEST_ID_HEADER: given, "X-Forwarded-For": "203.0.113.9"},
        )
    finally:
        process.terminate()
        out, err = await asyncio.wait_for(process.communicate(), 30)

    assert response.status_code == 200
    assert response.headers[REQUEST_ID_HEADER] == given
    lines = json_lines(out.decode() + err.decode())
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert len(access) == 1, lines
    assert access[0]["request_id"] == given
    assert '"GET /health/live HTTP/1.1" 200' in access[0]["message"]
    assert access[0]["message"].startswith("127.0.0.1:"), "an untrusted X-Forwarded-For"
    assert any(line["logger"] == "uvicorn.error" for line in lines), lines
