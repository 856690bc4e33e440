"""The alert routes as a plain ``alertmanager.yml``, and checks of their Secret and severities.

    kubectl create secret generic {{ cookiecutter.project_slug }}-alert-routes --dry-run=client -o yaml \\
      --from-literal=slack-url=... --from-literal=discord-url=... --from-literal=healthchecks-url=... \\
      | uv run python scripts/alert_routes.py check --environment production -
    uv run python scripts/alert_routes.py render --environment production secret.yaml > alertmanager.yml

The one source of the routes is the ``AlertmanagerConfig`` in
``k8s/components/alert-routes/alertmanagerconfig.yaml`` (what the Prometheus Operator
reads). ``render`` writes the same route tree, inhibition and receivers in
Alertmanager's own configuration format (https://prometheus.io/docs/alerting/latest/configuration/),
for an Alertmanager run without the Operator; the webhook URLs are taken from a
``Secret`` manifest (``data`` in base64 or ``stringData``; ``-`` reads standard input)
and written inline, because Alertmanager 0.25 (Debian bookworm's) reads only Slack's
URL from a file: keep the output as secret as the Secret itself. Unlike the
Operator, ``render`` adds no ``namespace`` matcher and no prefix to receiver names.

``check`` refuses, one line each, naming the setting: a Secret key that is missing,
empty or, in staging and production, not an ``https://`` URL; and an alert of a
``PrometheusRule`` under ``k8s/`` whose ``severity`` no route matches.

Exit status: 0 when all is well; 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
ROUTES_FILE = ROOT / "k8s" / "components" / "alert-routes" / "alertmanagerconfig.yaml"
ENVIRONMENTS = ("development", "staging", "production")
# Environments where a webhook URL must be https: a token sent in clear is a token given away.
HTTPS_ONLY = frozenset({"staging", "production"})
# The AlertmanagerConfig's matcher, as Alertmanager's own matchers write it.
MATCH_TYPES = frozenset({"=", "!=", "=~", "!~"})
# AlertmanagerConfig field -> Alertmanager field, where the snake case of the name is wrong.
RENAMED = {"apiURL": "api_url", "titleLink": "title_link"}
# Per receiver kind: the Secret-backed field of the AlertmanagerConfig, and where
# Alertmanager 0.25 takes the URL.
SECRET_FIELDS = {
    "slackConfigs": ("apiURL", "api_url"),
    "discordConfigs": ("apiURL", "webhook_url"),
    "webhookConfigs": ("urlSecret", "url"),
}


class RoutesError(Exception):
    """Bad input; ``str()`` is one line naming the setting."""


def load_routes(path: Path = ROUTES_FILE) -> dict[str, Any]:
    """The ``AlertmanagerConfig`` object of ``path``, as a dict."""
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    if document.get("kind") != "AlertmanagerConfig":
        raise RoutesError(f"{path}: not an AlertmanagerConfig")
    return document


def secret_references(routes: dict[str, Any]) -> dict[str, str]:
    """Each Secret key the receivers read, with the receiver that reads it."""
    keys: dict[str, str] = {}
    for receiver in routes["spec"]["receivers"]:
        for kind, (field, _) in SECRET_FIELDS.items():
            for config in receiver.get(kind, []):
                keys.setdefault(str(config[field]["key"]), str(receiver["name"]))
    return keys


def secret_name(routes: dict[str, Any]) -> str:
    """The name of the Secret the receivers read (one Secret for all of them)."""
    names = {
        str(config[field]["name"])
        for receiver in routes["spec"]["receivers"]
        for kind, (field, _) in SECRET_FIELDS.items()
        for config in receiver.get(kind, [])
    }
    if len(names) != 1:
        raise RoutesError(f"{ROUTES_FILE.name}: the receivers read {len(names)} Secrets, not one")
    return names.pop()


def read_secret(text: str) -> dict[str, str]:
    """The keys and decoded values of a ``Secret`` manifest (``data`` and ``stringData``)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RoutesError(f"the Secret is not YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(document, dict) or document.get("kind") != "Secret":
        raise RoutesError("the input is not a Secret manifest (kind: Secret)")
    values: dict[str, str] = {}
    for key, encoded in (document.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(str(encoded), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise RoutesError(f"{key} in the Secret is not base64 of UTF-8 text") from None
    values.update({key: str(value) for key, value in (document.get("stringData") or {}).items()})
    return values


def secret_problems(
    routes: dict[str, Any], values: dict[str, str], environment: str
) -> Iterator[str]:
    """One line per Secret key that is missing, empty, or not https where it must be."""
    name = secret_name(routes)
    for key, receiver in secret_references(routes).items():
        where = f"{key} in Secret {name} (receiver {receiver})"
        value = values.get(key)
        if value is None:
            yield f"{where} is missing"
        elif not value.strip():
            yield f"{where} is empty"
        elif value != value.strip():
            yield f"{where} has spaces or a newline around the URL"
        elif environment in HTTPS_ONLY and urlsplit(value).scheme != "https":
            yield f"{where} must be an https:// URL in {environment}"
        elif not urlsplit(value).netloc:
            yield f"{where} is not a URL"


def routed_severities(routes: dict[str, Any]) -> set[str]:
    """The ``severity`` values the route tree matches with ``=``."""
    severities: set[str] = set()
    pending = list(routes["spec"]["route"].get("routes", []))
    while pending:
        route = pending.pop()
        pending.extend(route.get("routes", []))
        for matcher in route.get("matchers", []):
            if matcher["name"] == "severity" and matcher.get("matchType", "=") == "=":
                severities.add(str(matcher["value"]))
    return severities


def rule_files(root: Path = ROOT) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every ``PrometheusRule`` object in a YAML file under ``root/k8s``."""
    for path in sorted((root / "k8s").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "PrometheusRule":
                yield path, document


def severity_problems(routes: dict[str, Any], root: Path = ROOT) -> Iterator[str]:
    """One line per alert whose ``severity`` label no route matches."""
    known = routed_severities(routes)
    for path, rule in rule_files(root):
        for group in rule["spec"].get("groups", []):
            for item in group.get("rules", []):
                if "alert" not in item:
                    continue
                severity = (item.get("labels") or {}).get("severity")
                if severity not in known:
                    yield (
                        f"severity {severity!r} of alert {item['alert']} in "
                        f"{path.relative_to(root)}: the routes know {', '.join(sorted(known))}"
                    )


def _matcher(matcher: dict[str, Any]) -> str:
    match_type = str(matcher.get("matchType", "="))
    if match_type not in MATCH_TYPES:
        raise RoutesError(f"matchType {match_type!r} of matcher {matcher['name']}")
    value = str(matcher["value"]).replace("\\", "\\\\").replace('"', '\\"')
    return f'{matcher["name"]}{match_type}"{value}"'


def _snake(name: str) -> str:
    return RENAMED.get(name) or re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _route(route: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for key, value in route.items():
        if key == "matchers":
            plain["matchers"] = [_matcher(matcher) for matcher in value]
        elif key == "routes":
            plain["routes"] = [_route(child) for child in value]
        else:
            plain[_snake(key)] = value
    return plain


def _receiver(receiver: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    plain: dict[str, Any] = {"name": receiver["name"]}
    for kind, configs in receiver.items():
        if kind == "name":
            continue
        if kind not in SECRET_FIELDS:
            raise RoutesError(f"receiver {receiver['name']}: {kind} is not rendered")
        field, target = SECRET_FIELDS[kind]
        rendered = []
        for config in configs:
            out = {target: values[str(config[field]["key"])]}
            out.update({_snake(key): value for key, value in config.items() if key != field})
            rendered.append(out)
        plain[_snake(kind)] = rendered
    return plain


def render(routes: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """Alertmanager's configuration of ``routes``, with the Secret's ``values`` inline."""
    spec = routes["spec"]
    return {
        "route": _route(spec["route"]),
        "inhibit_rules": [
            {
                "source_matchers": [_matcher(matcher) for matcher in rule["sourceMatch"]],
                "target_matchers": [_matcher(matcher) for matcher in rule["targetMatch"]],
                "equal": list(rule["equal"]),
            }
            for rule in spec.get("inhibitRules", [])
        ],
        "receivers": [_receiver(receiver, values) for receiver in spec["receivers"]],
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the message templates) as literal blocks."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def _read(source: str) -> str:
    return sys.stdin.read() if source == "-" else Path(source).read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("check", "check the Secret's URLs and the alerts' severities"),
        ("render", "print the routes as alertmanager.yml, the Secret's URLs inline"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("secret", help="a Secret manifest (YAML), or - for standard input")
        command.add_argument("--environment", choices=ENVIRONMENTS, default="production")
    args = parser.parse_args(argv)
    try:
        routes = load_routes()
        values = read_secret(_read(args.secret))
        problems = list(secret_problems(routes, values, args.environment))
        if args.command == "check":
            problems.extend(severity_problems(routes))
    except (RoutesError, OSError) as error:
        problems = [str(error)]
    for problem in problems:
        print(f"alert routes: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.command == "render":
        yaml.dump(render(routes, values), sys.stdout, Dumper=_Dumper, sort_keys=False, width=1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
