"""Real processes for runtime tests: a private PostgreSQL and the baked service.

The private PostgreSQL lives in a temporary folder on a free loopback port, so
tests can pause it (SIGSTOP), stop it and restart it for real without touching
the machine's shared server.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

POSTGRES_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (``initdb``, ``pg_ctl``, ``postgres``)."""
    for directory in POSTGRES_BIN_CANDIDATES:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed")
    return found


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of our own, run as the ``postgres`` OS user when we are root."""

    root: Path
    port: int = field(default_factory=free_port)
    # Server settings passed as -c name=value (e.g. max_connections).
    options: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        argv = list(command)
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, argv, output=result.stdout, stderr=result.stderr
            )

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o755)
        self._run(postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        options += "".join(f" -c {name}={value}" for name, value in self.options.items())
        self._run(
            postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster and all its children."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(postmaster)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        return [postmaster, *(int(pid) for pid in children)]

    def pause(self) -> None:
        """Freeze the server: connections stay open and nothing answers (a hung server)."""
        for pid in self.pids():
            # A backend can end between the listing and the signal.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def sql(self, query: str) -> str:
        """Run ``query`` with psql on a connection of its own; returns its unaligned output."""
        return subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-Atc", query],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    def connections(self, database: str | None = None) -> int:
        """Client backends connected now (optionally to one database), ours excluded."""
        where = "backend_type = 'client backend' AND pid <> pg_backend_pid()"
        if database:
            where += f" AND datname = '{database}'"
        return int(self.sql(f"SELECT count(*) FROM pg_stat_activity WHERE {where}").strip())


@dataclass
class Service:
    """The baked service as its own uvicorn process, on a free loopback port."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    metrics_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_live(self, timeout: float = 30.0) -> float:
        """Wait for ``/health/live`` to answer 200; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/health/live", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"service not live after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def probe(service: Service, path: str) -> tuple[int, float]:
    """GET ``path`` of ``service``; returns the status and the seconds it took."""
    started = time.perf_counter()
    response = httpx.get(f"{service.base_url}{path}", timeout=5.0)
    return response.status_code, time.perf_counter() - started


def start_service(
    project: Path,
    python: Path,
    env: Mapping[str, str],
    *,
    port: int | None = None,
    log: Path,
    graceful_timeout: float = 10.0,
    argv: Sequence[str] | None = None,
) -> Service:
    """Start the baked ``project`` as its image does (``python -m <package> serve``).

    ``env`` is added to this process's environment; ``argv`` replaces the module
    invocation (e.g. a launcher script) and receives the same serve options. Metrics
    are served on a free loopback port of their own (``Service.metrics_port``).
    """
    port = port or free_port()
    metrics_port = free_port()
    package = next(path.name for path in (project / "src").iterdir() if path.is_dir())
    handle = log.open("wb")
    command = list(argv) if argv is not None else ["-m", package, "serve"]
    process = subprocess.Popen(
        [
            str(python),
            *command,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            str(graceful_timeout),
        ],
        cwd=project,
        env={
            **os.environ,
            "SECRETS_DIR": "/nonexistent",
            **env,
            "HOST": "127.0.0.1",
            "METRICS_PORT": str(metrics_port),
        },
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    return Service(process=process, port=port, log=log, metrics_port=metrics_port)


@dataclass
class PrivateRedis:
    """A Redis server of our own on a free loopback port, keeping nothing on disk."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Freeze the server: connections stay open and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def command(self, *args: str) -> str:
        """Run one command with redis-cli (e.g. ``CLIENT PAUSE 3000 WRITE``); returns its output."""
        return subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout


def connections_to(pid: int, port: int) -> int:
    """TCP connections process ``pid`` holds to ``port`` on the loopback (psutil)."""
    import psutil

    return sum(
        1
        for connection in psutil.Process(pid).net_connections(kind="tcp")
        if connection.raddr
        and connection.raddr.port == port
        and connection.status not in (psutil.CONN_TIME_WAIT, psutil.CONN_CLOSE)
    )
