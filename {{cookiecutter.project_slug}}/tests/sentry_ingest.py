"""A Sentry ingestion endpoint on loopback: ``POST /api/<project>/envelope/``, as Relay reads it.

The SDK sends envelopes (https://develop.sentry.dev/sdk/data-model/envelopes/): a
header line of JSON, then items, each an item header line of JSON (``type``, and
``length`` in bytes when given) and its payload (``length`` bytes, else up to the
next newline). The body is compressed per ``Content-Encoding`` (``gzip``; ``br``
when the SDK finds brotli installed). The peer keeps every item it decoded, with
the raw decoded envelope, so tests can also search the bytes for secrets.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

PROJECT_ID = 42
ENVELOPE_PATH = re.compile(r"^/api/(\d+)/envelope/$")


@dataclass
class Item:
    type: str
    header: dict[str, Any]
    payload: dict[str, Any]


@dataclass
class SentryIngest:
    """What the endpoint received: decoded items and the raw envelopes."""

    server: HTTPServer
    items: list[Item] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def dsn(self, public_key: str) -> str:
        return f"http://{public_key}@127.0.0.1:{self.server.port}/{PROJECT_ID}"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [item.payload for item in self.items if item.type == kind]

    def handle(self, request: Request) -> Response:
        match = ENVELOPE_PATH.match(request.path)
        if match is None or int(match.group(1)) != PROJECT_ID:
            return Response("no such project", status=404)
        encoding = request.headers.get("Content-Encoding", "")
        body = decode(request.get_data(), encoding)
        items = parse_envelope(body)
        with self.lock:
            self.raw.append(body)
            self.encodings.append(encoding)
            self.items.extend(items)
        return Response(json.dumps({"id": "0" * 32}), content_type="application/json")


def decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found,unused-ignore]

        data: bytes = brotli.decompress(body)
        return data
    if encoding in ("", "identity"):
        return body
    raise ValueError(f"unknown Content-Encoding {encoding!r}")


def parse_envelope(body: bytes) -> list[Item]:
    """The items of an envelope; raises ``ValueError`` on a malformed one."""
    header_line, _, rest = body.partition(b"\n")
    json.loads(header_line)
    items: list[Item] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        header = json.loads(item_line)
        length = header.get("length")
        if length is not None:
            payload, rest = rest[:length], rest[length:]
            if rest.startswith(b"\n"):
                rest = rest[1:]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append(Item(header["type"], header, json.loads(payload)))
    return items
