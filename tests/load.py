"""Traffic for the fault suite: writers and readers hitting the baked service from threads.

Every response is tallied by class (2xx, 503, 500, other, no answer); every write
carries a unique name, so that after a fault the database can be asked which
confirmed writes were lost and which were applied twice. Each thread keeps its
own keep-alive connection, as a client behind a proxy would.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import httpx

from .services import PrivatePostgres

PROBE_INTERVAL = 0.25

# Requests a client may send on purpose or by mistake, each answered 4xx, never 500:
# (method, path, raw JSON body or None). Python's json reads NaN, Infinity and lone
# surrogates, which the service must refuse and quote back in a 422 it can encode.
HOSTILE_INPUTS: list[tuple[str, str, bytes | None]] = [
    ("POST", "/items", b'{"name": NaN}'),
    ("POST", "/items", b'{"name": Infinity}'),
    ("POST", "/items", b'{"name": 1e400}'),
    ("POST", "/items", b'{"name": "\\ud800"}'),
    ("POST", "/items", b'{"name": "ok", "description": "\\udfff"}'),
    ("POST", "/items", b'"\\ud800"'),
    ("POST", "/items", b'{"name": "a\\u0000b"}'),
    ("POST", "/items", b'{"name": "\xff\xfe"}'),
    ("POST", "/items", b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("POST", "/items", b'{"name": "' + b"x" * 500_000 + b'"}'),
    ("GET", f"/items/{2**63}", None),
    ("DELETE", f"/items/{2**31}", None),
    ("GET", f"/items?offset={2**63}", None),
    ("GET", "/items?limit=NaN", None),
]


@dataclass
class Tally:
    """What the service answered during one fault."""

    name: str
    sent: int = 0
    ok: int = 0
    unavailable: int = 0
    server_errors: int = 0
    other: Counter[int] = field(default_factory=Counter)
    no_answer: int = 0
    no_answer_kinds: Counter[str] = field(default_factory=Counter)
    # 503s lacking Retry-After, Link or the status_page field.
    incomplete_503: int = 0
    slowest: float = 0.0
    confirmed: set[str] = field(default_factory=set)
    lost: int = 0
    duplicated: int = 0
    peak_rss_mb: float | None = None
    # Readiness probes (every PROBE_INTERVAL s, not counted above) that answered 503.
    not_ready: int = 0

    def figures(self) -> dict[str, object]:
        """The figures the fault suite reports (``conftest.pytest_terminal_summary``)."""
        return {
            "fault": self.name,
            "sent": self.sent,
            "2xx": self.ok,
            "503": self.unavailable,
            "500": self.server_errors,
            "other": dict(self.other),
            "no answer": self.no_answer,
            "no answer kinds": dict(self.no_answer_kinds),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "slowest s": round(self.slowest, 2),
            "peak RSS MB": self.peak_rss_mb,
            "readiness 503": self.not_ready,
        }


class Load:
    """``writers`` threads POSTing items and ``readers`` threads listing and getting them.

    Use as a context manager: traffic flows inside the block; ``tally`` holds the
    result once it is left.
    """

    def __init__(
        self,
        base_url: str,
        name: str,
        *,
        writers: int = 4,
        readers: int = 4,
        timeout: float = 20.0,
    ) -> None:
        self.base_url = base_url
        self.tally = Tally(name)
        self.prefix = "w-" + re.sub(r"\W+", "_", name)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counter = itertools.count()
        self._threads = [
            threading.Thread(target=self._write, name=f"writer-{i}") for i in range(writers)
        ] + [threading.Thread(target=self._read, name=f"reader-{i}") for i in range(readers)]
        # A readiness probe as the kubelet sends it, only faster.
        self._threads.append(threading.Thread(target=self._probe, name="probe"))

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)

    def _record(self, response: httpx.Response | None, elapsed: float) -> None:
        with self._lock:
            tally = self.tally
            tally.sent += 1
            tally.slowest = max(tally.slowest, elapsed)
            if response is None:
                tally.no_answer += 1
            elif 200 <= response.status_code < 300:
                tally.ok += 1
            elif response.status_code == 503:
                tally.unavailable += 1
                if not (
                    response.headers.get("retry-after")
                    and 'rel="status"' in response.headers.get("link", "")
                    and "status_page" in response.json()
                ):
                    tally.incomplete_503 += 1
            elif response.status_code == 500:
                tally.server_errors += 1
            else:
                tally.other[response.status_code] += 1

    def _send(
        self, client: httpx.Client, method: str, path: str, json: object = None
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response: httpx.Response | None = client.request(method, path, json=json)
        except httpx.TransportError as error:
            response = None
            with self._lock:
                self.tally.no_answer_kinds[type(error).__name__] += 1
        self._record(response, time.monotonic() - started)
        return response

    def _write(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                name = f"{self.prefix}-{next(self._counter)}"
                response = self._send(client, "POST", "/items", json={"name": name})
                if response is not None and response.status_code == 201:
                    with self._lock:
                        self.tally.confirmed.add(name)
                elif response is None or response.status_code == 503:
                    time.sleep(0.05)

    def _read(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            for turn in itertools.count():
                if self._stop.is_set():
                    return
                path = "/items?limit=5" if turn % 2 else f"/items/{turn % 50 + 1}"
                response = self._send(client, "GET", path)
                if response is None or response.status_code == 503:
                    time.sleep(0.05)

    def _probe(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while not self._stop.wait(PROBE_INTERVAL):
                try:
                    status = client.get("/health/ready").status_code
                except httpx.TransportError:
                    continue
                if status == 503:
                    with self._lock:
                        self.tally.not_ready += 1

    def check_writes(self, server: PrivatePostgres) -> None:
        """Count confirmed writes missing from the database, and writes applied twice."""
        rows = server.sql(
            f"SELECT name, count(*) FROM items WHERE name LIKE '{self.prefix}-%' GROUP BY name"
        )
        stored = {
            name: int(count) for name, count in (line.split("|") for line in rows.splitlines())
        }
        self.tally.lost = len(self.tally.confirmed - set(stored))
        self.tally.duplicated = sum(1 for count in stored.values() if count > 1)
