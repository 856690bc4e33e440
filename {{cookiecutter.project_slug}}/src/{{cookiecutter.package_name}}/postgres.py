"""One reading of a PostgreSQL ``DATABASE_URL``, and the keys of advisory locks.

The pool (either ORM), the scheduler's leader lease and the migrations all connect
with asyncpg, and all of them take the URL from ``parse_postgres_url``: the query
parameters are checked once, at start-up, and every connection is then opened by
asyncpg from the same libpq-style DSN (``PostgresURL.dsn``). Before this module
each reader parsed the URL its own way: ``?ssl=require`` (SQLAlchemy's asyncpg
spelling) reached the server as a run-time parameter named ``ssl`` and every
connection of the leader failed, while ``?sslmode=require`` (libpq's spelling)
broke the pool instead.

Accepted query parameters: libpq's that asyncpg reads from a URL (``QUERY_PARAMETERS``)
and ``ssl`` as another name for ``sslmode``. Anything else is refused with one line:
asyncpg would send an unknown name to the server as a setting, which fails every
connection long after start-up. So is a port that is not a number from 1 to 65535
(in the netloc or ``?port=``): each reader would otherwise fail its own way, with a
traceback (``invalid literal for int()``, Tortoise's ``Port is not an integer``).
No message echoes the URL's text: ``DATABASE_URL`` is a secret. ``normalize_database_url``
gives any accepted URL (SQLite's too) the async driver the service uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import asyncpg

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq's connection parameters that asyncpg 0.30+ reads from a URL's query string
# (asyncpg's connect_utils._parse_connect_dsn_and_args).
QUERY_PARAMETERS = frozenset(
    {
        "host",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslnegotiation",
        "sslcrl",
        "sslpassword",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "service",
        "application_name",
    }
)
# Other spellings of a parameter: SQLAlchemy documents ``?ssl=`` for asyncpg.
ALIASES = {"ssl": "sslmode"}
SCHEMES = ("postgres", "postgresql")
# libpq's default port, the one a URL without a port reaches.
DEFAULT_PORT = 5432


@dataclass(frozen=True, slots=True)
class PostgresURL:
    """A checked PostgreSQL URL.

    ``url``: ``postgresql+asyncpg://...`` with the query in its canonical form (the
    form ``DATABASE_URL`` is normalised to); ``dsn``: the same for asyncpg
    (``postgresql://...``); ``host``: the host of the netloc or of ``?host=``,
    ``None`` when neither names one (libpq's default Unix socket); ``port``: the port
    of the netloc or of ``?port=``, ``None`` when neither names one (``DEFAULT_PORT``);
    ``database``: the database name, ``None`` when the URL names none.
    """

    url: str
    dsn: str
    host: str | None
    port: int | None = None
    database: str | None = None

    @property
    def address(self) -> str:
        """``host:port`` as a log line names the server (never the user or password):
        ``db.internal:5432``, ``[::1]:5433``, ``local socket:5432`` without a host."""
        host = self.host or "local socket"
        if ":" in host and not host.startswith("/"):
            host = f"[{host}]"
        return f"{host}:{self.port or DEFAULT_PORT}"

    @property
    def url_without_query(self) -> str:
        """``url`` without its query: for SQLAlchemy, whose asyncpg dialect would pass
        each query parameter to ``asyncpg.connect`` as an argument of that name."""
        return self.url.partition("?")[0]


def parse_postgres_url(url: str) -> PostgresURL:
    """Check ``url`` (``postgres://``, ``postgresql://`` or ``postgresql+<driver>://``).

    Raises:
        ValueError: not a PostgreSQL URL, a port that is not a number from 1 to 65535,
            a query parameter that is unknown, given twice or (``sslmode``) not one of
            ``SSL_MODES``; the message is one line.
    """
    parts = urlsplit(url)
    if parts.scheme.split("+", 1)[0].lower() not in SCHEMES:
        raise ValueError("must be a postgres:// or postgresql:// URL")
    query: dict[str, str] = {}
    for raw_name, value in parse_qsl(parts.query, keep_blank_values=True):
        name = ALIASES.get(raw_name, raw_name)
        if name not in QUERY_PARAMETERS:
            known = ", ".join(sorted(QUERY_PARAMETERS | ALIASES.keys()))
            raise ValueError(f"unknown query parameter {raw_name!r} (known: {known})")
        if name in query:
            raise ValueError(f"query parameter {name!r} is given twice")
        if name == "sslmode" and value not in SSL_MODES:
            raise ValueError(f"{raw_name}={value!r} must be one of {', '.join(SSL_MODES)}")
        query[name] = value
    ports = [_port(port) for port in _netloc_ports(parts.netloc)]
    if "port" in query:
        ports += [_port(port) for port in query["port"].split(",")]
    rest = f"//{parts.netloc}{parts.path}"
    if query:
        rest += f"?{urlencode(query)}"
    host = parts.hostname or query.get("host") or None
    return PostgresURL(
        url=f"postgresql+asyncpg:{rest}",
        dsn=f"postgresql:{rest}",
        host=host,
        port=ports[0] if ports else None,
        database=unquote(parts.path.lstrip("/")) or query.get("dbname") or None,
    )


def _netloc_ports(netloc: str) -> list[str]:
    # The port of each host of the netloc (libpq allows ``h1:5432,h2:5433``), as written.
    hosts = netloc.rpartition("@")[2]
    ports = []
    for host in hosts.split(","):
        address = host.rpartition("]")[2] if host.startswith("[") else host
        _, colon, port = address.rpartition(":")
        if colon and port:
            ports.append(port)
    return ports


def _port(text: str) -> int:
    # A TCP port as libpq takes one: digits only, 1 to 65535. Text that is not a number
    # is not echoed: it may be a password (``user:secret`` written without ``@host``).
    if not (text.isascii() and text.isdigit()):
        raise ValueError("its port must be a number from 1 to 65535")
    if not 1 <= int(text) <= 65535:
        raise ValueError(f"its port {int(text)} must be from 1 to 65535")
    return int(text)


def libpq_dsn(url: str) -> str:
    """``url`` as asyncpg takes it (``PostgresURL.dsn``).

    Raises:
        ValueError: as ``parse_postgres_url``.
    """
    return parse_postgres_url(url).dsn


def pool_connect(dsn: str) -> Callable[..., Awaitable[asyncpg.Connection]]:
    """A ``connect`` for ``asyncpg.create_pool`` that opens every connection from ``dsn``.

    The pool's own arguments (host, user, timeouts, settings) are passed on and take
    precedence over the DSN's; its positional DSN (``None`` for Tortoise) is ignored.
    """

    async def connect(_dsn: str | None = None, **arguments: Any) -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(dsn, **arguments)
        return connection

    return connect


def advisory_lock_key(name: str) -> int:
    """The advisory lock key of ``name``: a signed 64-bit integer (BLAKE2b of the name).

    Stable across releases and processes; distinct for two services sharing a server.
    """
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# Serialises migration runs (``migrations/env.py`` or ``migrate.py``): pods that start
# together migrate one at a time.
MIGRATION_LOCK_KEY = advisory_lock_key(
    "{{ cookiecutter.project_slug }}:migrations",
)


def normalize_database_url(url: str) -> str:
    """Return ``url`` with the async driver the service uses.

    ``postgres://`` (Heroku, many managed services), ``postgresql://`` and
    ``postgresql+<driver>://`` become ``postgresql+asyncpg://``; ``sqlite://``
    becomes ``sqlite+aiosqlite://``. Other schemes are returned unchanged and
    rejected by validation.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgres", "postgresql"):
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    return url
