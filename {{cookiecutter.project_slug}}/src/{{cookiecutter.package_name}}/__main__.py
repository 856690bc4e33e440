"""``python -m {{ cookiecutter.package_name }}``: serve the API, or operate the scheduled jobs.

- ``python -m {{ cookiecutter.package_name }} [serve]``: serve on ``HOST``:``PORT`` (options:
  ``--proxy-headers``, ``--forwarded-allow-ips``, ``--timeout-graceful-shutdown``); exit
  status 0 after a graceful shutdown on SIGTERM.
- ``python -m {{ cookiecutter.package_name }} jobs list``: the jobs, their next fire and heartbeat.
- ``python -m {{ cookiecutter.package_name }} jobs run <job_id>``: run one job now; exit 1 if it fails.
- ``python -m {{ cookiecutter.package_name }} jobs sync-monitors [--dry-run] [--prune]``: create or
  update each job's Healthchecks check; exit 1 if the API refuses or cannot be reached.

Exit status 2 for a configuration error, with one line naming the setting.
"""

from __future__ import annotations

import argparse
import sys

from .logs import configure_logging
from .server import ServerOptions, serve
from .settings import ConfigurationError, load_settings


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}",
    )
    commands = parser.add_subparsers(dest="command", metavar="{serve,jobs}")
    serve_parser = commands.add_parser("serve", help="serve the API on HOST:PORT (the default)")
    add_serve_options(serve_parser)
    argv = sys.argv[1:] if argv is None else argv
    # Serving imports no CLI code (cold start, memory): the jobs command only when asked for.
    if argv[:1] not in ([], ["serve"]):
        from .scheduling.cli import add_jobs_command

        add_jobs_command(commands)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "jobs":
            from .scheduling import default_jobs
            from .scheduling.cli import jobs_command

            configure_logging(settings)
            return jobs_command(args, settings=settings, jobs=default_jobs())
        from .main import serving_app

        # From the settings just read: uvicorn given ``main:app`` would read them again.
        app = serving_app(settings)
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    graceful = getattr(args, "timeout_graceful_shutdown", None)
    return serve(
        app,
        ServerOptions(
            host=getattr(args, "host", None) or settings.host,
            port=getattr(args, "port", None) or settings.port,
            proxy_headers=getattr(args, "proxy_headers", False),
            forwarded_allow_ips=(
                getattr(args, "forwarded_allow_ips", None) or settings.forwarded_allow_ips
            ),
            timeout_graceful_shutdown=(
                graceful if graceful is not None else settings.graceful_shutdown_timeout
            ),
            log_level=settings.log_level.lower(),
        ),
    )


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """uvicorn's production options, under uvicorn's names (see server.ServerOptions)."""
    parser.add_argument("--host", help="address to bind (default: HOST)")
    parser.add_argument("--port", type=int, help="port to bind (default: PORT)")
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        help="proxies trusted for proxy headers (default: FORWARDED_ALLOW_IPS)",
    )
    parser.add_argument(
        "--timeout-graceful-shutdown",
        type=float,
        help="seconds requests in flight get to finish after SIGTERM (default: GRACEFUL_SHUTDOWN_TIMEOUT)",
    )


if __name__ == "__main__":
    sys.exit(main())
