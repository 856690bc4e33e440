"""Which database errors mean "unavailable, retry later" rather than a bug.

Both ORMs reach PostgreSQL through asyncpg, and neither says plainly when a query
failed because the database is unavailable: SQLAlchemy wraps most asyncpg errors
in its generic ``DBAPIError``, Tortoise lets them through or wraps them in its
``OperationalError``. What does say so is the error chain: the SQLSTATE of the
server's error (PostgreSQL, Appendix A "Error Codes"), asyncpg's own "connection
is closed", an ``OSError`` or a ``TimeoutError`` from the socket. This module
reads the chain; the database modules decide which exceptions to ask about.

An outage is expected, so the driver's own reports of it are one WARNING line each,
not a traceback: an orphaned pool release (asyncpg, ``quiet_orphaned_releases``) and a
pooled connection that fails to close (SQLAlchemy, ``quiet_pool_close_failures``).

``connection_problem`` reads it for people: what stopped a connection, to which
``host:port`` and database, and what to do next, in one line for the commands that
connect before anything else does (the migrations, ``make db``) and for the
service's start (``report_first_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg

from .postgres import PostgresURL

logger = logging.getLogger(__name__)

# SQLSTATE classes and codes that mean the database cannot serve right now.
UNAVAILABLE_SQLSTATE_CLASSES = (
    "08",  # connection exception: refused, reset, closed
    "53",  # insufficient resources: too many connections, out of memory or disk
    "57P",  # operator intervention: session terminated, shutdown, cannot connect now
)
UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57014",  # query_canceled: statement_timeout (DATABASE_STATEMENT_TIMEOUT) fired
        "55P03",  # lock_not_available: lock_timeout fired
        "25006",  # read_only_sql_transaction: a standby during a failover
    }
)
# SQLSTATE classes of a configuration mistake: 28 invalid authorization (wrong
# password), 3D invalid catalog name (no such database).
MISCONFIGURED_SQLSTATE_CLASSES = ("28", "3D")
# asyncpg's messages for a connection that is gone, or that a fault left in the
# middle of an operation (its InterfaceError and InternalClientError have no SQLSTATE).
BROKEN_CONNECTION_MESSAGES = (
    "connection is closed",
    "connection was closed",
    "another operation",
)
# Seconds asyncpg waits beyond statement_timeout before it gives up on the server.
CLIENT_TIMEOUT_MARGIN = 1.0
# Longest cause text a log line quotes: a driver message, not a stack of them.
MAX_REASON_CHARS = 200
# What SQLAlchemy's pool logs at ERROR, with a traceback, when closing a pooled
# connection fails (``Pool._close_connection`` in sqlalchemy/pool/base.py).
POOL_CLOSE_FAILURE = "Exception closing connection"
# SQLSTATE of a database the server does not know (invalid_catalog_name).
NO_SUCH_DATABASE = "3D000"
# SQLSTATE class of a refused login (invalid_authorization_specification, wrong password).
REFUSED_LOGIN_CLASS = "28"


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it wraps: ``orig`` (SQLAlchemy) or ``__cause__`` (``raise ... from``).

    Not ``__context__``: a bug raised while handling an outage is still a bug.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "orig", None)
        if isinstance(wrapped, BaseException) and id(wrapped) not in seen:
            current = wrapped
        else:
            current = current.__cause__


def says_unavailable(error: BaseException) -> bool:
    """Whether anything in ``error``'s chain says the database is unavailable.

    True for a SQLSTATE of ``UNAVAILABLE_SQLSTATE_CLASSES`` or ``UNAVAILABLE_SQLSTATES``,
    a SQLAlchemy error with ``connection_invalidated``, asyncpg's "connection is
    closed" or "another operation (...) is in progress" (a connection a fault left
    mid-operation), an ``OSError`` (refused, reset, unknown host) or a ``TimeoutError``
    (connect timeout, asyncpg's ``command_timeout``).
    """
    for cause in causes(error):
        if getattr(cause, "connection_invalidated", False) is True:
            return True
        if isinstance(cause, OSError | TimeoutError):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate in UNAVAILABLE_SQLSTATES or sqlstate.startswith(UNAVAILABLE_SQLSTATE_CLASSES)
        ):
            return True
        if type(cause).__module__.startswith("asyncpg") and any(
            message in str(cause) for message in BROKEN_CONNECTION_MESSAGES
        ):
            return True
    return False


def says_misconfigured(error: BaseException) -> bool:
    """Whether ``error``'s chain holds a SQLSTATE of ``MISCONFIGURED_SQLSTATE_CLASSES``:
    the server refused the credentials or knows no such database.
    """
    return any(
        isinstance(getattr(cause, "sqlstate", None), str)
        and getattr(cause, "sqlstate", "").startswith(MISCONFIGURED_SQLSTATE_CLASSES)
        for cause in causes(error)
    )


def reason(error: BaseException) -> str:
    """One line naming ``error`` and its innermost cause, e.g. for a log line.

    ``DBAPIError <- TooManyConnectionsError: sorry, too many clients already``: the
    cause's message is cut to its first line and ``MAX_REASON_CHARS`` characters.
    """
    chain = list(causes(error))
    innermost = chain[-1]
    message = str(innermost).strip().splitlines()[0] if str(innermost).strip() else ""
    if len(message) > MAX_REASON_CHARS:
        message = message[:MAX_REASON_CHARS] + "..."
    names = type(error).__name__
    if innermost is not error:
        names += f" <- {type(innermost).__name__}"
    return f"{names}: {message}" if message else names


def connection_problem(error: BaseException, server: PostgresURL) -> str | None:
    """One line: what in ``error``'s chain stopped a connection to ``server``, and the next
    step; ``None`` when the chain holds no such problem (a bug, or a statement's error).

    Names the server by ``PostgresURL.address`` (``host:port``) and its database, never
    the user's password, and says what to change: ``make db`` for a database that does
    not exist, the host, port, user or password in ``DATABASE_URL`` otherwise. E.g.
    ``database "billing" does not exist on 127.0.0.1:5432: create it with make db,
    or fix its name in DATABASE_URL``.
    """
    for cause in causes(error):
        sqlstate = getattr(cause, "sqlstate", None)
        if sqlstate == NO_SUCH_DATABASE:
            name = f'"{server.database}"' if server.database else "named by the user"
            return (
                f"database {name} does not exist on {server.address}: create it with "
                "make db, or fix its name in DATABASE_URL"
            )
        if isinstance(sqlstate, str) and sqlstate.startswith(REFUSED_LOGIN_CLASS):
            return (
                f"{server.address} refused the login ({_first_line(cause)}): fix the user "
                "or password in DATABASE_URL"
            )
        if isinstance(cause, socket.gaierror):
            return (
                f"cannot find the host of {server.address} ({_first_line(cause)}): "
                "fix the host in DATABASE_URL"
            )
        if isinstance(cause, ConnectionRefusedError):
            return (
                f"nothing accepts connections on {server.address} (connection refused): "
                "start PostgreSQL there, or fix the host and port in DATABASE_URL"
            )
        if isinstance(cause, TimeoutError):
            return (
                f"{server.address} did not answer in time: check the host and port in "
                "DATABASE_URL, and the network between"
            )
        if isinstance(cause, OSError):
            return (
                f"cannot connect to {server.address} ({_first_line(cause)}): check the "
                "host and port in DATABASE_URL"
            )
    return None


async def _try_first_connection(server: PostgresURL, connect_timeout: float) -> None:
    try:
        connection = await asyncpg.connect(server.dsn, timeout=connect_timeout)
    except Exception as error:
        problem = connection_problem(error, server) or reason(error)
        logger.warning(
            "database not reachable at start-up: %s; readiness fails until then", problem
        )
    else:
        await connection.close()


@asynccontextmanager
async def report_first_connection(
    server: PostgresURL, *, connect_timeout: float
) -> AsyncIterator[None]:
    """Within the block, connect once to ``server`` in the background (within
    ``connect_timeout`` seconds) and close at once; when that fails, log one WARNING
    line naming the server, the problem and the next step (``connection_problem``).

    Start-up neither waits for it nor stops: the pools connect on first use, so the
    service starts while the database is down and readiness reports it; this line says
    at start what to fix (a database to create with ``make db``, a host or password
    in ``DATABASE_URL``). The attempt is cancelled if still running at the block's end.
    """
    attempt = asyncio.create_task(_try_first_connection(server, connect_timeout))
    try:
        yield
    finally:
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attempt


def _first_line(error: BaseException) -> str:
    # The error's own message, one line, at most MAX_REASON_CHARS characters.
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else type(error).__name__
    return message[:MAX_REASON_CHARS] + ("..." if len(message) > MAX_REASON_CHARS else "")


def statement_bounds(statement_timeout: float) -> dict[str, Any]:
    """asyncpg connection options that bound every statement to ``statement_timeout`` s.

    PostgreSQL's ``statement_timeout`` (in ms) cancels a slow statement on the server,
    which answers SQLSTATE 57014; asyncpg's ``command_timeout``, one
    ``CLIENT_TIMEOUT_MARGIN`` later, gives up on a server that does not answer at all
    (frozen, or its host gone), which no server-side timeout can do.
    """
    return {
        "server_settings": {"statement_timeout": str(round(statement_timeout * 1000))},
        "command_timeout": statement_timeout + CLIENT_TIMEOUT_MARGIN,
    }


def is_orphaned_release_failure(context: dict[str, Any]) -> bool:
    """Whether an event loop error ``context`` is a pooled connection's reset failing
    after its release was cancelled, with an outage in the error's chain.

    asyncpg's ``Pool.release`` shields the release (``PoolConnectionHolder.release``)
    from the caller's cancellation. When a statement deadline cancels a request
    while its connection is being released during an outage, the shielded reset
    goes on alone, times out or fails, and asyncpg terminates that connection (the
    pool opens a new one when needed). Nobody awaits that task any more, so asyncio
    reports "Task exception was never retrieved" with a traceback.
    """
    task = context.get("future")
    error = context.get("exception")
    if not isinstance(task, asyncio.Task) or not isinstance(error, BaseException):
        return False
    coroutine = task.get_coro()
    name = getattr(coroutine, "__qualname__", "")
    module = getattr(getattr(coroutine, "cr_code", None), "co_filename", "")
    return (
        name == "PoolConnectionHolder.release" and "asyncpg" in module and says_unavailable(error)
    )


@contextmanager
def quiet_orphaned_releases(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Within the block, ``loop`` logs an orphaned release failure as one WARNING line.

    Only ``is_orphaned_release_failure`` contexts: every other error goes to the
    handler in place before (asyncio's default when none was set), restored at exit.
    """
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_orphaned_release_failure(context):
            logger.warning(
                "a pooled database connection was dropped after its release was cancelled: %s",
                reason(context["exception"]),
            )
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)


def pool_close_failure(record: logging.LogRecord) -> BaseException | None:
    """The error, when ``record`` is SQLAlchemy's pool reporting at ERROR that closing a
    pooled connection failed with an outage in the error's chain; else ``None``.

    During an outage asyncpg's close waits up to its ``command_timeout`` for a server
    that does not answer, then raises ``TimeoutError``; the pool drops the connection
    (it opens a new one when needed) and logs a 30-line traceback. The pool closes a
    connection when one beyond ``DATABASE_POOL_SIZE`` is returned, and at disposal.
    """
    error = record.exc_info[1] if record.exc_info else None
    if (
        error is not None
        and record.levelno >= logging.ERROR
        and isinstance(record.msg, str)
        and record.msg.startswith(POOL_CLOSE_FAILURE)
        and says_unavailable(error)
    ):
        return error
    return None


class _QuietPoolCloseFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = pool_close_failure(record)
        if error is not None:
            record.msg = "a pooled database connection was dropped, its close failed: %s"
            record.args = (reason(error),)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def quiet_pool_close_failures(pool_logger: logging.Logger) -> Iterator[None]:
    """Within the block, ``pool_logger`` (SQLAlchemy's pool's) logs a pooled connection
    failing to close during an outage as one WARNING line.

    Only ``pool_close_failure`` records: every other record passes unchanged. The
    filter is removed at exit.
    """
    quiet = _QuietPoolCloseFailures()
    pool_logger.addFilter(quiet)
    try:
        yield
    finally:
        pool_logger.removeFilter(quiet)
