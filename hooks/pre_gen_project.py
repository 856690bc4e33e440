"""Validate every cookiecutter answer before anything is written.

Cookiecutter renders this file with the answers, runs it inside the freshly
created project directory, and deletes that directory when the hook exits
non-zero. A bad answer therefore prints one line naming the field, the value
and the rule, then one line saying how to bake again with the other answers
kept (cookiecutter's replay file, written before this hook runs), exits 1, and
leaves nothing on disk. Cookiecutter then logs its own report of the failed
hook, a traceback of its frames included: that part is cookiecutter's and no
hook can silence it.

The answers are read in ``main()``: ``tests/test_hooks.py`` imports this module
unrendered and calls its checks.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Callable
from pathlib import Path

# The answers as JSON, so that no quote or backslash in an answer can break this file.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

# RFC 1123 label, as Kubernetes validates names (k8s.io/apimachinery IsDNS1123Label).
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Pragmatic address check: one @, no spaces, a dot in the domain.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# PEP 440 public version, simplified to the forms a new service starts with.
VERSION = re.compile(r"^\d+(\.\d+){0,2}((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")
# Repository part of an OCI image reference (distribution/reference grammar):
# optional registry host[:port], then lowercase path components.
IMAGE_REPOSITORY = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
    r"(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)

# Modules the generated service (or its tests) imports: a package with one of
# these names would shadow it.
SHADOWED_MODULES = frozenset(
    {
        "aerich",
        "aiosqlite",
        "alembic",
        "apscheduler",
        "asgi_correlation_id",
        "asyncpg",
        "fastapi",
        "httpx",
        "migrations",
        "prometheus_client",
        "pydantic",
        "pydantic_settings",
        "pytest",
        "pythonjsonlogger",
        "redis",
        "sqlalchemy",
        "starlette",
        "tenacity",
        "test",
        "tests",
        "tortoise",
        "uvicorn",
    }
)

ORMS = ("sqlalchemy", "tortoise")
LICENSES = ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary")


# The longest package name the generated project's imports and strings are formatted
# for (ruff format, 100 columns); tests/test_project.py bakes one this long.
MAX_PACKAGE_NAME = 40


def check_dns_label(field: str, value: str) -> str | None:
    if len(value) > 63:
        return f"{field}: {value!r} is longer than 63 characters (DNS-1123 label)"
    if not DNS1123_LABEL.match(value):
        return (
            f"{field}: {value!r} is not a DNS-1123 label (lowercase letters, digits "
            "and '-', starting and ending with a letter or digit)"
        )
    return None


def check_package_name(field: str, value: str) -> str | None:
    if not value.isidentifier() or not value.isascii():
        return f"{field}: {value!r} is not a Python identifier"
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return f"{field}: {value!r} is a Python keyword"
    if value in SHADOWED_MODULES or value in sys.stdlib_module_names:
        return f"{field}: {value!r} would shadow the module {value!r} that the service imports"
    if value != value.lower():
        return f"{field}: {value!r} must be lowercase (PEP 8 package name)"
    if len(value) > MAX_PACKAGE_NAME:
        return (
            f"{field}: {value!r} is longer than {MAX_PACKAGE_NAME} characters "
            "(PEP 8: short names; the generated code is formatted for at most that)"
        )
    return None


def check_url(field: str, value: str) -> str | None:
    if not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
        return f"{field}: {value!r} is not an absolute http(s) URL"
    return None


def check_email(field: str, value: str) -> str | None:
    if not EMAIL.match(value):
        return f"{field}: {value!r} is not an email address (name@domain.tld)"
    return None


def check_version(field: str, value: str) -> str | None:
    if not VERSION.match(value):
        return f"{field}: {value!r} is not a PEP 440 version such as 0.1.0"
    return None


def check_image(field: str, value: str) -> str | None:
    if "@" in value or ":" in value.rsplit("/", 1)[-1]:
        return (
            f"{field}: {value!r} must be a repository without tag or digest "
            "(the Kubernetes overlays set the tag)"
        )
    if len(value) > 255 or not IMAGE_REPOSITORY.match(value):
        return (
            f"{field}: {value!r} is not an image repository such as "
            "ghcr.io/acme/my-service (lowercase path components)"
        )
    return None


def check_orm(field: str, value: str) -> str | None:
    if value not in ORMS:
        return f"{field}: {value!r} is not one of the choices: {', '.join(ORMS)}"
    return None


def check_license(field: str, value: str) -> str | None:
    if value not in LICENSES:
        return f"{field}: {value!r} is not one of the choices: {', '.join(LICENSES)}"
    return None


# A Kubernetes label value (k8s.io/apimachinery IsValidLabelValue), non-empty.
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# A percentage written as the alert rules write it: digits, at most three decimals.
PERCENT = re.compile(r"^\d{2}(\.\d{1,3})?$")
SECONDS = re.compile(r"^\d+(\.\d{1,3})?$")


def check_label_value(field: str, value: str) -> str | None:
    if len(value) > 63 or not LABEL_VALUE.match(value):
        return (
            f"{field}: {value!r} is not a Kubernetes label value (at most 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit)"
        )
    return None


def check_slo_percent(field: str, value: str) -> str | None:
    # Below 95 % the page's burn rate (14.4 times the budget) nears a 100 % error ratio.
    if not PERCENT.match(value) or not 95 <= float(value) < 100:
        return (
            f"{field}: {value!r} is not a percentage from 95 to below 100 with at most "
            "three decimals, such as 99.5 or 99.9"
        )
    return None


def check_latency(field: str, value: str) -> str | None:
    if not SECONDS.match(value) or not 0.005 <= float(value) <= 60:
        return (
            f"{field}: {value!r} is not a number of seconds from 0.005 to 60 "
            "with at most three decimals, such as 0.5"
        )
    return None


def check_page_url(field: str, value: str) -> str | None:
    error = check_url(field, value)
    if error is not None:
        return error
    if "#" in value or any(char in value for char in "\"'{}<> "):
        return (
            f"{field}: {value!r} must have no fragment ('#'), quotes or braces "
            "(each alert links its own section: <url>#<alert>)"
        )
    return None


def check_free_text(field: str, value: str) -> str | None:
    if not value.strip():
        return f"{field}: must not be empty"
    # These answers are written inside quoted Python and TOML strings.
    if any(char in value for char in '"\\\n\r'):
        return f"{field}: {value!r} must not contain double quotes, backslashes or line breaks"
    return None


CHECKS: dict[str, Callable[[str, str], str | None]] = {
    "project_name": check_free_text,
    "description": check_free_text,
    "author_name": check_free_text,
    "project_slug": check_dns_label,
    "package_name": check_package_name,
    "author_email": check_email,
    "version": check_version,
    "orm": check_orm,
    "status_page_url": check_url,
    "k8s_namespace": check_dns_label,
    "container_image": check_image,
    "license": check_license,
    "prometheus_release": check_label_value,
    "slo_availability": check_slo_percent,
    "slo_latency_seconds": check_latency,
    "runbook_url": check_page_url,
}


# Answers whose defaults cookiecutter.json derives from another answer: the replay
# file holds them as they were derived from the refused value.
DERIVED: dict[str, tuple[str, ...]] = {
    "project_name": ("project_slug", "package_name", "k8s_namespace", "container_image"),
    "project_slug": ("package_name", "k8s_namespace", "container_image"),
}


def replay_hint(answers: dict[str, object], field: str) -> str:
    """One line: how to bake again with every answer but ``field`` kept.

    Cookiecutter saved the answers as ``<replay_dir>/<template folder>.json`` before
    running this hook; ``cookiecutter --replay <template>`` bakes from that file.
    """
    replay_dir = "~/.cookiecutter_replay"
    try:  # the hook runs on cookiecutter's own interpreter
        from cookiecutter.config import get_user_config

        replay_dir = str(get_user_config()["replay_dir"])
    except Exception:  # any failure leaves the documented default
        pass
    template = str(answers.get("_template", "<template>"))
    replay_file = Path(replay_dir) / f"{Path(str(answers.get('_repo_dir', template))).name}.json"
    derived = DERIVED.get(field, ())
    also = f" (and {', '.join(derived)}, derived from it)" if derived else ""
    return (
        f"Your answers are kept in {replay_file}: correct {field} there{also}, "
        f"then run: cookiecutter --replay {template}"
    )


def validate(answers: dict[str, object]) -> tuple[str, str] | None:
    """The first refused answer as ``(field, one-line error)``, or ``None``."""
    for field, check in CHECKS.items():
        error = check(field, str(answers.get(field, "")))
        if error is not None:
            return field, error
    return None


def main() -> int:
    answers: dict[str, object] = json.loads(ANSWERS_JSON)
    refused = validate(answers)
    if refused is None:
        return 0
    field, error = refused
    print(f"ERROR: {error}", file=sys.stderr)
    print(replay_hint(answers, field), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
