"""A loopback stand-in for the Healthchecks Management API v3, as documented.

Behaviour taken from https://healthchecks.io/docs/api/ and Healthchecks' own
``hc/api/views.py`` and ``hc/api/decorators.py``: ``X-Api-Key`` of 32 characters
(else ``401 {"error": "missing api key"}``; an unknown key ``401 {"error": "wrong
api key"}``); ``POST /checks/`` validated strictly (``timeout`` and ``grace`` whole
seconds from 60 to 31,536,000, strings for ``schedule``, ``tz``, ``channels``,
``unique`` a list of ``name``, ``slug``, ``tags``, ``timeout``, ``grace``; else
``400``), ``unique`` looks up an existing check and updates it (``200``) or creates
one (``201``, or ``403`` beyond the project's check limit); ``channels`` as
``_update`` reads it: absent leaves the check's integrations as they are (none for a
new check), ``"*"`` assigns every integration of the project, ``""`` none, else each
comma-separated item must be one integration's id or name (``400 {"error": "invalid
channel identifier: <item>"}``, ``"empty channel identifier"``, ``"non-unique channel
identifier: <item>"``), checked before anything is saved; ``GET /channels/`` lists
``{"id", "name", "kind"}`` per integration; ``GET /checks/``
filters by every ``tag`` (all of them, each a whole word of ``tags``) and ``slug``;
a check's JSON carries ``timeout`` for a simple check, ``schedule`` and ``tz`` for a
cron one, and ``channels`` as the sorted comma-separated integration codes.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

API_KEY = "k" * 32
BOUNDS = (60, 31_536_000)
UNIQUE_FIELDS = {"name", "slug", "tags", "timeout", "grace"}
STRING_FIELDS = ("name", "slug", "tags", "desc", "schedule", "tz", "channels")


class HealthchecksApi:
    """The API on ``server`` under ``/api/v3/``; ``checks`` by uuid, ``requests`` made."""

    def __init__(self, server: HTTPServer, *, channels: int = 2) -> None:
        """``channels`` integrations in the project, named ``integration-1`` and so on."""
        self.server = server
        # Checks the project may hold: beyond it a create answers 403 (free plan: 20).
        self.check_limit = 20
        self.integrations = [
            {"id": str(uuid.uuid4()), "name": f"integration-{number}", "kind": "email"}
            for number in range(1, channels + 1)
        ]
        self.checks: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        server.expect_request(re.compile(r"^/api/v3/")).respond_with_handler(self.handle)

    @property
    def channels(self) -> list[str]:
        """The ids (codes) of the project's integrations."""
        return [integration["id"] for integration in self.integrations]

    @property
    def url(self) -> str:
        return self.server.url_for("/api/v3")

    def add(self, **fields: Any) -> dict[str, Any]:
        """A check already in the project, as if created in the web UI."""
        check = {"name": "", "slug": "", "tags": "", "desc": "", "grace": 3600, "timeout": 86400}
        check.update(fields)
        check.setdefault("channels", [])
        code = str(uuid.uuid4())
        self.checks[code] = check
        return check

    def handle(self, request: Request) -> Response:
        self.requests.append((request.method, request.full_path.rstrip("?")))
        key = request.headers.get("X-Api-Key", "")
        if len(key) != 32:
            return _json({"error": "missing api key"}, 401)
        if key != API_KEY:
            return _json({"error": "wrong api key"}, 401)
        path = request.path.removeprefix("/api/v3/")
        if path == "channels/" and request.method == "GET":
            return _json({"channels": self.integrations})
        if path == "checks/" and request.method == "GET":
            tags = set(request.args.getlist("tag"))
            slug = request.args.get("slug")
            found = [
                self.to_dict(code, check)
                for code, check in self.checks.items()
                if tags <= set(check["tags"].split()) and (not slug or check["slug"] == slug)
            ]
            return _json({"checks": found})
        if path == "checks/" and request.method == "POST":
            return self.create(json.loads(request.get_data() or b"{}"))
        if path.startswith("checks/") and request.method == "DELETE":
            code = path.removeprefix("checks/")
            if code not in self.checks:
                return Response("not found", 404)
            return _json(self.to_dict(code, self.checks.pop(code)))
        return Response("not found", 404)

    def create(self, spec: dict[str, Any]) -> Response:
        error = _invalid(spec)
        if error:
            return _json({"error": f"json validation error: {error}"}, 400)
        unique = spec.get("unique", [])
        code, check = None, None
        if unique and all(field in spec for field in unique):
            for each, existing in self.checks.items():
                if all(existing.get(field) == spec[field] for field in unique):
                    code, check = each, existing
                    break
        created = check is None
        if created and len(self.checks) >= self.check_limit:
            return Response("", 403)
        # Healthchecks' _update: the channels are checked before anything is saved.
        try:
            channels = self.resolve(spec.get("channels"))
        except ValueError as error:
            return _json({"error": str(error)}, 400)
        if check is None:
            code = str(uuid.uuid4())
            check = self.checks[code] = {
                "name": "",
                "slug": "",
                "tags": "",
                "desc": "",
                "grace": 3600,
                "timeout": 86400,
                "channels": [],
            }
        for field in ("name", "slug", "tags", "desc", "grace", "tz"):
            if field in spec:
                check[field] = spec[field]
        if "schedule" in spec:
            check["schedule"] = spec["schedule"]
            check.pop("timeout", None)
            check.setdefault("tz", "UTC")
        elif "timeout" in spec:
            check["timeout"] = spec["timeout"]
            check.pop("schedule", None)
            check.pop("tz", None)
        if channels is not None:
            check["channels"] = channels
        assert code is not None
        return _json(self.to_dict(code, check), 201 if created else 200)

    def resolve(self, channels: str | None) -> list[str] | None:
        """The codes ``channels`` assigns, ``None`` to leave them; ValueError as Healthchecks."""
        if channels is None:
            return None
        if channels == "*":
            return list(self.channels)
        if channels == "":
            return []
        codes: list[str] = []
        for item in channels.split(","):
            if item == "":
                raise ValueError("empty channel identifier")
            found = [each["id"] for each in self.integrations if item in (each["id"], each["name"])]
            if not found:
                raise ValueError(f"invalid channel identifier: {item}")
            if len(found) > 1:
                raise ValueError(f"non-unique channel identifier: {item}")
            codes.append(found[0])
        return sorted(set(codes))

    def to_dict(self, code: str, check: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            key: check[key] for key in ("name", "slug", "tags", "desc", "grace") if key in check
        }
        result.update(
            n_pings=0,
            status="new",
            started=False,
            last_ping=None,
            next_ping=None,
            manual_resume=False,
            methods="",
            uuid=code,
            ping_url=f"https://hc-ping.com/{code}",
            update_url=f"{self.url}/checks/{code}",
            channels=",".join(sorted(check["channels"])),
        )
        if "schedule" in check:
            result.update(schedule=check["schedule"], tz=check.get("tz", "UTC"))
        else:
            result["timeout"] = check["timeout"]
        return result


def _invalid(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return "value is not an object"
    for field in STRING_FIELDS:
        if field in spec and not isinstance(spec[field], str):
            return f"{field} is not a string"
    for field in ("timeout", "grace"):
        if field in spec:
            value = spec[field]
            if not isinstance(value, int) or isinstance(value, bool):
                return f"{field} is not a number"
            if not BOUNDS[0] <= value <= BOUNDS[1]:
                return f"{field} is too {'small' if value < BOUNDS[0] else 'large'}"
    if "slug" in spec and not re.fullmatch(r"[a-z0-9-_]*", spec["slug"]):
        return "slug does not match pattern"
    unique = spec.get("unique", [])
    if not isinstance(unique, list) or not set(unique) <= UNIQUE_FIELDS:
        return "an item in 'unique' has unexpected value"
    if "schedule" in spec and len(spec["schedule"].split()) != 5:
        return "schedule is not a valid cron or OnCalendar expression"
    return None


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")
