"""Real PostgreSQL and Redis servers for the tests, started from the Debian binaries.

Each server runs in a temporary directory on a free port, listening on all interfaces so
that pods of the local cluster can reach it through the bridge gateway. PostgreSQL refuses
to run as root, so under root it runs as the `postgres` system user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PG_PASSWORD = "duckherd-test-password"  # a test-only credential, never a real secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str

    def dsn(self, host: str | None = None, database: str | None = None) -> str:
        return (
            f"host={host or self.host} port={self.port} dbname={database or self.database} "
            f"user={self.user} password={self.password}"
        )


def _pg_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise FileNotFoundError(f"PostgreSQL {name} not found: run hack/setup.sh")
    return candidates[-1]


def _as_postgres_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    base = Path(tempfile.mkdtemp(prefix="duckherd-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    password_file = base / "pw"
    password_file.write_text(PG_PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(password_file, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres_user(
            [
                _pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "duckherd",
                "--auth=scram-sha-256",
                f"--pwfile={password_file}",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    log_file = base / "postgres.log"
    subprocess.run(
        _as_postgres_user(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log_file),
                "-w",
                "start",
                "-o",
                f"-p {port} -c listen_addresses='*' -c fsync=off -c synchronous_commit=off "
                f"-c full_page_writes=off -k {base}",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        _wait_for_port(port)
        yield PostgresServer("127.0.0.1", port, "duckherd", PG_PASSWORD, "postgres")
    finally:
        subprocess.run(
            _as_postgres_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    password: str

    def url(self, host: str | None = None, db: int = 0) -> str:
        return f"redis://:{self.password}@{host or self.host}:{self.port}/{db}"


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not found: run hack/setup.sh")
    base = Path(tempfile.mkdtemp(prefix="duckherd-redis-"))
    port = free_port()
    password = "duckherd-test-redis"
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield RedisServer("127.0.0.1", port, password)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)
