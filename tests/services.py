"""Real PostgreSQL, Redis and Prometheus servers for the tests, from the Debian binaries.

Each server runs in a temporary directory on a free port, listening on all interfaces so
that pods of the local cluster can reach it through the bridge gateway. PostgreSQL refuses
to run as root, so under root it runs as the `postgres` system user.

Prometheus listens on loopback only (it scrapes; nothing in the cluster calls it).

Given a `data_root`, a server keeps its data there instead, across restarts: `make demo` and
`make dashboard` share one pair that way (`shared_servers`), each joining the servers the
other started or starting them on the data the last one left.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

PG_PASSWORD = "duckherd-test-password"  # a test-only credential, never a real secret
REDIS_PASSWORD = "duckherd-test-redis"  # likewise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _is_listening(port):
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


def _own_by_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def _initdb(base: Path, data: Path) -> None:
    password_file = base / "pw"
    password_file.write_text(PG_PASSWORD)
    _own_by_postgres(password_file)
    done = subprocess.run(
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
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # e.g. the postgres user cannot reach a data dir under /root
        raise RuntimeError(f"initdb in {data} failed: {done.stderr.strip()}")
    with open(data / "pg_hba.conf", "a") as hba:
        hba.write("host all all 0.0.0.0/0 scram-sha-256\n")


@contextlib.contextmanager
def postgres_server(data_root: Path | None = None) -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free port; its data in `data_root` (kept) or a temp dir."""
    base = data_root or Path(tempfile.mkdtemp(prefix="duckherd-pg-"))
    base.mkdir(parents=True, exist_ok=True)
    _own_by_postgres(base)
    data = base / "data"
    if not (data / "PG_VERSION").exists():
        _initdb(base, data)
    port = free_port()
    subprocess.run(
        _as_postgres_user(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "postgres.log"),
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
        # Kept data stops cleanly (a checkpoint); throw-away data needs none.
        mode = "fast" if data_root else "immediate"
        subprocess.run(
            _as_postgres_user([_pg_bin("pg_ctl"), "-D", str(data), "-m", mode, "stop"]),
            capture_output=True,
        )
        if data_root is None:
            shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    password: str

    def url(self, host: str | None = None, db: int = 0) -> str:
        return f"redis://:{self.password}@{host or self.host}:{self.port}/{db}"


@contextlib.contextmanager
def redis_server(data_root: Path | None = None) -> Iterator[RedisServer]:
    """A Redis server on a free port; with `data_root`, its keys are saved there on exit and
    loaded at the next start (expiry times included)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not found: run hack/setup.sh")
    base = data_root or Path(tempfile.mkdtemp(prefix="duckherd-redis-"))
    base.mkdir(parents=True, exist_ok=True)
    # With a save point configured Redis writes dump.rdb when it is told to stop (SIGTERM).
    persistence = ["--save", "3600 1", "--pidfile", str(base / "redis.pid")] if data_root else []
    port = free_port()
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
            REDIS_PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base),
            *persistence,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        yield RedisServer("127.0.0.1", port, REDIS_PASSWORD)
    finally:
        stop_process(process)
        if data_root is None:
            shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class SharedServers:
    postgres: PostgresServer
    redis: RedisServer


@contextlib.contextmanager
def shared_servers(root: Path) -> Iterator[SharedServers]:
    """PostgreSQL and Redis keeping their data in `root`, shared by concurrent users.

    Joins the servers another process started on `root` (that process stops them), or starts
    them there and stops them on exit; `root/servers.json` says which ports they listen on.
    """
    running = running_shared_servers(root)
    if running is not None:
        yield running
        return
    root.mkdir(parents=True, exist_ok=True)
    with postgres_server(root / "postgres") as postgres, redis_server(root / "redis") as redis:
        state = root / "servers.json"
        state.write_text(json.dumps({"postgres": postgres.port, "redis": redis.port}))
        try:
            yield SharedServers(postgres, redis)
        finally:
            state.unlink(missing_ok=True)


def running_shared_servers(root: Path) -> SharedServers | None:
    """The servers `shared_servers` runs on `root`, when they are still up."""
    try:
        ports = json.loads((root / "servers.json").read_text())
        postgres_pid = int((root / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
        redis_pid = int((root / "redis" / "redis.pid").read_text().strip())
    except (OSError, ValueError, IndexError):
        return None
    alive = _is_running(postgres_pid, "postgres") and _is_running(redis_pid, "redis-server")
    if not alive or not all(_is_listening(ports[name]) for name in ("postgres", "redis")):
        return None
    return SharedServers(
        PostgresServer("127.0.0.1", ports["postgres"], "duckherd", PG_PASSWORD, "postgres"),
        RedisServer("127.0.0.1", ports["redis"], REDIS_PASSWORD),
    )


def _is_running(pid: int, program: str) -> bool:
    try:
        return program in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@dataclass(frozen=True)
class PrometheusServer:
    """A running Prometheus and its HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/)."""

    url: str

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (at the server's now, or `at`): the vector's samples (empty: no
        data)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query, as a dashboard's time series asks it: the series of the matrix."""
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}"
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def wait_for_scrapes(self, job: str, scrapes: int = 2, timeout: float = 120.0) -> None:
        """Waits until every target of `job` is up and has been scraped `scrapes` times (so a
        counter has two points for rate()); raises with the targets' last errors otherwise."""
        deadline = time.monotonic() + timeout
        expr = f'count_over_time(up{{job="{job}"}}[1h])'
        while True:
            targets = [t for t in self.active_targets() if t["labels"].get("job") == job]
            counts = [int(float(sample["value"][1])) for sample in self.query(expr)]
            healthy = targets and all(t["health"] == "up" for t in targets)
            if healthy and counts and min(counts) >= scrapes:
                return
            if time.monotonic() > deadline:
                errors = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
                raise TimeoutError(f"job {job} not scraped {scrapes} times in {timeout}s: {errors}")
            time.sleep(0.5)


def _prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError("prometheus not found: run hack/setup.sh (Debian `prometheus`)")
    return binary


@contextlib.contextmanager
def prometheus_server(
    scrape_configs: list[dict[str, Any]],
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
) -> Iterator[PrometheusServer]:
    """Prometheus on a free loopback port, its TSDB in a temp dir, scraping `scrape_configs`
    (and evaluating `rule_files`) every `scrape_interval`."""
    binary = _prometheus_binary()
    base = Path(tempfile.mkdtemp(prefix="duckherd-prometheus-"))
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": scrape_configs,
    }
    (base / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = (base / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={base / 'prometheus.yml'}",
            f"--storage.tsdb.path={base / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        server = PrometheusServer(f"http://127.0.0.1:{port}")
        _wait_until_ready(server, process, base / "prometheus.log")
        yield server
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _wait_until_ready(
    server: PrometheusServer, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"prometheus not ready after 60s:\n{log.read_text()[-3000:]}")
