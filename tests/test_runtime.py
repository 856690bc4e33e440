"""The baked service as a real process with zero infrastructure (what ``make demo`` serves).

Faults against PostgreSQL and Redis are in ``test_faults.py``.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import Project
from .services import probe, start_service


def test_the_default_bake_serves_on_sqlite_with_no_server(project: Project, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'demo.db'}"
    project.migrate({"DATABASE_URL": database})
    service = start_service(
        project.path, project.python, {"DATABASE_URL": database}, log=tmp_path / "service.log"
    )
    try:
        service.wait_until_live()
        assert probe(service, "/health/ready")[0] == 200
        assert probe(service, "/health")[0] == 200
        assert probe(service, "/docs")[0] == 200
    finally:
        assert service.stop() == 0
