"""``python -m {{ cookiecutter.package_name }}``: serve the API, or operate the scheduled jobs.

- ``python -m {{ cookiecutter.package_name }} [serve]``: serve on ``HOST``:``PORT``.
- ``python -m {{ cookiecutter.package_name }} jobs list``: the jobs, their next fire and heartbeat.
- ``python -m {{ cookiecutter.package_name }} jobs run <job_id>``: run one job now; exit 1 if it fails.

Exit status 2 for a configuration error, with one line naming the setting.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from .scheduling import default_jobs
from .scheduling.cli import add_jobs_command, jobs_command
from .settings import ConfigurationError, load_settings


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m {{ cookiecutter.package_name }}")
    commands = parser.add_subparsers(dest="command", metavar="{serve,jobs}")
    commands.add_parser("serve", help="serve the API on HOST:PORT (the default)")
    add_jobs_command(commands)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.command == "jobs":
            logging.basicConfig(
                level=settings.log_level.upper(),
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            )
            return jobs_command(args, settings=settings, jobs=default_jobs())
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    uvicorn.run(
        "{{ cookiecutter.package_name }}.main:app",
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
